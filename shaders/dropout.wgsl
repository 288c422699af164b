// Inverted dropout: out = x * scale where the mask keeps the element, else 0. The mask is drawn
// per element from its index and a 64-bit key by the same counter-based hash as
// `backend::cpu::dropout_keeps`, so CPU and GPU agree bit for bit, nothing is uploaded, and the
// backward (the same kernel on the gradient, with the same key) draws it again.

// Mirrored field by field by DropoutParams in src/backend/gpu/params.rs (a test compares them).
struct Params {
    n: u32,
    key_lo: u32,
    key_hi: u32,
    p: f32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// Chris Wellons' lowbias32.
fn hash32(v: u32) -> u32 {
    var h = v;
    h = h ^ (h >> 16u);
    h = h * 0x7feb352du;
    h = h ^ (h >> 15u);
    h = h * 0x846ca68bu;
    return h ^ (h >> 16u);
}

@compute @workgroup_size(256)
fn dropout(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= p.n {
        return;
    }
    let bits = hash32(hash32(i ^ p.key_lo) ^ p.key_hi);
    let u = f32(bits >> 8u) * (1.0 / 16777216.0);
    if u >= p.p {
        out[i] = x[i] * p.scale;
    } else {
        out[i] = 0.0;
    }
}
