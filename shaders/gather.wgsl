// Gathers rows of a u8 dataset kept on the device (packed four to a u32 word, little-endian)
// by a list of sample indices, as f32 `byte * scale + shift`. Images use the normalisation;
// labels use features = 1, scale = 1, shift = 0. An index past the list or the dataset gives a
// NaN row instead of an out-of-bounds read.

struct Params {
    // Rows of the batch and bytes per sample.
    batch: u32,
    features: u32,
    // Samples in the dataset, u32 words that hold it, and entries of the index list.
    samples: u32,
    words: u32,
    indices: u32,
    // The batch's first entry in the index list.
    first: u32,
    scale: f32,
    shift: f32,
    nan_bits: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> data: array<u32>;
@group(0) @binding(2) var<storage, read> index: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn gather_u8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if p.features == 0u || i >= p.batch * p.features {
        return;
    }
    let row = i / p.features;
    let f = i % p.features;
    var v = nan_f32(p.nan_bits);
    let entry = p.first + row;
    if entry < p.indices {
        let sample = index[entry];
        if sample < p.samples {
            let byte = sample * p.features + f;
            let word = byte / 4u;
            if word < p.words {
                let value = (data[word] >> ((byte % 4u) * 8u)) & 255u;
                v = f32(value) * p.scale + p.shift;
            }
        }
    }
    out[i] = v;
}
