//! Matmul shapes shared by the CPU and GPU benches, so their figures line up.

/// (name, m, k, n, a transposed, b transposed): the default MLP's forward and backward products
/// at batch 128.
pub const MLP_SHAPES: [(&str, usize, usize, usize, bool, bool); 6] = [
    ("fwd1_128x784x512_nt", 128, 784, 512, false, true),
    ("fwd2_128x512x512_nt", 128, 512, 512, false, true),
    ("fwd3_128x512x10_nt", 128, 512, 10, false, true),
    ("dw1_512x128x784_tn", 512, 128, 784, true, false),
    ("dx2_128x512x512_nn", 128, 512, 512, false, false),
    ("dw2_512x128x512_tn", 512, 128, 512, true, false),
];

/// A square product, `size` on every side, named `sq{size}`.
pub fn square(size: usize) -> (String, usize, usize, usize, bool, bool) {
    (format!("sq{size}"), size, size, size, false, false)
}

/// The MLP's shapes, then the given squares.
pub fn with_squares(sizes: &[usize]) -> Vec<(String, usize, usize, usize, bool, bool)> {
    let mlp = MLP_SHAPES.iter().map(|&(name, m, k, n, ta, tb)| (name.to_string(), m, k, n, ta, tb));
    mlp.chain(sizes.iter().map(|&size| square(size))).collect()
}
