// Adam/AdamW steps in place, with the operation order of `cpu::adam_step` (PyTorch's). The host
// folds the step's bias corrections and decay factors into the uniform. `adam` updates one
// parameter; `adam_pair` two in one dispatch (threads past the first's n take the second);
// `adam_six` six, on devices that bind 24 storage buffers to a kernel.

// Mirrored field by field by AdamParams in src/backend/gpu/params.rs (a test compares them).
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
    // adam_pair and adam_six: elements of the second parameter, then (adam_six) of the others.
    n2: u32,
    n3: u32,
    n4: u32,
    n5: u32,
    n6: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> param2: array<f32>;
@group(0) @binding(6) var<storage, read> grad2: array<f32>;
@group(0) @binding(7) var<storage, read_write> m2: array<f32>;
@group(0) @binding(8) var<storage, read_write> v2: array<f32>;
// adam_six's other bindings and its body follow, written by `adam_six` in src/backend/gpu/pipeline.rs.

// The new parameter, first and second moment of one element.
fn update(w0: f32, g0: f32, m0: f32, v0: f32) -> vec3<f32> {
    var w = w0 * p.weight_factor;
    let g = g0 + p.gradient_decay * w;
    let mi = m0 + (g - m0) * p.one_minus_beta1;
    let vi = v0 * p.beta2 + p.one_minus_beta2 * g * g;
    w = w - p.step_size * mi / (sqrt(vi) / p.bias_correction2_sqrt + p.eps);
    return vec3<f32>(w, mi, vi);
}

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
    let r = update(param[i], grad[i], m[i], v[i]);
    m[i] = r.y;
    v[i] = r.z;
    param[i] = r.x;
}

@compute @workgroup_size(256)
fn adam_pair(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i < p.n {
        let r = update(param[i], grad[i], m[i], v[i]);
        m[i] = r.y;
        v[i] = r.z;
        param[i] = r.x;
    } else if i - p.n < p.n2 {
        let j = i - p.n;
        let r = update(param2[j], grad2[j], m2[j], v2[j]);
        m2[j] = r.y;
        v2[j] = r.z;
        param2[j] = r.x;
    }
}

