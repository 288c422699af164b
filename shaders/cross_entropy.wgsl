// Fused log-softmax + negative log-likelihood on logits [rows, cols] with one class index per
// row stored as f32: per row (one 256-thread workgroup per row), its mean over the rows (one
// workgroup), and its gradient. A label that is not a class index in range makes that row's
// result NaN rather than reading out of bounds.

// Mirrored field by field by CrossEntropyParams in src/backend/gpu/params.rs (a test compares
// them).
struct Params {
    rows: u32,
    cols: u32,
    // cross_entropy_backward: the factor on (softmax - onehot), e.g. 1 / rows for a mean;
    // cross_entropy_mean: 1 / rows.
    scale: f32,
    nan_bits: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// The label of `row` when it is a valid class index, else cols (invalid).
fn label_of(row: u32) -> u32 {
    let l = labels[row];
    if l >= 0.0 && l < f32(p.cols) && l == floor(l) {
        return u32(l);
    }
    return p.cols;
}

// The row's maximum and sum(exp(x - max)), over the workgroup; every thread gets both.
fn row_max_and_exp_sum(base: u32, lid: u32) -> vec2<f32> {
    var m = F32_LOWEST;
    for (var c = lid; c < p.cols; c = c + WG) {
        m = max(m, logits[base + c]);
    }
    let row_max = workgroup_max(m, lid);
    var s = 0.0;
    for (var c = lid; c < p.cols; c = c + WG) {
        s = s + exp(logits[base + c] - row_max);
    }
    return vec2<f32>(row_max, workgroup_sum(s, lid));
}

// Per-row loss: log(sum(exp(x - max))) + max - x[label], into out[row].
@compute @workgroup_size(256)
fn cross_entropy_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row * p.cols;
    let stats = row_max_and_exp_sum(base, lid);
    let row_max = stats.x;
    let total = stats.y;
    if lid == 0u {
        let label = label_of(row);
        if label < p.cols {
            out[row] = log(total) + row_max - logits[base + label];
        } else {
            out[row] = nan_f32(p.nan_bits);
        }
    }
}

// Gradient of the loss with respect to the logits: (softmax - onehot(label)) * scale, into out
// [rows, cols].
@compute @workgroup_size(256)
fn cross_entropy_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row * p.cols;
    let stats = row_max_and_exp_sum(base, lid);
    let row_max = stats.x;
    let inv = 1.0 / stats.y;
    let label = label_of(row);
    for (var c = lid; c < p.cols; c = c + WG) {
        var v = exp(logits[base + c] - row_max) * inv;
        if c == label {
            v = v - 1.0;
        }
        if label >= p.cols {
            v = nan_f32(p.nan_bits);
        }
        out[base + c] = v * p.scale;
    }
}

// The mean loss over all rows in one workgroup: thread t takes rows t, t + 256, ... (each row
// serially), then the per-thread sums are added in a fixed tree. `scale` is 1 / rows. Batches
// have a few hundred rows of a few classes, so one workgroup finishes in about the time of a
// launch, and the mean needs no second pass.
@compute @workgroup_size(256)
fn cross_entropy_mean(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var row = lid; row < p.rows; row = row + WG) {
        let base = row * p.cols;
        var row_max = F32_LOWEST;
        for (var c = 0u; c < p.cols; c = c + 1u) {
            row_max = max(row_max, logits[base + c]);
        }
        var total = 0.0;
        for (var c = 0u; c < p.cols; c = c + 1u) {
            total = total + exp(logits[base + c] - row_max);
        }
        let label = label_of(row);
        if label < p.cols {
            s = s + (log(total) + row_max - logits[base + label]);
        } else {
            s = s + nan_f32(p.nan_bits);
        }
    }
    let sum = workgroup_sum(s, lid);
    if lid == 0u {
        out[0] = sum * p.scale;
    }
}
