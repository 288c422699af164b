// Softmax backward per row from the output y and the incoming gradient dy:
// dx = y * (dy - sum(dy * y)). One 256-thread workgroup per row.

// Mirrored field by field by RowParams in src/backend/gpu/params.rs (a test compares them).
struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn softmax_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row * p.cols;
    var s = 0.0;
    for (var c = lid; c < p.cols; c = c + WG) {
        s = s + y[base + c] * dy[base + c];
    }
    let dot = workgroup_sum(s, lid);
    for (var c = lid; c < p.cols; c = c + WG) {
        dx[base + c] = y[base + c] * (dy[base + c] - dot);
    }
}
