// Fills a buffer with one value (the value's bits, so NaN poisoning works too).

// Mirrored field by field by FillParams in src/backend/gpu/params.rs (a test compares them).
struct Params {
    n: u32,
    bits: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn fill(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= p.n {
        return;
    }
    out[i] = p.bits;
}
