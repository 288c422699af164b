// The forward convolution on the GEMM core (conv_gemm.wgsl): C [out_channels, batch * out
// pixels] = weight [out_channels, k] · the unrolled input, whose row k = (c, ky, kx) at column
// (image, oy, ox) is x[image, c, oy + ky - padding, ox + kx - padding], zero outside the image.
// C is stored in NCHW order, plus the bias (then relu).
//
// Positions are u32 that may wrap below zero ("oy - padding" above the image): sums of them are
// exact modulo 2^32, a wrapped row or column compares as too large, and an address is formed
// only for a position inside the image.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Row k = (c, ky, kx) of the unrolled input: its offset in an image, c * height * width +
// ky * width + kx, and ky, kx.
var<workgroup> k_offset: array<u32, 2u * BK>;
var<workgroup> k_y: array<u32, 2u * BK>;
var<workgroup> k_x: array<u32, 2u * BK>;

// The column of B this thread loads: whether it exists, and where its window starts.
var<private> col_ok: bool;
var<private> col_top: u32;
var<private> col_left: u32;
// image * in_channels * height * width + col_top * width + col_left
var<private> col_base: u32;

fn prepare_thread(col0: u32, tid: u32) {
    let col = col0 + tid % BN;
    let pixels = p.out_height * p.out_width;
    let pixel = col % pixels;
    col_ok = col < p.n;
    col_top = pixel / p.out_width - p.padding;
    col_left = pixel % p.out_width - p.padding;
    col_base = (col / pixels) * p.in_channels * p.height * p.width + col_top * p.width + col_left;
}

fn decode_k(slot: u32, k: u32) {
    let taps = p.kernel_h * p.kernel_w;
    let tap = k % taps;
    let ky = tap / p.kernel_w;
    let kx = tap % p.kernel_w;
    k_offset[slot] = ((k / taps) * p.height + ky) * p.width + kx;
    k_y[slot] = ky;
    k_x[slot] = kx;
}

fn load_slice(row0: u32, k0: u32, half: u32, tid: u32) {
    // Weights [out_channels, k], row-major: k runs fastest across threads.
    let ak = tid % BK;
    let k = k0 + ak;
    for (var s = 0u; s < A_LOADS; s = s + 1u) {
        let am = tid / BK + s * (WG / BK);
        let row = row0 + am;
        var v = 0.0;
        if row < p.out_channels && k < p.k {
            v = weight[row * p.k + k];
        }
        a_tile[ak * LDA + am] = v;
    }
    // Inputs: the column is fixed per thread, k comes from the table.
    let bn = tid % BN;
    for (var s = 0u; s < B_LOADS; s = s + 1u) {
        let bk = tid / BN + s * (WG / BN);
        let slot = half + bk;
        let iy = col_top + k_y[slot];
        let ix = col_left + k_x[slot];
        var v = 0.0;
        if col_ok && k0 + bk < p.k && iy < p.height && ix < p.width {
            v = x[col_base + k_offset[slot]];
        }
        b_tile[bk * BN + bn] = v;
    }
}

fn store_tile(acc: ptr<function, array<array<f32, TN>, TM>>, row0: u32, col0: u32, split: u32, lid: vec3<u32>) {
    let pixels = p.out_height * p.out_width;
    for (var j = 0u; j < TN; j = j + 1u) {
        let col = col0 + lid.x + j * 16u;
        if col >= p.n {
            continue;
        }
        let base = (col / pixels) * p.out_channels * pixels + col % pixels;
        for (var i = 0u; i < TM; i = i + 1u) {
            let row = row0 + lid.y + i * 16u;
            if row < p.out_channels {
                var v = (*acc)[i][j] + bias[row];
                if p.relu != 0u {
                    v = max(v, 0.0);
                }
                out[base + row * pixels] = v;
            }
        }
    }
}
