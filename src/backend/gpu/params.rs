//! The uniforms of the kernels: one `#[repr(C)]` struct per shader `Params`, field by field
//! (same names, order and types, padding included), and the flag bits the shaders test. The
//! launchers in [`super::ops`] and [`super::conv`] fill them; the test at the bottom parses every
//! kernel's WGSL, as the pipeline compiles it, with naga and checks each struct's names, offsets
//! and size against the shader's, so the twins cannot drift apart unnoticed.

use bytemuck::{Pod, Zeroable};

/// Declares a kernel uniform: a `#[repr(C)]`, `Pod` struct whose fields the launchers set, and
/// (in tests) its layout as the shader must see it.
macro_rules! uniform {
    ($(#[$meta:meta])* struct $name:ident { $($(#[$field_meta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Pod, Zeroable)]
        pub(super) struct $name {
            $($(#[$field_meta])* pub(super) $field: $ty,)*
        }

        #[cfg(test)]
        impl $name {
            const LAYOUT: tests::Layout = tests::Layout {
                name: stringify!($name),
                size: size_of::<$name>(),
                fields: &[$(tests::Field {
                    name: stringify!($field),
                    offset: std::mem::offset_of!($name, $field),
                    size: size_of::<$ty>(),
                    ty: stringify!($ty),
                },)*],
            };
        }
    };
}

uniform! {
    /// `Params` in `shaders/matmul.wgsl` (also read by `matmul_blocked.wgsl`).
    struct MatmulParams {
        m: u32,
        n: u32,
        k: u32,
        /// [`MatmulParams::BIAS`] and the other flag bits.
        flags: u32,
        a_rs: u32,
        a_cs: u32,
        b_rs: u32,
        b_cs: u32,
        tiles_n: u32,
        tiles_total: u32,
        /// Workgroups per output tile, each reducing its own `k_part`-long run of k: more
        /// than one stores partial products for `matmul_split_sum` to finish.
        parts: u32,
        k_part: u32,
    }
}

uniform! {
    /// `Params` in `shaders/matmul_gathered.wgsl`: [`MatmulParams`]'s fields, then where and
    /// how the batch is gathered ([`GatherParams`]'s).
    struct MatmulGatheredParams {
        m: u32,
        n: u32,
        k: u32,
        flags: u32,
        a_rs: u32,
        a_cs: u32,
        b_rs: u32,
        b_cs: u32,
        tiles_n: u32,
        tiles_total: u32,
        parts: u32,
        k_part: u32,
        samples: u32,
        words: u32,
        label_words: u32,
        indices: u32,
        first: u32,
        nan_bits: u32,
        plane: u32,
        _pad2: u32,
        scale: [f32; 4],
        shift: [f32; 4],
    }
}

impl MatmulGatheredParams {
    /// A product's uniform followed by a gather's (whose batch and features are the product's
    /// m and k).
    #[rustfmt::skip]
    pub(super) fn new(product: MatmulParams, gather: GatherParams) -> Self {
        let MatmulParams { m, n, k, flags, a_rs, a_cs, b_rs, b_cs, tiles_n, tiles_total, parts, k_part } = product;
        let GatherParams { samples, words, label_words, indices, first, nan_bits, plane, scale, shift, .. } = gather;
        Self {
            m, n, k, flags, a_rs, a_cs, b_rs, b_cs, tiles_n, tiles_total, parts, k_part,
            samples, words, label_words, indices, first, nan_bits, plane, _pad2: 0, scale, shift,
        }
    }
}

impl MatmulParams {
    /// Bits of `flags`, as `shaders/matmul.wgsl` tests them.
    pub(super) const BIAS: u32 = 1 << 0;
    pub(super) const RELU: u32 = 1 << 1;
    pub(super) const TRANS_A: u32 = 1 << 2;
    pub(super) const TRANS_B: u32 = 1 << 3;
    pub(super) const RELU_MASK: u32 = 1 << 4;
}

uniform! {
    /// `Params` in `shaders/elementwise.wgsl` (`binary` and `add_bias`).
    struct ElementwiseParams {
        n: u32,
        /// A [`BinaryOp`](super::ops::BinaryOp) (`binary` only).
        op: u32,
        /// Columns of `x`, the length of the bias (`add_bias` only).
        cols: u32,
        _pad: u32,
    }
}

uniform! {
    /// `Params` in `shaders/unary.wgsl`.
    struct UnaryParams {
        n: u32,
        /// A [`UnaryOp`](super::ops::UnaryOp).
        op: u32,
        value: f32,
        _pad: u32,
    }
}

uniform! {
    /// `Params` in `shaders/dropout.wgsl`.
    struct DropoutParams {
        n: u32,
        key_lo: u32,
        key_hi: u32,
        p: f32,
        scale: f32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

uniform! {
    /// `Params` in `shaders/axpy.wgsl`.
    struct AxpyParams {
        n: u32,
        alpha: f32,
        /// 1: store `alpha * x` instead of adding it.
        reset: u32,
        _pad: u32,
    }
}

uniform! {
    /// `Params` in `shaders/fill.wgsl`.
    struct FillParams {
        n: u32,
        bits: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

uniform! {
    /// `Params` in `shaders/reduce.wgsl` (`sum_rows`, `reduce_sum`, and `sum_planes` in [`super::conv`]).
    struct ReduceParams {
        rows: u32,
        cols: u32,
        n: u32,
        groups: u32,
        scale: f32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

uniform! {
    /// `Params` in `shaders/softmax.wgsl` and `shaders/softmax_backward.wgsl` (the same fields).
    struct RowParams {
        rows: u32,
        cols: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

uniform! {
    /// `Params` in `shaders/cross_entropy.wgsl`.
    struct CrossEntropyParams {
        rows: u32,
        cols: u32,
        scale: f32,
        nan_bits: u32,
    }
}

uniform! {
    /// `Params` in `shaders/linear_cross_entropy.wgsl`.
    struct LinearLossParams {
        rows: u32,
        k: u32,
        classes: u32,
        /// 1: the running sum is set, not added to.
        reset: u32,
        /// `1 / rows`.
        scale: f32,
        /// The factor of the mean loss in the running sum.
        sum_scale: f32,
        nan_bits: u32,
        _pad0: u32,
    }
}

uniform! {
    /// `Params` in `shaders/adam.wgsl` (`adam`, `adam_pair` and `adam_six`).
    struct AdamParams {
        n: u32,
        weight_factor: f32,
        gradient_decay: f32,
        one_minus_beta1: f32,
        beta2: f32,
        one_minus_beta2: f32,
        step_size: f32,
        bias_correction2_sqrt: f32,
        eps: f32,
        /// `adam_pair` and `adam_six`: elements of the second parameter, then of the others.
        n2: u32,
        n3: u32,
        n4: u32,
        n5: u32,
        n6: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

uniform! {
    /// `Params` in `shaders/sgd.wgsl`.
    struct SgdParams {
        n: u32,
        /// 1 when momentum is non-zero.
        use_momentum: u32,
        /// The momentum, or 0 on the first step.
        keep: f32,
        lr: f32,
        weight_decay: f32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

uniform! {
    /// `Params` in `shaders/gather.wgsl`.
    struct GatherParams {
        batch: u32,
        features: u32,
        samples: u32,
        words: u32,
        label_words: u32,
        indices: u32,
        first: u32,
        nan_bits: u32,
        /// Bytes per channel plane of a sample (at least 1).
        plane: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
        /// Per channel, `vec4<f32>`s in the shader.
        scale: [f32; 4],
        shift: [f32; 4],
    }
}

uniform! {
    /// The uniform of the convolution GEMMs: `Params` in `shaders/conv_gemm.wgsl`.
    struct ConvGemmParams {
        in_channels: u32,
        height: u32,
        width: u32,
        out_channels: u32,
        kernel_h: u32,
        kernel_w: u32,
        padding: u32,
        out_height: u32,
        out_width: u32,
        n: u32,
        k: u32,
        tiles_n: u32,
        tiles_per_split: u32,
        tiles_total: u32,
        k_split: u32,
        relu: u32,
    }
}

uniform! {
    /// The uniform of `shaders/pool.wgsl`.
    struct PoolParams {
        planes: u32,
        height: u32,
        width: u32,
        out_height: u32,
        out_width: u32,
        n: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

#[cfg(test)]
mod tests {
    use wgpu::naga;

    use super::*;
    use crate::backend::gpu::Kernel;
    use crate::backend::gpu::pipeline::Shader;

    /// A Rust uniform's layout, field by field.
    pub(super) struct Layout {
        pub(super) name: &'static str,
        pub(super) size: usize,
        pub(super) fields: &'static [Field],
    }

    pub(super) struct Field {
        pub(super) name: &'static str,
        pub(super) offset: usize,
        pub(super) size: usize,
        /// The Rust type as written.
        pub(super) ty: &'static str,
    }

    /// The uniform of each shader file: the WGSL struct it binds and the Rust twin its launchers
    /// fill. A match, so a new shader does not compile until it is listed here.
    fn uniform_of(shader: Shader) -> (&'static str, Layout) {
        let layout = match shader {
            Shader::Matmul => MatmulParams::LAYOUT,
            Shader::MatmulGathered => MatmulGatheredParams::LAYOUT,
            Shader::Elementwise => ElementwiseParams::LAYOUT,
            Shader::Unary => UnaryParams::LAYOUT,
            Shader::Dropout => DropoutParams::LAYOUT,
            Shader::Axpy => AxpyParams::LAYOUT,
            Shader::Fill => FillParams::LAYOUT,
            Shader::Reduce => ReduceParams::LAYOUT,
            Shader::Softmax | Shader::SoftmaxBackward => RowParams::LAYOUT,
            Shader::CrossEntropy => CrossEntropyParams::LAYOUT,
            Shader::LinearCrossEntropy => LinearLossParams::LAYOUT,
            Shader::Adam => AdamParams::LAYOUT,
            Shader::Sgd => SgdParams::LAYOUT,
            Shader::Gather => GatherParams::LAYOUT,
            Shader::ConvGemm(..) => ConvGemmParams::LAYOUT,
            Shader::Pool => PoolParams::LAYOUT,
        };
        ("Params", layout)
    }

    /// The scalar a Rust field type stands for, where it is one.
    fn scalar_of(ty: &str) -> Option<naga::Scalar> {
        match ty {
            "u32" => Some(naga::Scalar::U32),
            "i32" => Some(naga::Scalar::I32),
            "f32" => Some(naga::Scalar::F32),
            _ => None,
        }
    }

    /// Every difference between `layout` and the WGSL struct `ty` of `module`.
    fn differences(module: &naga::Module, ty: naga::Handle<naga::Type>, layout: &Layout) -> Vec<String> {
        let naga::TypeInner::Struct { members, span } = &module.types[ty].inner else {
            return vec!["the uniform is not a struct".to_string()];
        };
        let mut found = Vec::new();
        if *span as usize != layout.size {
            found.push(format!("size: WGSL {span}, Rust {}", layout.size));
        }
        if members.len() != layout.fields.len() {
            found.push(format!("fields: WGSL {}, Rust {}", members.len(), layout.fields.len()));
        }
        for (member, field) in members.iter().zip(layout.fields) {
            let name = member.name.as_deref().unwrap_or("");
            let member_ty = &module.types[member.ty].inner;
            let size = member_ty.size(module.to_ctx()) as usize;
            if name != field.name || member.offset as usize != field.offset || size != field.size {
                found.push(format!(
                    "WGSL `{name}` at {} ({size} bytes), Rust `{}` at {} ({} bytes)",
                    member.offset, field.name, field.offset, field.size
                ));
            }
            if let Some(scalar) = scalar_of(field.ty)
                && member_ty.scalar() != Some(scalar)
            {
                found.push(format!("`{name}`: WGSL {member_ty:?}, Rust {}", field.ty));
            }
        }
        found
    }

    #[test]
    fn every_uniform_matches_its_rust_twin() {
        let mut failures = Vec::new();
        for kernel in Kernel::ALL {
            let module = naga::front::wgsl::parse_str(&kernel.wgsl())
                .unwrap_or_else(|error| panic!("{kernel:?}: {}", error.emit_to_string(&kernel.wgsl())));
            let (wgsl_name, layout) = uniform_of(kernel.shader());
            let uniforms: Vec<_> = module
                .global_variables
                .iter()
                .filter(|(_, var)| var.space == naga::AddressSpace::Uniform)
                .map(|(_, var)| var.ty)
                .collect();
            if uniforms.len() != 1 {
                failures.push(format!("{kernel:?}: {} uniforms, one listed", uniforms.len()));
            }
            for ty in uniforms {
                let name = module.types[ty].name.as_deref().unwrap_or("");
                if name != wgsl_name {
                    failures.push(format!("{kernel:?}: uniform `{name}` is not the listed `{wgsl_name}`"));
                }
                for difference in differences(&module, ty, &layout) {
                    failures.push(format!("{kernel:?}: `{name}` vs {}: {difference}", layout.name));
                }
            }
        }
        assert!(failures.is_empty(), "uniform layouts differ:\n{}", failures.join("\n"));
    }
}
