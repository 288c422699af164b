// Gathers a batch of a u8 dataset kept on the device (packed four to a u32 word, little-endian)
// by a list of sample indices: each sample's bytes as f32 `byte * scale[c] + shift[c]` with c
// the byte's channel (an image with its per-channel normalisation; CHW planes), and in the same
// dispatch its label byte as f32. An index past the list or the dataset gives a NaN row and
// label instead of an out-of-bounds read.

// Mirrored field by field by GatherParams in src/backend/gpu/params.rs (a test compares them).
struct Params {
    // Rows of the batch and bytes per sample.
    batch: u32,
    features: u32,
    // Samples in the dataset, u32 words that hold the samples and the labels, and entries of
    // the index list.
    samples: u32,
    words: u32,
    label_words: u32,
    indices: u32,
    // The batch's first entry in the index list.
    first: u32,
    nan_bits: u32,
    // Bytes per channel plane of a sample (at least 1): byte f is in channel f / plane.
    plane: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    // Per channel, up to four.
    scale: vec4<f32>,
    shift: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> data: array<u32>;
@group(0) @binding(2) var<storage, read> label_data: array<u32>;
@group(0) @binding(3) var<storage, read> index: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_labels: array<f32>;

// One thread per byte of the batch (per row when samples have no bytes); the first byte's
// thread also writes the row's label.
@compute @workgroup_size(256)
fn gather_batch(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let width = max(p.features, 1u);
    let i = group_index(wid, nwg) * WG + lid;
    if i >= p.batch * width {
        return;
    }
    let row = i / width;
    let f = i % width;
    var sample = p.samples;
    let entry = p.first + row;
    if entry < p.indices {
        sample = index[entry];
    }
    let valid = sample < p.samples;
    if f < p.features {
        var v = nan_f32(p.nan_bits);
        let byte = sample * p.features + f;
        if valid && byte / 4u < p.words {
            let c = min(f / p.plane, 3u);
            v = f32(byte_of(data[byte / 4u], byte)) * p.scale[c] + p.shift[c];
        }
        out[i] = v;
    }
    if f == 0u {
        var label = nan_f32(p.nan_bits);
        if valid && sample / 4u < p.label_words {
            label = f32(byte_of(label_data[sample / 4u], sample));
        }
        out_labels[row] = label;
    }
}
