// C = op(A) · op(B) (+ bias) (relu), C row-major [m, n]. Element (i, q) of op(A) is at
// a[i * a_rs + q * a_cs], element (q, j) of op(B) at b[q * b_rs + j * b_cs], so the four
// transpose combinations share one kernel.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // bit 0: add bias[col]; bit 1: relu; bit 2: A transposed; bit 3: B transposed.
    flags: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    // Output tiles per row of tiles, and in all.
    tiles_n: u32,
    tiles_total: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// Bound to A when there is no bias; read only when flags bit 0 is set.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

fn epilogue(v: f32, col: u32) -> f32 {
    var r = v;
    if (p.flags & 1u) != 0u {
        r = r + bias[col];
    }
    if (p.flags & 2u) != 0u {
        r = max(r, 0.0);
    }
    return r;
}

// One thread per output element, no shared memory: the reference and the baseline of benches.
@compute @workgroup_size(16, 16)
fn matmul_naive(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let tile = group_index(wid, nwg);
    if tile >= p.tiles_total {
        return;
    }
    let row = (tile / p.tiles_n) * 16u + lid.y;
    let col = (tile % p.tiles_n) * 16u + lid.x;
    if row >= p.m || col >= p.n {
        return;
    }
    var acc = 0.0;
    for (var q = 0u; q < p.k; q = q + 1u) {
        acc = acc + a[row * p.a_rs + q * p.a_cs] * b[q * p.b_rs + col * p.b_cs];
    }
    c[row * p.n + col] = epilogue(acc, col);
}

// 64x64 block tile, 16-deep slices of A and B staged in workgroup memory (k-major, padded to 65
// to spread banks), 4x4 outputs per thread held in registers. Thread (x, y) owns rows y + 16i
// and columns x + 16j of the tile, so its reads of B and its writes of C are contiguous across
// a warp. Loads follow the operand's contiguous dimension, chosen by the transpose flags.
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const LDS: u32 = 65u;

var<workgroup> a_tile: array<f32, 1040>; // [BK][LDS]
var<workgroup> b_tile: array<f32, 1040>; // [BK][LDS]

@compute @workgroup_size(16, 16)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let tile = group_index(wid, nwg);
    if tile >= p.tiles_total {
        return;
    }
    let row0 = (tile / p.tiles_n) * BM;
    let col0 = (tile % p.tiles_n) * BN;
    let trans_a = (p.flags & 4u) != 0u;
    let trans_b = (p.flags & 8u) != 0u;

    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        // 1024 elements of each operand, 4 per thread; e < 1024 so every tile index < 1040.
        for (var s = 0u; s < 4u; s = s + 1u) {
            let e = tid + s * 256u;
            var am: u32;
            var ak: u32;
            if trans_a {
                am = e % BM;
                ak = e / BM;
            } else {
                am = e / BK;
                ak = e % BK;
            }
            let gr = row0 + am;
            let gka = k0 + ak;
            var av = 0.0;
            if gr < p.m && gka < p.k {
                av = a[gr * p.a_rs + gka * p.a_cs];
            }
            a_tile[ak * LDS + am] = av;

            var bn: u32;
            var bk: u32;
            if trans_b {
                bn = e / BK;
                bk = e % BK;
            } else {
                bn = e % BN;
                bk = e / BN;
            }
            let gc = col0 + bn;
            let gkb = k0 + bk;
            var bv = 0.0;
            if gc < p.n && gkb < p.k {
                bv = b[gkb * p.b_rs + gc * p.b_cs];
            }
            b_tile[bk * LDS + bn] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                ar[i] = a_tile[kk * LDS + lid.y + i * 16u];
                br[i] = b_tile[kk * LDS + lid.x + i * 16u];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i][j] = acc[i][j] + ar[i] * br[j];
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = row0 + lid.y + i * 16u;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + lid.x + j * 16u;
            if row < p.m && col < p.n {
                c[row * p.n + col] = epilogue(acc[i][j], col);
            }
        }
    }
}

// For large products: a 128x128 block tile, 8-deep slices, 8x8 outputs per thread, so each
// value read from workgroup memory feeds 8 multiply-adds instead of 4. Thread (x, y) owns rows
// y + 16i and columns x + 16j (i, j < 8), as in `matmul_tiled`. Fewer, larger tiles: worth it
// only when the output has enough of them to fill the GPU (see `ops::matmul`).
const WM: u32 = 128u;
const WK: u32 = 8u;
const WLDS: u32 = 129u;

var<workgroup> a_wide: array<f32, 1032>; // [WK][WLDS]
var<workgroup> b_wide: array<f32, 1032>; // [WK][WLDS]

@compute @workgroup_size(16, 16)
fn matmul_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let tile = group_index(wid, nwg);
    if tile >= p.tiles_total {
        return;
    }
    let row0 = (tile / p.tiles_n) * WM;
    let col0 = (tile % p.tiles_n) * WM;
    let trans_a = (p.flags & 4u) != 0u;
    let trans_b = (p.flags & 8u) != 0u;

    var acc: array<array<f32, 8>, 8>;
    for (var k0 = 0u; k0 < p.k; k0 = k0 + WK) {
        // 1024 elements of each operand, 4 per thread; e < 1024 so every tile index < 1032.
        for (var s = 0u; s < 4u; s = s + 1u) {
            let e = tid + s * 256u;
            var am: u32;
            var ak: u32;
            if trans_a {
                am = e % WM;
                ak = e / WM;
            } else {
                am = e / WK;
                ak = e % WK;
            }
            let gr = row0 + am;
            let gka = k0 + ak;
            var av = 0.0;
            if gr < p.m && gka < p.k {
                av = a[gr * p.a_rs + gka * p.a_cs];
            }
            a_wide[ak * WLDS + am] = av;

            var bn: u32;
            var bk: u32;
            if trans_b {
                bn = e / WK;
                bk = e % WK;
            } else {
                bn = e % WM;
                bk = e / WM;
            }
            let gc = col0 + bn;
            let gkb = k0 + bk;
            var bv = 0.0;
            if gc < p.n && gkb < p.k {
                bv = b[gkb * p.b_rs + gc * p.b_cs];
            }
            b_wide[bk * WLDS + bn] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < WK; kk = kk + 1u) {
            var ar: array<f32, 8>;
            var br: array<f32, 8>;
            for (var i = 0u; i < 8u; i = i + 1u) {
                ar[i] = a_wide[kk * WLDS + lid.y + i * 16u];
                br[i] = b_wide[kk * WLDS + lid.x + i * 16u];
            }
            for (var i = 0u; i < 8u; i = i + 1u) {
                for (var j = 0u; j < 8u; j = j + 1u) {
                    acc[i][j] = acc[i][j] + ar[i] * br[j];
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 8u; i = i + 1u) {
        let row = row0 + lid.y + i * 16u;
        for (var j = 0u; j < 8u; j = j + 1u) {
            let col = col0 + lid.x + j * 16u;
            if row < p.m && col < p.n {
                c[row * p.n + col] = epilogue(acc[i][j], col);
            }
        }
    }
}
