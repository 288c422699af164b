// The input gradient of a convolution on the GEMM core (conv_gemm.wgsl): dx [in_channels,
// batch * height * width] = A · B with k = (oc, ky, kx), A [c, k] = weight[oc, c, ky, kx] and
// B [k, (image, y, x)] = dy[image, oc, y + padding - ky, x + padding - kx], zero outside the
// output. dx is stored in NCHW order.
//
// Positions are u32 that may wrap below zero, as in conv2d.wgsl.

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// k = (oc, ky, kx): where its weights start, oc * in_channels * kh * kw + ky * kw + kx (input
// channel c adds c * kh * kw); its offset in dy's image, oc * out pixels - ky * out_width - kx;
// and ky, kx.
var<workgroup> k_weight: array<u32, 2u * BK>;
var<workgroup> k_offset: array<u32, 2u * BK>;
var<workgroup> k_y: array<u32, 2u * BK>;
var<workgroup> k_x: array<u32, 2u * BK>;

// The column (image, y, x) of B this thread loads: whether it exists, y + padding, x + padding,
// and image * out_channels * out pixels + (y + padding) * out_width + x + padding.
var<private> col_ok: bool;
var<private> col_y: u32;
var<private> col_x: u32;
var<private> col_base: u32;

fn prepare_thread(col0: u32, tid: u32) {
    let col = col0 + tid % BN;
    let pixels = p.height * p.width;
    let pixel = col % pixels;
    col_ok = col < p.n;
    col_y = pixel / p.width + p.padding;
    col_x = pixel % p.width + p.padding;
    col_base = (col / pixels) * p.out_channels * p.out_height * p.out_width + col_y * p.out_width + col_x;
}

fn decode_k(slot: u32, k: u32) {
    let taps = p.kernel_h * p.kernel_w;
    let oc = k / taps;
    let tap = k % taps;
    let ky = tap / p.kernel_w;
    let kx = tap % p.kernel_w;
    k_weight[slot] = oc * p.in_channels * taps + tap;
    k_offset[slot] = oc * p.out_height * p.out_width - ky * p.out_width - kx;
    k_y[slot] = ky;
    k_x[slot] = kx;
}

fn load_slice(row0: u32, k0: u32, half: u32, tid: u32) {
    // Weights: k runs fastest across threads (the kernel offsets of one output channel are
    // contiguous), the input channel steps by kh * kw.
    let ak = tid % BK;
    let k = k0 + ak;
    let taps = p.kernel_h * p.kernel_w;
    for (var s = 0u; s < A_LOADS; s = s + 1u) {
        let am = tid / BK + s * (WG / BK);
        let row = row0 + am;
        var v = 0.0;
        if row < p.in_channels && k < p.k {
            v = weight[k_weight[half + ak] + row * taps];
        }
        a_tile[ak * LDA + am] = v;
    }
    // Output gradients: the column is fixed per thread, k comes from the table.
    let bn = tid % BN;
    for (var s = 0u; s < B_LOADS; s = s + 1u) {
        let bk = tid / BN + s * (WG / BN);
        let slot = half + bk;
        let oy = col_y - k_y[slot];
        let ox = col_x - k_x[slot];
        var v = 0.0;
        if col_ok && k0 + bk < p.k && oy < p.out_height && ox < p.out_width {
            v = dy[col_base + k_offset[slot]];
        }
        b_tile[bk * BN + bn] = v;
    }
}

fn store_tile(acc: ptr<function, array<array<f32, TN>, TM>>, row0: u32, col0: u32, split: u32, lid: vec3<u32>) {
    let pixels = p.height * p.width;
    for (var j = 0u; j < TN; j = j + 1u) {
        let col = col0 + lid.x + j * 16u;
        if col >= p.n {
            continue;
        }
        let base = (col / pixels) * p.in_channels * pixels + col % pixels;
        for (var i = 0u; i < TM; i = i + 1u) {
            let row = row0 + lid.y + i * 16u;
            if row < p.in_channels {
                dx[base + row * pixels] = (*acc)[i][j];
            }
        }
    }
}
