// The register-blocked core of the convolution GEMMs, instantiated by `backend::gpu::pipeline`
// once per kernel and tile: the tile sizes BM, BN, BK, TM, TN are declared before this text, the
// kernel's own file (conv2d*.wgsl) comes after it, and {NAME} is its entry point.
//
// C [m, n] = A [m, k] · B [k, n] with neither operand in memory as a matrix (an implicit GEMM):
// the kernel file gathers each BK-deep slice of A and B from the tensors as it loads them
// (`load_slice`) and puts each result where it belongs (`store_tile`). A 16x16 workgroup
// computes a BM x BN tile; thread (x, y) owns rows y + 16 i and columns x + 16 j (i < TM,
// j < TN), so its reads of B's slice and its stores are contiguous across a warp.
//
// A reduction index k stands for a tuple (an input channel and a kernel offset, or an image and
// a pixel) that the gathers need. Threads tid < BK decode the next slice's k into a table in
// workgroup memory (`decode_k`) while the current slice loads, so the loads themselves never
// divide; the table has two halves, one read while the other is written.
//
// A workgroup reduces over k in [split * k_split, (split + 1) * k_split) of its split. Only the
// weight gradient, whose reduction is long and output small, has more than one split: each
// writes a partial tile, which the launcher sums.

// Mirrored field by field by ConvGemmParams in src/backend/gpu/params.rs (a test compares them).
struct Params {
    in_channels: u32,
    height: u32,
    width: u32,
    out_channels: u32,
    kernel_h: u32,
    kernel_w: u32,
    padding: u32,
    out_height: u32,
    out_width: u32,
    // Columns of C and the reduction length (the rows are a channel count above).
    n: u32,
    k: u32,
    // Tiles per row of tiles, per split, and in all.
    tiles_n: u32,
    tiles_per_split: u32,
    tiles_total: u32,
    // Reduction elements per split: a multiple of BK, or k when there is one split.
    k_split: u32,
    // conv2d: 1 applies relu after the bias.
    relu: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Loads per thread and slice of each operand (256 threads share a BM x BK and a BK x BN slice).
const A_LOADS: u32 = BM * BK / WG;
const B_LOADS: u32 = BN * BK / WG;

// The slices, k-major: a_tile[kk * LDA + row], b_tile[kk * BN + col]. A's rows are padded by one
// because its loads run along k across threads, which would otherwise all hit one bank.
const LDA: u32 = BM + 1u;
var<workgroup> a_tile: array<f32, BK * LDA>;
var<workgroup> b_tile: array<f32, BK * BN>;

@compute @workgroup_size(16, 16)
fn {NAME}(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let t = group_index(wid, nwg);
    if t >= p.tiles_total {
        return;
    }
    let split = t / p.tiles_per_split;
    let tile = t % p.tiles_per_split;
    let row0 = (tile / p.tiles_n) * BM;
    let col0 = (tile % p.tiles_n) * BN;
    let k_begin = split * p.k_split;
    let k_end = min(k_begin + p.k_split, p.k);

    prepare_thread(col0, tid);
    if tid < BK {
        decode_k(tid, k_begin + tid);
    }
    workgroupBarrier();

    var acc: array<array<f32, TN>, TM>;
    var half = 0u;
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + BK) {
        // The other half was last read by the previous slice's loads, which all ended before the
        // barrier that followed them.
        if tid < BK {
            decode_k((half ^ 1u) * BK + tid, k0 + BK + tid);
        }
        load_slice(row0, k0, half * BK, tid);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            var ar: array<f32, TM>;
            var br: array<f32, TN>;
            for (var i = 0u; i < TM; i = i + 1u) {
                ar[i] = a_tile[kk * LDA + lid.y + i * 16u];
            }
            for (var j = 0u; j < TN; j = j + 1u) {
                br[j] = b_tile[kk * BN + lid.x + j * 16u];
            }
            for (var i = 0u; i < TM; i = i + 1u) {
                for (var j = 0u; j < TN; j = j + 1u) {
                    acc[i][j] = acc[i][j] + ar[i] * br[j];
                }
            }
        }
        workgroupBarrier();
        half = half ^ 1u;
    }
    store_tile(&acc, row0, col0, split, lid);
}
