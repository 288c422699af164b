// The weight gradient of a convolution on the GEMM core (conv_gemm.wgsl): dw [out_channels,
// in_channels * kh * kw] = A · B with k = (image, oy, ox) over the batch's output pixels,
// A [oc, k] = dy[image, oc, oy, ox] and B [k, (c, ky, kx)] = x[image, c, oy + ky - padding,
// ox + kx - padding], zero outside the image. With several splits, split s writes its partial
// dw at out[s * out_channels * n ..].
//
// Positions are u32 that may wrap below zero, as in conv2d.wgsl.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// k = (image, oy, ox): its offset in dy, image * out_channels * out pixels + oy * out_width +
// ox (output channel oc adds oc * out pixels); oy - padding, ox - padding; and its offset in x,
// image * in_channels * height * width + (oy - padding) * width + ox - padding.
var<workgroup> k_dy: array<u32, 2u * BK>;
var<workgroup> k_top: array<u32, 2u * BK>;
var<workgroup> k_left: array<u32, 2u * BK>;
var<workgroup> k_x: array<u32, 2u * BK>;

// The column (c, ky, kx) of B this thread loads: whether it exists, ky, kx, and its offset in
// an image, c * height * width + ky * width + kx.
var<private> col_ok: bool;
var<private> col_ky: u32;
var<private> col_kx: u32;
var<private> col_offset: u32;

fn prepare_thread(col0: u32, tid: u32) {
    let col = col0 + tid % BN;
    let taps = p.kernel_h * p.kernel_w;
    let tap = col % taps;
    col_ok = col < p.n;
    col_ky = tap / p.kernel_w;
    col_kx = tap % p.kernel_w;
    col_offset = ((col / taps) * p.height + col_ky) * p.width + col_kx;
}

fn decode_k(slot: u32, k: u32) {
    let pixels = p.out_height * p.out_width;
    let image = k / pixels;
    let pixel = k % pixels;
    let top = pixel / p.out_width - p.padding;
    let left = pixel % p.out_width - p.padding;
    k_dy[slot] = image * p.out_channels * pixels + pixel;
    k_top[slot] = top;
    k_left[slot] = left;
    k_x[slot] = image * p.in_channels * p.height * p.width + top * p.width + left;
}

fn load_slice(row0: u32, k0: u32, half: u32, tid: u32) {
    // Output gradients: k runs fastest across threads (the pixels of one image are contiguous),
    // the output channel steps by the out pixels.
    let ak = tid % BK;
    let k = k0 + ak;
    let pixels = p.out_height * p.out_width;
    for (var s = 0u; s < A_LOADS; s = s + 1u) {
        let am = tid / BK + s * (WG / BK);
        let row = row0 + am;
        var v = 0.0;
        if row < p.out_channels && k < p.k {
            v = dy[k_dy[half + ak] + row * pixels];
        }
        a_tile[ak * LDA + am] = v;
    }
    // Inputs: the column is fixed per thread, k comes from the table.
    let bn = tid % BN;
    for (var s = 0u; s < B_LOADS; s = s + 1u) {
        let bk = tid / BN + s * (WG / BN);
        let slot = half + bk;
        let iy = k_top[slot] + col_ky;
        let ix = k_left[slot] + col_kx;
        var v = 0.0;
        if col_ok && k0 + bk < p.k && iy < p.height && ix < p.width {
            v = x[k_x[slot] + col_offset];
        }
        b_tile[bk * BN + bn] = v;
    }
}

fn store_tile(acc: ptr<function, array<array<f32, TN>, TM>>, row0: u32, col0: u32, split: u32, lid: vec3<u32>) {
    let base = split * p.out_channels * p.n;
    for (var i = 0u; i < TM; i = i + 1u) {
        let row = row0 + lid.y + i * 16u;
        for (var j = 0u; j < TN; j = j + 1u) {
            let col = col0 + lid.x + j * 16u;
            if row < p.out_channels && col < p.n {
                out[base + row * p.n + col] = (*acc)[i][j];
            }
        }
    }
}
