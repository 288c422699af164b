// A register-blocked matmul, instantiated by `backend::gpu::pipeline` (the names in braces are
// filled in there): `matmul_tiled` (64x64 block tile, 16-deep slices, 4x4 outputs per thread)
// for most products and `matmul_wide` (128x128, 8-deep, 8x8) for large ones, where each value
// read from workgroup memory feeds twice as many multiply-adds. The `_row_sums` instances also
// write each row's sum of op(A) over k to `row_sums` (a weight gradient dzᵀ·x with its bias
// gradient Σ dz): every thread sums the A values it reads anyway, in k order, and the threads
// of the first column of tiles store them, so each row has one writer. The header defines
// `load_a`, how an element of op(A) is read (`matmul_gathered.wgsl` gathers it from bytes).
//
// Slices of A and B are staged in workgroup memory k-major, padded to {LDS} to spread banks.
// Thread (x, y) owns rows y + 16i and columns x + 16j of the tile (i, j < {TM}), so its reads of
// B and its writes of C are contiguous across a warp. Loads follow the operand's contiguous
// dimension, chosen by the transpose flags.

var<workgroup> a_{NAME}: array<f32, {TILE_LEN}>; // [{BK}][{LDS}]
var<workgroup> b_{NAME}: array<f32, {TILE_LEN}>; // [{BK}][{LDS}]

@compute @workgroup_size(16, 16)
fn {NAME}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let tile = group_index(wid, nwg);
    if tile >= p.tiles_total {
        return;
    }
    let row0 = (tile / p.tiles_n) * {BM}u;
    let col0 = (tile % p.tiles_n) * {BM}u;
    let trans_a = (p.flags & 4u) != 0u;
    let trans_b = (p.flags & 8u) != 0u;

    var acc: array<array<f32, {TM}>, {TM}>;
    var row_sum: array<f32, {TM}>;
    for (var k0 = 0u; k0 < p.k; k0 = k0 + {BK}u) {
        // {BM} x {BK} elements of each operand, {LOADS} per thread; e < {BM} * {BK} so every
        // tile index is below {TILE_LEN}.
        for (var s = 0u; s < {LOADS}u; s = s + 1u) {
            let e = tid + s * 256u;
            var am: u32;
            var ak: u32;
            if trans_a {
                am = e % {BM}u;
                ak = e / {BM}u;
            } else {
                am = e / {BK}u;
                ak = e % {BK}u;
            }
            let gr = row0 + am;
            let gka = k0 + ak;
            var av = 0.0;
            if gr < p.m && gka < p.k {
                av = load_a(gr, gka);
                {AFTER_LOAD_A}
            }
            a_{NAME}[ak * {LDS}u + am] = av;

            var bn: u32;
            var bk: u32;
            if trans_b {
                bn = e / {BK}u;
                bk = e % {BK}u;
            } else {
                bn = e % {BM}u;
                bk = e / {BM}u;
            }
            let gc = col0 + bn;
            let gkb = k0 + bk;
            var bv = 0.0;
            if gc < p.n && gkb < p.k {
                bv = b[gkb * p.b_rs + gc * p.b_cs];
            }
            b_{NAME}[bk * {LDS}u + bn] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < {BK}u; kk = kk + 1u) {
            var ar: array<f32, {TM}>;
            var br: array<f32, {TM}>;
            for (var i = 0u; i < {TM}u; i = i + 1u) {
                ar[i] = a_{NAME}[kk * {LDS}u + lid.y + i * 16u];
                br[i] = b_{NAME}[kk * {LDS}u + lid.x + i * 16u];
            }
            {ROW_SUMS_ADD}
            for (var i = 0u; i < {TM}u; i = i + 1u) {
                for (var j = 0u; j < {TM}u; j = j + 1u) {
                    acc[i][j] = acc[i][j] + ar[i] * br[j];
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < {TM}u; i = i + 1u) {
        let row = row0 + lid.y + i * 16u;
        for (var j = 0u; j < {TM}u; j = j + 1u) {
            let col = col0 + lid.x + j * 16u;
            if row < p.m && col < p.n {
                c[row * p.n + col] = epilogue(acc[i][j], row, col);
            }
        }
    }
    {FIRST_COLUMN_STORE}
}
