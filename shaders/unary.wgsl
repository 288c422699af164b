// Elementwise kernels on one input, one thread per element.

// Mirrored field by field by UnaryParams in src/backend/gpu/params.rs (op: UnaryOp; a test
// compares them).
struct Params {
    n: u32,
    // 0: x * value, 1: relu.
    op: u32,
    value: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn unary(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= p.n {
        return;
    }
    if p.op == 0u {
        out[i] = x[i] * p.value;
    } else {
        out[i] = max(x[i], 0.0);
    }
}
