// C = op(A) · op(B) (+ bias) (relu) (masked), C row-major [m, n]. Element (i, q) of op(A) is at
// a[i * a_rs + q * a_cs], element (q, j) of op(B) at b[q * b_rs + j * b_cs], so the four
// transpose combinations share one kernel.

// Mirrored field by field by MatmulParams in src/backend/gpu/params.rs (a test compares them).
struct Params {
    m: u32,
    n: u32,
    k: u32,
    // bit 0: add bias[col]; bit 1: relu; bit 2: A transposed; bit 3: B transposed;
    // bit 4: zero where mask[row, col] is not positive (the backward of the relu that made mask).
    flags: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    // Output tiles per row of tiles, and in all.
    tiles_n: u32,
    tiles_total: u32,
    // A split product runs `parts` workgroups per tile, part s reducing k over
    // [s * k_part, (s + 1) * k_part), and stores its partial products unfinished (see
    // matmul_split_sum); one part (k_part = k) is the whole product with its epilogue.
    parts: u32,
    k_part: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// Bound to A when there is no bias or mask; read only when flags bit 0 (bias) or 4 (mask) is set.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> mask: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;
// The partial products of a split product, [parts, m, n], when it has more than one part.
// The row sums of op(A), [m]: bound by the `_row_sums` kernels only.
@group(0) @binding(6) var<storage, read_write> row_sums: array<f32>;
// A and B again, read four elements at a time: bound by the `_vec4` kernel, which the launcher
// picks only where each operand's contiguous dimension is a multiple of 4 (so every vec4 read
// is aligned and wholly inside its operand or wholly outside).
@group(0) @binding(7) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> b4: array<vec4<f32>>;

// Element (row, q) of op(A).
fn load_a(row: u32, q: u32) -> f32 {
    return a[row * p.a_rs + q * p.a_cs];
}

fn epilogue(v: f32, row: u32, col: u32) -> f32 {
    var r = v;
    if (p.flags & 1u) != 0u {
        r = r + bias[col];
    }
    if (p.flags & 2u) != 0u {
        r = max(r, 0.0);
    }
    if (p.flags & 16u) != 0u && !(mask[row * p.n + col] > 0.0) {
        r = 0.0;
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
    c[row * p.n + col] = epilogue(acc, row, col);
}

// The second pass of a split product: each output sums the parts' partial products, which the
// first pass stored in `a` as [parts, m, n], in part order (so the result never depends on
// scheduling), then applies the epilogue.
@compute @workgroup_size(256)
fn matmul_split_sum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    let outputs = p.m * p.n;
    if i >= outputs {
        return;
    }
    var acc = 0.0;
    for (var s = 0u; s < p.parts; s = s + 1u) {
        acc = acc + a[s * outputs + i];
    }
    c[i] = epilogue(acc, i / p.n, i % p.n);
}
