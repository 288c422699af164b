// acc += alpha * x in place (acc = alpha * x when reset is 1): accumulating gradients or losses
// without a new buffer.

// Mirrored field by field by AxpyParams in src/backend/gpu/params.rs (a test compares them).
struct Params {
    n: u32,
    alpha: f32,
    reset: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(256)
fn axpy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= p.n {
        return;
    }
    if p.reset != 0u {
        acc[i] = p.alpha * x[i];
    } else {
        acc[i] = acc[i] + p.alpha * x[i];
    }
}
