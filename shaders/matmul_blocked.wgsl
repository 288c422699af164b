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
//
// A split product (p.parts > 1) gives each tile several workgroups, each its own run of k, and
// stores their unfinished sums for `matmul_split_sum` (matmul.wgsl) to add up in order.

var<workgroup> a_{NAME}: array<f32, {TILE_LEN}>; // [{BK}][{LDS}]
var<workgroup> b_{NAME}: array<f32, {TILE_LEN}>; // [{BK}][{LDS}]

// Where element s of thread tid's share of a {BM} x {BK} slice of op(A) goes in the tile:
// (row, depth), along A's contiguous dimension. s < {LOADS}, so both are inside the tile. A
// thread's elements are 256 apart, or (in the `_vec4` instance) {LOADS} neighbours that one
// vec4 load reads.
fn a_place_{NAME}(tid: u32, s: u32, trans_a: bool) -> vec2<u32> {
    let e = {ELEMENT};
    if trans_a {
        return vec2<u32>(e % {BM}u, e / {BM}u);
    }
    return vec2<u32>(e / {BK}u, e % {BK}u);
}

// As a_place for op(B): (column, depth).
fn b_place_{NAME}(tid: u32, s: u32, trans_b: bool) -> vec2<u32> {
    let e = {ELEMENT};
    if trans_b {
        return vec2<u32>(e / {BK}u, e % {BK}u);
    }
    return vec2<u32>(e % {BM}u, e / {BM}u);
}

@compute @workgroup_size(16, 16)
fn {NAME}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    // Workgroup g computes part g / tiles_total of tile g % tiles_total: its run of k.
    let group = group_index(wid, nwg);
    if group >= p.tiles_total * p.parts {
        return;
    }
    let tile = group % p.tiles_total;
    let part = group / p.tiles_total;
    let k_begin = part * p.k_part;
    let k_end = min(k_begin + p.k_part, p.k);
    let row0 = (tile / p.tiles_n) * {BM}u;
    let col0 = (tile % p.tiles_n) * {BM}u;
    let trans_a = (p.flags & 4u) != 0u;
    let trans_b = (p.flags & 8u) != 0u;

    var acc: array<array<f32, {TM}>, {TM}>;
    var row_sum: array<f32, {TM}>;
    // This thread's share of the next slice of each operand: read from memory while the slice
    // before it is multiplied out of workgroup memory, so the reads' latency hides behind it.
    var a_next: array<f32, {LOADS}>;
    var b_next: array<f32, {LOADS}>;
    // Pass j reads slice j and multiplies slice j - 1; one pass more than there are slices.
    for (var k0 = k_begin; k0 < k_end + {BK}u; k0 = k0 + {BK}u) {
        if k0 < k_end {
            for (var r = 0u; r < {READS}u; r = r + 1u) {
                let ap = a_place_{NAME}(tid, r * {WIDTH}u, trans_a);
                let gr = row0 + ap.x;
                let gka = k0 + ap.y;
                var av = {VALUE}(0.0);
                if gr < p.m && gka < k_end {
                    av = {READ_A};
                    {AFTER_LOAD_A}
                }
                let bp = b_place_{NAME}(tid, r * {WIDTH}u, trans_b);
                let gc = col0 + bp.x;
                let gkb = k0 + bp.y;
                var bv = {VALUE}(0.0);
                if gc < p.n && gkb < k_end {
                    bv = {READ_B};
                }
                {KEEP}
            }
        }
        if k0 > k_begin {
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
        }
        workgroupBarrier();
        if k0 < k_end {
            for (var s = 0u; s < {LOADS}u; s = s + 1u) {
                let ap = a_place_{NAME}(tid, s, trans_a);
                a_{NAME}[ap.y * {LDS}u + ap.x] = a_next[s];
                let bp = b_place_{NAME}(tid, s, trans_b);
                b_{NAME}[bp.y * {LDS}u + bp.x] = b_next[s];
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < {TM}u; i = i + 1u) {
        let row = row0 + lid.y + i * 16u;
        for (var j = 0u; j < {TM}u; j = j + 1u) {
            let col = col0 + lid.x + j * 16u;
            if row < p.m && col < p.n {
                if p.parts > 1u {
                    c[(part * p.m + row) * p.n + col] = acc[i][j];
                } else {
                    c[row * p.n + col] = epilogue(acc[i][j], row, col);
                }
            }
        }
    }
    {FIRST_COLUMN_STORE}
}
