// One SGD step with momentum and weight decay in place, the formulas of `cpu::sgd_step`.

// Mirrored field by field by SgdParams in src/backend/gpu/params.rs (a test compares them).
struct Params {
    n: u32,
    // 1 when momentum is non-zero: the step follows the momentum buffer.
    use_momentum: u32,
    // momentum, or 0 on the first step (the buffer starts as the gradient).
    keep: f32,
    lr: f32,
    weight_decay: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> momentum: array<f32>;

@compute @workgroup_size(256)
fn sgd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= p.n {
        return;
    }
    let w = param[i];
    let d = grad[i] + p.weight_decay * w;
    let b = p.keep * momentum[i] + d;
    momentum[i] = b;
    if p.use_momentum != 0u {
        param[i] = w - p.lr * b;
    } else {
        param[i] = w - p.lr * d;
    }
}
