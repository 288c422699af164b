// Row kernels on x [rows, cols]: one 256-thread workgroup per row, workgroup reductions.

// Mirrored field by field by RowParams in src/backend/gpu/params.rs (a test compares them).
struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> red_index: array<u32, 256>;

// Numerically stable softmax: exp(x - max) / sum.
@compute @workgroup_size(256)
fn softmax_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row * p.cols;
    var m = F32_LOWEST;
    for (var c = lid; c < p.cols; c = c + WG) {
        m = max(m, x[base + c]);
    }
    let row_max = workgroup_max(m, lid);
    var s = 0.0;
    for (var c = lid; c < p.cols; c = c + WG) {
        s = s + exp(x[base + c] - row_max);
    }
    let inv = 1.0 / workgroup_sum(s, lid);
    for (var c = lid; c < p.cols; c = c + WG) {
        out[base + c] = exp(x[base + c] - row_max) * inv;
    }
}

// Index of the largest element of each row (the first one on ties), written as an f32 like the
// labels. Each thread keeps its first maximum; the tree keeps the larger value, then the smaller
// index. A row with no element above the lowest f32 (or only NaN) gives 0, as the CPU does.
@compute @workgroup_size(256)
fn argmax_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row * p.cols;
    var best = F32_LOWEST;
    var best_i = 0xffffffffu;
    for (var c = lid; c < p.cols; c = c + WG) {
        let v = x[base + c];
        if v > best || (best_i == 0xffffffffu && v == best) {
            best = v;
            best_i = c;
        }
    }
    red[lid] = best;
    red_index[lid] = best_i;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if lid < s {
            let v = red[lid + s];
            let i = red_index[lid + s];
            if v > red[lid] || (v == red[lid] && i < red_index[lid]) {
                red[lid] = v;
                red_index[lid] = i;
            }
        }
        workgroupBarrier();
    }
    if lid == 0u {
        var i = red_index[0];
        if i == 0xffffffffu {
            i = 0u;
        }
        out[row] = f32(i);
    }
}
