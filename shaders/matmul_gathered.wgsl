// A linear layer that gathers its own input, instantiated by `backend::gpu::pipeline` with the
// tiled matmul: C = x · op(B) (+ bias) (relu) where x [m, k] is a batch of a u8 dataset kept
// on the device (packed four to a u32 word), its rows the samples at entries first.. of an
// index list, each byte `byte * scale[c] + shift[c]` with c its channel, as in gather.wgsl.
// The threads of the first column of tiles also store x, which the weight gradient reads, and
// the rows' labels as f32. An index past the list or the dataset gives a NaN row and label.

// Mirrored field by field by MatmulGatheredParams in src/backend/gpu/params.rs; the first
// twelve fields are matmul.wgsl's.
struct Params {
    m: u32,
    n: u32,
    k: u32,
    // bit 0: add bias[col]; bit 1: relu; bit 3: B transposed.
    flags: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    tiles_n: u32,
    tiles_total: u32,
    // One part: this product is never split.
    parts: u32,
    k_part: u32,
    // Samples in the dataset, u32 words that hold the samples and the labels, entries of the
    // index list, the batch's first entry there.
    samples: u32,
    words: u32,
    label_words: u32,
    indices: u32,
    first: u32,
    nan_bits: u32,
    // Bytes per channel plane of a sample (at least 1): byte f is in channel f / plane.
    plane: u32,
    _pad2: u32,
    // Per channel, up to four.
    scale: vec4<f32>,
    shift: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> data: array<u32>;
@group(0) @binding(2) var<storage, read> label_data: array<u32>;
@group(0) @binding(3) var<storage, read> index: array<u32>;
@group(0) @binding(4) var<storage, read> b: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> c: array<f32>;
@group(0) @binding(7) var<storage, read_write> x: array<f32>;
@group(0) @binding(8) var<storage, read_write> labels: array<f32>;

// The dataset's sample at row `row` of the batch, or p.samples (invalid).
fn sample_of(row: u32) -> u32 {
    let entry = p.first + row;
    if entry < p.indices && index[entry] < p.samples {
        return index[entry];
    }
    return p.samples;
}

// Element (row, f) of x, f < p.k, row < p.m.
fn load_a(row: u32, f: u32) -> f32 {
    let sample = sample_of(row);
    let byte = sample * p.k + f;
    if sample < p.samples && byte / 4u < p.words {
        let ch = min(f / p.plane, 3u);
        return f32(byte_of(data[byte / 4u], byte)) * p.scale[ch] + p.shift[ch];
    }
    return nan_f32(p.nan_bits);
}

// The label of row `row` of the batch as f32, NaN for an invalid sample.
fn label_of(row: u32) -> f32 {
    let sample = sample_of(row);
    if sample < p.samples && sample / 4u < p.label_words {
        return f32(byte_of(label_data[sample / 4u], sample));
    }
    return nan_f32(p.nan_bits);
}

fn epilogue(v: f32, row: u32, col: u32) -> f32 {
    var r = v;
    if (p.flags & 1u) != 0u {
        r = r + bias[col];
    }
    if (p.flags & 2u) != 0u {
        r = max(r, 0.0);
    }
    return r;
}
