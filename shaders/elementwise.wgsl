// Elementwise kernels on two inputs, one thread per output element.

// Mirrored field by field by ElementwiseParams in src/backend/gpu/params.rs (op: BinaryOp; a
// test compares them).
struct Params {
    // Output elements.
    n: u32,
    // binary: 0 add, 1 mul, 2 relu mask (y where x > 0, else 0).
    op: u32,
    // add_bias: columns of x, the length of the bias.
    cols: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn binary(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= p.n {
        return;
    }
    let a = x[i];
    let b = y[i];
    var r: f32;
    switch p.op {
        case 0u: {
            r = a + b;
        }
        case 1u: {
            r = a * b;
        }
        default: {
            r = select(0.0, b, a > 0.0);
        }
    }
    out[i] = r;
}

// x [n / cols, cols] plus y = bias [cols] on every row.
@compute @workgroup_size(256)
fn add_bias(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= p.n || p.cols == 0u {
        return;
    }
    out[i] = x[i] + y[i % p.cols];
}
