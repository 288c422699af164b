// Prepended to every kernel file (see src/backend/gpu/pipeline.rs): helpers shared by the kernels.
//
// Kernels run with naga's runtime bounds checks off, so every index below is kept in range by
// construction: each global index is compared with a size from the kernel's uniform, and each
// workgroup index with the workgroup size.

const WG: u32 = 256u;
// The lowest finite f32: the start of a max reduction (WGSL has no infinity literal).
const F32_LOWEST: f32 = -3.40282347e38;

var<workgroup> red: array<f32, 256>;

// The index of this workgroup in a grid that wraps into y past the per-dimension limit.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// A quiet NaN made at run time: marks results of invalid input (a label out of range, a sample
// index past the dataset) so that they cannot pass unnoticed.
fn nan_f32(bits: u32) -> f32 {
    return bitcast<f32>(bits);
}

// Byte `byte` of a u8 array packed four to a u32 word, from the word that holds it.
fn byte_of(word: u32, byte: u32) -> u32 {
    return (word >> ((byte % 4u) * 8u)) & 255u;
}

// The maximum of `v` over a 256-thread workgroup; every thread gets it. `lid` < 256.
fn workgroup_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if lid < s {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// The sum of `v` over a 256-thread workgroup, in a fixed tree order; every thread gets it.
fn workgroup_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if lid < s {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}
