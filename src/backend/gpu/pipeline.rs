//! The kernels: which WGSL file and entry point each one runs, its bind-group layout, and a
//! cache that builds each pipeline once per context, on first use.
//!
//! Layouts are explicit rather than derived from the shader: an automatic layout drops the
//! bindings an entry point does not use, and the bind groups would then fail to match.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{GpuError, lock};
use crate::ids::IdMap;

/// Helpers every kernel file starts with.
const COMMON: &str = include_str!("../../../shaders/common.wgsl");

/// One compute kernel: a WGSL entry point with its layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    MatmulNaive,
    MatmulWide,
    /// The wide product reading both operands as vec4, for aligned shapes.
    MatmulWideVec4,
    MatmulTiled,
    /// The tiled and wide products that also sum op(A)'s rows.
    MatmulTiledRowSums,
    MatmulWideRowSums,
    /// The tiled product whose A is a batch it gathers from a `u8` dataset: a first layer.
    MatmulTiledGathered,
    /// The second pass of a product split over k: sums the parts and applies the epilogue.
    MatmulSplitSum,
    Binary,
    AddBias,
    Unary,
    Dropout,
    Axpy,
    Fill,
    SumRows,
    ReduceSum,
    SoftmaxRows,
    ArgmaxRows,
    SoftmaxBackward,
    CrossEntropyRows,
    CrossEntropyMean,
    CrossEntropyBackward,
    /// A classifier's last layer fused with its loss, the gradient and a running sum.
    LinearCrossEntropy,
    Adam,
    AdamPair,
    /// Six parameters in one dispatch: 24 storage bindings, past WebGPU's minimum of 8.
    AdamSix,
    Sgd,
    GatherBatch,
    SumPlanes,
    // The convolution GEMMs, each with a 64x64 output tile or (for at most 32 output rows, the
    // channels of what the kernel computes) a 32x128 one.
    Conv2d,
    Conv2dNarrow,
    Conv2dBackwardInput,
    Conv2dBackwardInputNarrow,
    Conv2dBackwardWeight,
    Conv2dBackwardWeightNarrow,
    MaxPool2d,
    MaxPool2dBackward,
}

/// The bindings of six parameters that Adam updates: each buffer, its gradient and moments.
static ADAM_BINDINGS: [Access; 24] = {
    let mut bindings = [Access::ReadWrite; 24];
    let mut i = 1;
    while i < 24 {
        bindings[i] = Access::Read;
        i += 4;
    }
    bindings
};

/// How a kernel uses a storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

use Access::{Read, ReadWrite};

/// The WGSL files in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Shader {
    Matmul,
    MatmulGathered,
    Elementwise,
    Unary,
    Dropout,
    Axpy,
    Fill,
    Reduce,
    Softmax,
    SoftmaxBackward,
    CrossEntropy,
    LinearCrossEntropy,
    Adam,
    Sgd,
    Gather,
    ConvGemm(ConvPass, ConvTile),
    Pool,
}

/// Which convolution GEMM an instance of `shaders/conv_gemm.wgsl` computes: the kernel file that
/// gathers its operands and stores its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum ConvPass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

/// The output tile of a convolution GEMM instance: `rows` x `cols` per 16x16 workgroup (so
/// `rows / 16` x `cols / 16` outputs per thread), reduced in `depth`-deep slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConvTile {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    pub(crate) depth: u32,
}

impl ConvTile {
    /// Whether `conv_gemm.wgsl` can run this tile: whole loads per thread, the column a thread
    /// loads the same in every load of a slice (256 threads a multiple of the columns), and
    /// workgroup memory (the padded A slice, the B slice, four tables of two halves of decoded
    /// reduction indices, `common.wgsl`'s 1 KiB) within WebGPU's minimum of 16 KiB.
    const fn is_valid(self) -> bool {
        let ConvTile { rows, cols, depth } = self;
        let bytes = 4 * (depth * (rows + 1) + depth * cols + 8 * depth) + 1024;
        rows.is_multiple_of(16)
            && cols.is_multiple_of(16)
            && 256u32.is_multiple_of(cols)
            && 256u32.is_multiple_of(depth)
            && (rows * depth).is_multiple_of(256)
            && (cols * depth).is_multiple_of(256)
            && bytes <= 16384
    }
}

/// The tile of most convolution GEMMs.
pub(crate) const CONV_TILE: ConvTile = ConvTile { rows: 64, cols: 64, depth: 16 };
/// The tile for at most 32 output rows (a layer's channels): no half-empty tiles, and each
/// thread's 2x8 outputs still reuse what it reads from workgroup memory.
pub(crate) const CONV_TILE_NARROW: ConvTile = ConvTile { rows: 32, cols: 128, depth: 16 };

const _: () = assert!(CONV_TILE.is_valid() && CONV_TILE_NARROW.is_valid());

/// The core of the convolution GEMMs, completed by each pass's own file.
const CONV_GEMM: &str = include_str!("../../../shaders/conv_gemm.wgsl");

/// One convolution GEMM: the tile's sizes, the core with its entry point named, the pass's file.
fn conv_gemm(pass: ConvPass, tile: ConvTile, entry: &str) -> String {
    let body = match pass {
        ConvPass::Forward => include_str!("../../../shaders/conv2d.wgsl"),
        ConvPass::BackwardInput => include_str!("../../../shaders/conv2d_backward_input.wgsl"),
        ConvPass::BackwardWeight => include_str!("../../../shaders/conv2d_backward_weight.wgsl"),
    };
    let ConvTile { rows, cols, depth } = tile;
    format!(
        "const BM: u32 = {rows}u;\nconst BN: u32 = {cols}u;\nconst BK: u32 = {depth}u;\nconst TM: u32 = {}u;\nconst TN: u32 = {}u;\n{}\n{body}",
        rows / 16,
        cols / 16,
        CONV_GEMM.replace("{NAME}", entry),
    )
}

/// The register-blocked matmul, written once with `{BM}`-style holes.
const MATMUL_BLOCKED: &str = include_str!("../../../shaders/matmul_blocked.wgsl");

/// What a product stores beside `C`, from the A values its threads read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Beside {
    Nothing,
    /// Nothing, and it reads its operands as vec4 ([`READ_VEC4`]).
    NothingVec4,
    /// The sums of op(A)'s rows over k (`_row_sums`).
    RowSums,
    /// The gathered A itself and its rows' labels (`matmul_gathered.wgsl`).
    GatheredInput,
}

/// How a thread reads its share of the next slice of each operand: element by element, or (four
/// elements a thread, aligned) one vec4 each, which it keeps as four elements.
const READ_SCALAR: [(&str, &str); 6] = [
    ("{READS}", "{LOADS}"),
    ("{WIDTH}", "1"),
    ("{VALUE}", "f32"),
    ("{READ_A}", "load_a(gr, gka)"),
    ("{READ_B}", "b[gkb * p.b_rs + gc * p.b_cs]"),
    ("{KEEP}", "a_next[r] = av; b_next[r] = bv;"),
];
const READ_VEC4: [(&str, &str); 6] = [
    ("{READS}", "1"),
    ("{WIDTH}", "4"),
    ("{VALUE}", "vec4<f32>"),
    ("{READ_A}", "a4[(gr * p.a_rs + gka * p.a_cs) / 4u]"),
    ("{READ_B}", "b4[(gkb * p.b_rs + gc * p.b_cs) / 4u]"),
    ("{KEEP}", "for (var s = 0u; s < 4u; s = s + 1u) { a_next[s] = av[s]; b_next[s] = bv[s]; }"),
];

/// What the `_row_sums` instances add: summing the A values a thread reads, and the store by
/// the threads of the first column of tiles.
const ROW_SUMS_ADD: &str = "for (var i = 0u; i < {TM}u; i = i + 1u) { row_sum[i] = row_sum[i] + ar[i]; }";
const ROW_SUMS_STORE: &str = "if col0 == 0u && lid.x == 0u {
        for (var i = 0u; i < {TM}u; i = i + 1u) {
            let row = row0 + lid.y + i * 16u;
            if row < p.m {
                row_sums[row] = row_sum[i];
            }
        }
    }";
/// What the gathered instance adds: the first column of tiles stores each A value it gathers,
/// and its rows' labels.
const GATHERED_STORE_A: &str = "if col0 == 0u { x[gr * p.k + gka] = av; }";
const GATHERED_STORE_LABELS: &str = "if col0 == 0u && lid.x == 0u {
        for (var i = 0u; i < {TM}u; i = i + 1u) {
            let row = row0 + lid.y + i * 16u;
            if row < p.m {
                labels[row] = label_of(row);
            }
        }
    }";

/// One instance of the register-blocked matmul: a `block` x `block` tile, `depth`-deep slices,
/// `block / 16` x `block / 16` outputs per thread of a 16x16 workgroup, and what it stores
/// `beside` the product.
fn matmul_blocked(name: &str, block: u32, depth: u32, beside: Beside) -> String {
    let lds = block + 1;
    let read = if beside == Beside::NothingVec4 { READ_VEC4 } else { READ_SCALAR };
    let element = if beside == Beside::NothingVec4 { "tid * 4u + s" } else { "tid + s * 256u" };
    let (add, after_load, store) = match beside {
        Beside::Nothing | Beside::NothingVec4 => ("", "", ""),
        Beside::RowSums => (ROW_SUMS_ADD, "", ROW_SUMS_STORE),
        Beside::GatheredInput => ("", GATHERED_STORE_A, GATHERED_STORE_LABELS),
    };
    let reads = read.map(|(hole, value)| (hole, value.to_string()));
    reads
        .into_iter()
        .chain([
            ("{ELEMENT}", element.to_string()),
            ("{ROW_SUMS_ADD}", add.to_string()),
            ("{AFTER_LOAD_A}", after_load.to_string()),
            ("{FIRST_COLUMN_STORE}", store.to_string()),
            ("{NAME}", name.to_string()),
            ("{BM}", block.to_string()),
            ("{BK}", depth.to_string()),
            ("{LDS}", lds.to_string()),
            ("{TM}", (block / 16).to_string()),
            ("{TILE_LEN}", (depth * lds).to_string()),
            ("{LOADS}", (block * depth / 256).to_string()),
        ])
        .fold(MATMUL_BLOCKED.to_string(), |text, (hole, value)| text.replace(hole, &value))
}

/// `shaders/adam.wgsl` and its `adam_six` entry: the bindings of parameters 3 to 6 and a branch
/// a parameter, which thread i takes when i falls within that parameter's elements. WGSL cannot
/// index bindings, so the six branches are written here rather than repeated by hand.
fn adam_six() -> String {
    let mut text = include_str!("../../../shaders/adam.wgsl").to_string();
    for k in 3..=6 {
        let first = 4 * k - 3;
        for (i, (name, access)) in [("param", "read_write"), ("grad", "read"), ("m", "read_write"), ("v", "read_write")]
            .into_iter()
            .enumerate()
        {
            let binding = first + i;
            text += &format!("@group(0) @binding({binding}) var<storage, {access}> {name}{k}: array<f32>;\n");
        }
    }
    text += "@compute @workgroup_size(256)\nfn adam_six(@builtin(workgroup_id) wid: vec3<u32>, \
             @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {\n\
             var j = group_index(wid, nwg) * WG + lid;\n";
    for (k, n) in ["", "2", "3", "4", "5", "6"].into_iter().zip(["n", "n2", "n3", "n4", "n5", "n6"]) {
        text += &format!(
            "if j < p.{n} {{\n let r = update(param{k}[j], grad{k}[j], m{k}[j], v{k}[j]);\n \
             m{k}[j] = r.y;\n v{k}[j] = r.z;\n param{k}[j] = r.x;\n return;\n}}\nj -= p.{n};\n"
        );
    }
    text + "}\n"
}

impl Shader {
    /// The WGSL text after `common.wgsl`; `entry` names a convolution GEMM's entry point.
    fn source(self, entry: &str) -> Cow<'static, str> {
        let file = match self {
            Shader::Matmul => {
                return Cow::Owned(format!(
                    "{}\n{}\n{}\n{}\n{}\n{}",
                    include_str!("../../../shaders/matmul.wgsl"),
                    matmul_blocked("matmul_tiled", 64, 16, Beside::Nothing),
                    matmul_blocked("matmul_wide", 128, 8, Beside::Nothing),
                    matmul_blocked("matmul_wide_vec4", 128, 8, Beside::NothingVec4),
                    matmul_blocked("matmul_tiled_row_sums", 64, 16, Beside::RowSums),
                    matmul_blocked("matmul_wide_row_sums", 128, 8, Beside::RowSums),
                ));
            }
            Shader::MatmulGathered => {
                return Cow::Owned(format!(
                    "{}\n{}",
                    include_str!("../../../shaders/matmul_gathered.wgsl"),
                    matmul_blocked("matmul_tiled_gathered", 64, 16, Beside::GatheredInput),
                ));
            }
            Shader::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
            Shader::Unary => include_str!("../../../shaders/unary.wgsl"),
            Shader::Dropout => include_str!("../../../shaders/dropout.wgsl"),
            Shader::Axpy => include_str!("../../../shaders/axpy.wgsl"),
            Shader::Fill => include_str!("../../../shaders/fill.wgsl"),
            Shader::Reduce => include_str!("../../../shaders/reduce.wgsl"),
            Shader::Softmax => include_str!("../../../shaders/softmax.wgsl"),
            Shader::SoftmaxBackward => include_str!("../../../shaders/softmax_backward.wgsl"),
            Shader::CrossEntropy => include_str!("../../../shaders/cross_entropy.wgsl"),
            Shader::LinearCrossEntropy => include_str!("../../../shaders/linear_cross_entropy.wgsl"),
            Shader::Adam => return Cow::Owned(adam_six()),
            Shader::Sgd => include_str!("../../../shaders/sgd.wgsl"),
            Shader::Gather => include_str!("../../../shaders/gather.wgsl"),
            Shader::ConvGemm(pass, tile) => return Cow::Owned(conv_gemm(pass, tile, entry)),
            Shader::Pool => include_str!("../../../shaders/pool.wgsl"),
        };
        Cow::Borrowed(file)
    }
}

impl Kernel {
    /// Every kernel, for warming the cache up.
    pub const ALL: [Kernel; 37] = [
        Kernel::MatmulNaive,
        Kernel::MatmulTiled,
        Kernel::MatmulWide,
        Kernel::MatmulWideVec4,
        Kernel::MatmulTiledRowSums,
        Kernel::MatmulWideRowSums,
        Kernel::MatmulTiledGathered,
        Kernel::MatmulSplitSum,
        Kernel::Binary,
        Kernel::AddBias,
        Kernel::Unary,
        Kernel::Dropout,
        Kernel::Axpy,
        Kernel::Fill,
        Kernel::SumRows,
        Kernel::ReduceSum,
        Kernel::SoftmaxRows,
        Kernel::ArgmaxRows,
        Kernel::SoftmaxBackward,
        Kernel::CrossEntropyRows,
        Kernel::CrossEntropyMean,
        Kernel::CrossEntropyBackward,
        Kernel::LinearCrossEntropy,
        Kernel::Adam,
        Kernel::AdamPair,
        Kernel::AdamSix,
        Kernel::Sgd,
        Kernel::GatherBatch,
        Kernel::SumPlanes,
        Kernel::Conv2d,
        Kernel::Conv2dNarrow,
        Kernel::Conv2dBackwardInput,
        Kernel::Conv2dBackwardInputNarrow,
        Kernel::Conv2dBackwardWeight,
        Kernel::Conv2dBackwardWeightNarrow,
        Kernel::MaxPool2d,
        Kernel::MaxPool2dBackward,
    ];

    /// The WGSL module this kernel's pipeline compiles: `common.wgsl`, then its shader.
    pub(crate) fn wgsl(self) -> String {
        format!("{COMMON}\n{}", self.shader().source(self.entry_point()))
    }

    pub(super) fn shader(self) -> Shader {
        match self {
            Kernel::MatmulNaive
            | Kernel::MatmulTiled
            | Kernel::MatmulWide
            | Kernel::MatmulWideVec4
            | Kernel::MatmulTiledRowSums
            | Kernel::MatmulWideRowSums
            | Kernel::MatmulSplitSum => Shader::Matmul,
            Kernel::MatmulTiledGathered => Shader::MatmulGathered,
            Kernel::Binary | Kernel::AddBias => Shader::Elementwise,
            Kernel::Unary => Shader::Unary,
            Kernel::Dropout => Shader::Dropout,
            Kernel::Axpy => Shader::Axpy,
            Kernel::Fill => Shader::Fill,
            Kernel::SumRows | Kernel::ReduceSum | Kernel::SumPlanes => Shader::Reduce,
            Kernel::SoftmaxRows | Kernel::ArgmaxRows => Shader::Softmax,
            Kernel::SoftmaxBackward => Shader::SoftmaxBackward,
            Kernel::CrossEntropyRows | Kernel::CrossEntropyMean | Kernel::CrossEntropyBackward => Shader::CrossEntropy,
            Kernel::LinearCrossEntropy => Shader::LinearCrossEntropy,
            Kernel::Adam | Kernel::AdamPair | Kernel::AdamSix => Shader::Adam,
            Kernel::Sgd => Shader::Sgd,
            Kernel::GatherBatch => Shader::Gather,
            Kernel::Conv2d => Shader::ConvGemm(ConvPass::Forward, CONV_TILE),
            Kernel::Conv2dNarrow => Shader::ConvGemm(ConvPass::Forward, CONV_TILE_NARROW),
            Kernel::Conv2dBackwardInput => Shader::ConvGemm(ConvPass::BackwardInput, CONV_TILE),
            Kernel::Conv2dBackwardInputNarrow => Shader::ConvGemm(ConvPass::BackwardInput, CONV_TILE_NARROW),
            Kernel::Conv2dBackwardWeight => Shader::ConvGemm(ConvPass::BackwardWeight, CONV_TILE),
            Kernel::Conv2dBackwardWeightNarrow => Shader::ConvGemm(ConvPass::BackwardWeight, CONV_TILE_NARROW),
            Kernel::MaxPool2d | Kernel::MaxPool2dBackward => Shader::Pool,
        }
    }

    fn entry_point(self) -> &'static str {
        match self {
            Kernel::MatmulNaive => "matmul_naive",
            Kernel::MatmulTiled => "matmul_tiled",
            Kernel::MatmulWide => "matmul_wide",
            Kernel::MatmulWideVec4 => "matmul_wide_vec4",
            Kernel::MatmulTiledRowSums => "matmul_tiled_row_sums",
            Kernel::MatmulWideRowSums => "matmul_wide_row_sums",
            Kernel::MatmulTiledGathered => "matmul_tiled_gathered",
            Kernel::MatmulSplitSum => "matmul_split_sum",
            Kernel::Binary => "binary",
            Kernel::AddBias => "add_bias",
            Kernel::Unary => "unary",
            Kernel::Dropout => "dropout",
            Kernel::Axpy => "axpy",
            Kernel::Fill => "fill",
            Kernel::SumRows => "sum_rows",
            Kernel::ReduceSum => "reduce_sum",
            Kernel::SoftmaxRows => "softmax_rows",
            Kernel::ArgmaxRows => "argmax_rows",
            Kernel::SoftmaxBackward => "softmax_backward",
            Kernel::CrossEntropyRows => "cross_entropy_rows",
            Kernel::CrossEntropyMean => "cross_entropy_mean",
            Kernel::CrossEntropyBackward => "cross_entropy_backward",
            Kernel::LinearCrossEntropy => "linear_cross_entropy",
            Kernel::Adam => "adam",
            Kernel::AdamPair => "adam_pair",
            Kernel::AdamSix => "adam_six",
            Kernel::Sgd => "sgd",
            Kernel::GatherBatch => "gather_batch",
            Kernel::SumPlanes => "sum_planes",
            Kernel::Conv2d => "conv2d",
            Kernel::Conv2dNarrow => "conv2d_narrow",
            Kernel::Conv2dBackwardInput => "conv2d_backward_input",
            Kernel::Conv2dBackwardInputNarrow => "conv2d_backward_input_narrow",
            Kernel::Conv2dBackwardWeight => "conv2d_backward_weight",
            Kernel::Conv2dBackwardWeightNarrow => "conv2d_backward_weight_narrow",
            Kernel::MaxPool2d => "max_pool2d",
            Kernel::MaxPool2dBackward => "max_pool2d_backward",
        }
    }

    /// The storage bindings after the uniform (binding 0), numbered from 1 in this order.
    pub(crate) fn bindings(self) -> &'static [Access] {
        match self {
            Kernel::MatmulNaive | Kernel::MatmulTiled | Kernel::MatmulWide | Kernel::MatmulSplitSum => {
                &[Read, Read, Read, Read, ReadWrite]
            }
            Kernel::MatmulTiledRowSums | Kernel::MatmulWideRowSums => &[Read, Read, Read, Read, ReadWrite, ReadWrite],
            // A and B again at 7 and 8; at 6, where the row sums would be, a buffer it never reads.
            Kernel::MatmulWideVec4 => &[Read, Read, Read, Read, ReadWrite, Read, Read, Read],
            Kernel::MatmulTiledGathered => &[Read, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite],
            Kernel::Binary | Kernel::AddBias => &[Read, Read, ReadWrite],
            Kernel::Unary | Kernel::Dropout => &[Read, ReadWrite],
            Kernel::Axpy => &[ReadWrite, Read],
            Kernel::Fill => &[ReadWrite],
            Kernel::SumRows | Kernel::ReduceSum | Kernel::SumPlanes => &[Read, ReadWrite],
            Kernel::SoftmaxRows | Kernel::ArgmaxRows => &[Read, ReadWrite],
            Kernel::SoftmaxBackward => &[Read, Read, ReadWrite],
            Kernel::CrossEntropyRows | Kernel::CrossEntropyMean | Kernel::CrossEntropyBackward => {
                &[Read, Read, ReadWrite]
            }
            Kernel::LinearCrossEntropy => &[Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
            Kernel::Adam => &ADAM_BINDINGS[..4],
            Kernel::AdamPair => &ADAM_BINDINGS[..8],
            Kernel::AdamSix => &ADAM_BINDINGS,
            Kernel::Sgd => &[ReadWrite, Read, ReadWrite],
            Kernel::GatherBatch => &[Read, Read, Read, ReadWrite, ReadWrite],
            Kernel::Conv2d | Kernel::Conv2dNarrow => &[Read, Read, Read, ReadWrite],
            Kernel::Conv2dBackwardInput
            | Kernel::Conv2dBackwardInputNarrow
            | Kernel::Conv2dBackwardWeight
            | Kernel::Conv2dBackwardWeightNarrow => &[Read, Read, ReadWrite],
            Kernel::MaxPool2d => &[Read, ReadWrite],
            Kernel::MaxPool2dBackward => &[Read, ReadWrite, Read],
        }
    }
}

/// A built kernel: its pipeline and the layout its bind groups follow.
pub(crate) struct CompiledKernel {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// Shader modules and pipelines of one device, built on first use (or all at once by
/// [`Pipelines::build_all`]) and kept.
pub(crate) struct Pipelines {
    checks: wgpu::ShaderRuntimeChecks,
    /// The driver's cache the pipelines are built with, where the device keeps one.
    cache: Option<wgpu::PipelineCache>,
    modules: Mutex<IdMap<Shader, wgpu::ShaderModule>>,
    kernels: Mutex<IdMap<Kernel, Arc<CompiledKernel>>>,
}

impl Pipelines {
    pub(crate) fn new(checked: bool, cache: Option<wgpu::PipelineCache>) -> Self {
        let checks =
            if checked { wgpu::ShaderRuntimeChecks::checked() } else { wgpu::ShaderRuntimeChecks::unchecked() };
        Self { checks, cache, modules: Mutex::default(), kernels: Mutex::default() }
    }

    /// The pipeline of `kernel`, built now if this is its first use. Nothing is locked while
    /// it builds, so threads build different kernels at once; two that race for the same one
    /// both build it and the first kept wins.
    pub(crate) fn get(&self, device: &wgpu::Device, kernel: Kernel) -> Result<Arc<CompiledKernel>, GpuError> {
        if let Some(compiled) = lock(&self.kernels).get(&kernel) {
            return Ok(compiled.clone());
        }
        // Error scopes are per thread: this one sees only this build's errors.
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let compiled = self.build(device, kernel);
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Pipeline { kernel, reason: error.to_string() });
        }
        Ok(lock(&self.kernels).entry(kernel).or_insert_with(|| Arc::new(compiled)).clone())
    }

    /// Builds every kernel of `kernels` not built yet, on as many threads as the machine has
    /// cores: a thread takes one shader file at a time, so each module is compiled once.
    pub(crate) fn build_all(&self, device: &wgpu::Device, kernels: &[Kernel]) -> Result<(), GpuError> {
        let mut files: Vec<Vec<Kernel>> = Vec::new();
        for &kernel in kernels {
            match files.iter_mut().find(|file| file[0].shader() == kernel.shader()) {
                Some(file) => file.push(kernel),
                None => files.push(vec![kernel]),
            }
        }
        let next = AtomicUsize::new(0);
        let build_files = || {
            while let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                for &kernel in file {
                    self.get(device, kernel)?;
                }
            }
            Ok(())
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len());
        std::thread::scope(|scope| {
            let workers: Vec<_> = (1..threads).map(|_| scope.spawn(build_files)).collect();
            let here = build_files();
            let joined = workers.into_iter().map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            joined.fold(here, Result::and)
        })
    }

    /// The compiled module of `kernel`'s shader file, compiled now if no kernel used it yet.
    fn module(&self, device: &wgpu::Device, kernel: Kernel) -> wgpu::ShaderModule {
        if let Some(module) = lock(&self.modules).get(&kernel.shader()) {
            return module.clone();
        }
        let descriptor = wgpu::ShaderModuleDescriptor {
            label: Some(kernel.entry_point()),
            source: wgpu::ShaderSource::Wgsl(Cow::Owned(kernel.wgsl())),
        };
        // SAFETY: every kernel compares each index it computes with the sizes in its uniform
        // (or with its workgroup size) before it reads or writes, and every loop ends; the
        // launchers check the buffers against those sizes. The tests run each kernel with and
        // without the runtime checks and compare.
        let module = unsafe { device.create_shader_module_trusted(descriptor, self.checks) };
        lock(&self.modules).entry(kernel.shader()).or_insert(module).clone()
    }

    fn build(&self, device: &wgpu::Device, kernel: Kernel) -> CompiledKernel {
        let module = self.module(device, kernel);

        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                // The dispatch's slot of the uniform ring: one bind group serves every slot.
                has_dynamic_offset: true,
                min_binding_size: wgpu::BufferSize::new(super::PARAMS_BYTES),
            },
            count: None,
        }];
        for (i, access) in kernel.bindings().iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *access == Read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(kernel.entry_point()),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.entry_point()),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry_point()),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(kernel.entry_point()),
            compilation_options: Default::default(),
            cache: self.cache.as_ref(),
        });
        CompiledKernel { pipeline, layout }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_fits_a_bind_key() {
        for kernel in Kernel::ALL {
            assert!(kernel.bindings().len() <= super::super::MAX_BINDINGS, "{kernel:?}");
        }
    }
}
