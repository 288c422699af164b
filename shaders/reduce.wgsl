// Deterministic reductions: every partial sum is taken over fixed index sets in a fixed order,
// so a result's bits depend only on the input, never on scheduling.

// Mirrored field by field by ReduceParams in src/backend/gpu/params.rs (a test compares them).
struct Params {
    // sum_rows: x is [rows, cols]. reduce_sum: n elements, rows and cols unused.
    rows: u32,
    cols: u32,
    n: u32,
    // Workgroups that hold work (column blocks, or partial sums).
    groups: u32,
    // reduce_sum multiplies each partial by this (1 except on the final pass of a mean).
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// Column sums: a workgroup owns 64 columns; 4 lanes each sum every 4th row top to bottom, then
// the 4 partials are added in lane order.
@compute @workgroup_size(64, 4)
fn sum_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let g = group_index(wid, nwg);
    if g >= p.groups {
        return;
    }
    let col = g * 64u + lid.x;
    var s = 0.0;
    if col < p.cols {
        for (var r = lid.y; r < p.rows; r = r + 4u) {
            s = s + x[r * p.cols + col];
        }
    }
    red[lid.y * 64u + lid.x] = s;
    workgroupBarrier();
    if lid.y == 0u && col < p.cols {
        out[col] = ((red[lid.x] + red[64u + lid.x]) + red[128u + lid.x]) + red[192u + lid.x];
    }
}

// One pass of a sum: workgroup g adds elements [4096 g, 4096 (g + 1)) into out[g].
const ITEMS: u32 = 16u;

@compute @workgroup_size(256)
fn reduce_sum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    if g >= p.groups {
        return;
    }
    let base = g * (WG * ITEMS);
    var s = 0.0;
    for (var j = 0u; j < ITEMS; j = j + 1u) {
        let i = base + j * WG + lid;
        if i < p.n {
            s = s + x[i];
        }
    }
    let total = workgroup_sum(s, lid);
    if lid == 0u {
        out[g] = total * p.scale;
    }
}

// Sums of consecutive planes (the per-image, per-channel sums of a bias gradient): workgroup g
// adds x[g n, (g + 1) n) into out[g] (`n` the plane's length, `groups` the planes), each thread
// every 256th element in order, then the workgroup's tree.
@compute @workgroup_size(256)
fn sum_planes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    if g >= p.groups {
        return;
    }
    let base = g * p.n;
    var s = 0.0;
    for (var i = lid; i < p.n; i = i + WG) {
        s = s + x[base + i];
    }
    let total = workgroup_sum(s, lid);
    if lid == 0u {
        out[g] = total;
    }
}
