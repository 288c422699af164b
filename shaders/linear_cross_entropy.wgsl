// A classifier's last layer and its loss in one dispatch: logits = x · wᵀ + bias for x
// [rows, k] and w [classes, k] (at most 16 classes), then per row the negative log-likelihood
// of log_softmax(logits) at the row's label and its gradient (softmax - onehot) * scale, then
// the mean loss (the sum in a fixed order, times scale) and a running sum of losses updated
// with it. One workgroup does it all, so the mean needs no second pass and the result does not
// depend on scheduling: a training batch is a few hundred rows of a few classes. A label that
// is not a class index makes that row's loss and gradient NaN instead of reading out of bounds.

// Mirrored field by field by LinearLossParams in src/backend/gpu/params.rs.
struct Params {
    rows: u32,
    k: u32,
    classes: u32,
    // 1: the running sum becomes sum_scale * loss; 0: it adds that.
    reset: u32,
    // 1 / rows: the factor of the mean and of the gradient.
    scale: f32,
    sum_scale: f32,
    nan_bits: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> labels: array<f32>;
@group(0) @binding(5) var<storage, read_write> logits: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad: array<f32>;
@group(0) @binding(7) var<storage, read_write> loss: array<f32>;
@group(0) @binding(8) var<storage, read_write> running: array<f32>;

// Rows per pass (each thread computes two of them), classes at most (four per thread), and the
// depth of a k slice.
const ROWS: u32 = 128u;
const CLASSES: u32 = 16u;
const DEPTH: u32 = 16u;
// A row of logits in `xs` after the product, padded against bank conflicts.
const ZS: u32 = CLASSES + 1u;

// The x slice, k-major [DEPTH][ROWS + 1]; after the product, the pass's logits [ROWS][ZS].
// max(DEPTH * (ROWS + 1), ROWS * ZS) = 2176.
var<workgroup> xs: array<f32, 2176>;
// The w slice, [DEPTH][CLASSES / 4] vectors of four classes.
var<workgroup> ws: array<vec4<f32>, 64>;

// The label of `row` when it is a class index, else p.classes (invalid).
fn class_of(row: u32) -> u32 {
    let l = labels[row];
    if l >= 0.0 && l < f32(p.classes) && l == floor(l) {
        return u32(l);
    }
    return p.classes;
}

// The logits of the rows row0.. of a pass into xs as [ROWS][ZS]: thread (r, q) computes rows
// r and r + 64, classes 4q..4q + 3.
fn pass_logits(row0: u32, lid: u32) {
    let r = lid % 64u;
    let q = lid / 64u;
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 = k0 + DEPTH) {
        // ROWS x DEPTH of x, 8 per thread, read along k.
        for (var s = 0u; s < 8u; s = s + 1u) {
            let e = lid + s * 256u;
            let row = row0 + e / DEPTH;
            let kk = e % DEPTH;
            var v = 0.0;
            if row < p.rows && k0 + kk < p.k {
                v = x[row * p.k + k0 + kk];
            }
            xs[kk * (ROWS + 1u) + e / DEPTH] = v;
        }
        // CLASSES x DEPTH of w: thread (kk, q) of the first 64 builds the vector of classes
        // 4q..4q + 3 at depth kk.
        if lid < DEPTH * 4u {
            let kk = lid / 4u;
            let q = lid % 4u;
            var v = vec4<f32>(0.0);
            for (var i = 0u; i < 4u; i = i + 1u) {
                let c = 4u * q + i;
                if c < p.classes && k0 + kk < p.k {
                    v[i] = w[c * p.k + k0 + kk];
                }
            }
            ws[lid] = v;
        }
        workgroupBarrier();
        for (var j = 0u; j < DEPTH; j = j + 1u) {
            let wv = ws[j * 4u + q];
            lo = lo + xs[j * (ROWS + 1u) + r] * wv;
            hi = hi + xs[j * (ROWS + 1u) + r + 64u] * wv;
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let c = 4u * q + i;
        if c < p.classes {
            xs[r * ZS + c] = lo[i] + bias[c];
            xs[(r + 64u) * ZS + c] = hi[i] + bias[c];
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn linear_cross_entropy(@builtin(local_invocation_index) lid: u32) {
    // Thread t < ROWS: the losses of its rows, pass by pass.
    var loss_sum = 0.0;
    for (var row0 = 0u; row0 < p.rows; row0 = row0 + ROWS) {
        pass_logits(row0, lid);
        let row = row0 + lid;
        if lid < ROWS && row < p.rows {
            let z = lid * ZS;
            var row_max = F32_LOWEST;
            for (var c = 0u; c < p.classes; c = c + 1u) {
                row_max = max(row_max, xs[z + c]);
            }
            var total = 0.0;
            for (var c = 0u; c < p.classes; c = c + 1u) {
                total = total + exp(xs[z + c] - row_max);
            }
            let inv = 1.0 / total;
            let label = class_of(row);
            for (var c = 0u; c < p.classes; c = c + 1u) {
                let v = xs[z + c];
                logits[row * p.classes + c] = v;
                var g = exp(v - row_max) * inv;
                if c == label {
                    g = g - 1.0;
                }
                if label >= p.classes {
                    g = nan_f32(p.nan_bits);
                }
                grad[row * p.classes + c] = g * p.scale;
            }
            if label < p.classes {
                loss_sum = loss_sum + (log(total) + row_max - xs[z + label]);
            } else {
                loss_sum = loss_sum + nan_f32(p.nan_bits);
            }
        }
        workgroupBarrier();
    }
    let mean = workgroup_sum(loss_sum, lid) * p.scale;
    if lid == 0u {
        loss[0] = mean;
        if p.reset != 0u {
            running[0] = p.sum_scale * mean;
        } else {
            running[0] = running[0] + p.sum_scale * mean;
        }
    }
}
