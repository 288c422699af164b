// 2x2 max pooling with stride 2 over planes of height x width, the odd last row and column
// dropped, and its backward, as `cpu::conv::max_pool2d` computes them: the first largest value
// of a window (scanned row by row) wins, a NaN counting as the largest.

// Mirrored field by field by PoolParams in src/backend/gpu/params.rs (a test compares them).
struct Params {
    planes: u32,
    height: u32,
    width: u32,
    out_height: u32,
    out_width: u32,
    // Threads with work: the outputs (forward) or the inputs (backward).
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// max_pool2d: the pooled planes. max_pool2d_backward: the input gradient.
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
// max_pool2d_backward only: the gradient of the pooled planes.
@group(0) @binding(3) var<storage, read> dy: array<f32>;

// By the bits: compilers may fold `v != v` away.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// The winner of the window whose top-left input is x[top]: its position in the window (0..4,
// row by row) and its value.
struct Winner {
    position: u32,
    value: f32,
}

fn window_max(top: u32) -> Winner {
    var best = Winner(0u, x[top]);
    best = challenge(best, 1u, x[top + 1u]);
    best = challenge(best, 2u, x[top + p.width]);
    return challenge(best, 3u, x[top + p.width + 1u]);
}

// A later value wins only when it is larger, or NaN, than a best that is not NaN.
fn challenge(best: Winner, position: u32, v: f32) -> Winner {
    if !is_nan(best.value) && (is_nan(v) || v > best.value) {
        return Winner(position, v);
    }
    return best;
}

// One thread per output.
@compute @workgroup_size(256)
fn max_pool2d(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= p.n {
        return;
    }
    let outputs = p.out_height * p.out_width;
    let plane = i / outputs;
    let o = i % outputs;
    let top = plane * p.height * p.width + 2u * (o / p.out_width) * p.width + 2u * (o % p.out_width);
    out[i] = window_max(top).value;
}

// One thread per input, a gather without atomics: an input takes its window's gradient when it
// is the window's winner, else 0 (as does every input of the dropped odd row and column).
@compute @workgroup_size(256)
fn max_pool2d_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= p.n {
        return;
    }
    let pixels = p.height * p.width;
    let plane = i / pixels;
    let y = (i % pixels) / p.width;
    let column = i % p.width;
    let oy = y / 2u;
    let ox = column / 2u;
    var g = 0.0;
    if oy < p.out_height && ox < p.out_width {
        let top = plane * pixels + 2u * oy * p.width + 2u * ox;
        if window_max(top).position == (y % 2u) * 2u + column % 2u {
            g = dy[(plane * p.out_height + oy) * p.out_width + ox];
        }
    }
    out[i] = g;
}
