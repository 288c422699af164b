// One Adam/AdamW step in place, with the operation order of `cpu::adam_step` (PyTorch's).
// The host folds the step's bias corrections and decay factors into the uniform.

struct Params {
    n: u32,
    weight_factor: f32,
    gradient_decay: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    step_size: f32,
    bias_correction2_sqrt: f32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn adam(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= p.n {
        return;
    }
    var w = param[i] * p.weight_factor;
    let g = grad[i] + p.gradient_decay * w;
    let mi = m[i] + (g - m[i]) * p.one_minus_beta1;
    let vi = v[i] * p.beta2 + p.one_minus_beta2 * g * g;
    w = w - p.step_size * mi / (sqrt(vi) / p.bias_correction2_sqrt + p.eps);
    m[i] = mi;
    v[i] = vi;
    param[i] = w;
}
