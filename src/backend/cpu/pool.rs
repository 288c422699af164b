//! 2x2 max pooling with stride 2 over NCHW planes, and its backward: PyTorch's `MaxPool2d(2)`.

use rayon::prelude::*;

use crate::error::{Error, Result, element_count};

/// 2x2 max pooling with stride 2 of `planes` planes of `height x width` (odd edges dropped,
/// as PyTorch's `MaxPool2d(2)` does). The first largest value of a window (scanned row by row)
/// wins, a NaN counting as the largest.
pub fn max_pool2d(x: &[f32], planes: usize, height: usize, width: usize, out: &mut [f32]) -> Result<()> {
    let (oh, ow) = (height / 2, width / 2);
    check_pool_lengths(planes, height, width, [x.len(), out.len()])?;
    if out.is_empty() {
        return Ok(());
    }
    let planes_per_task = (super::CHUNK / (height * width)).max(1);
    out.par_chunks_mut(planes_per_task * oh * ow).zip(x.par_chunks(planes_per_task * height * width)).for_each(
        |(out, x)| {
            for (out, plane) in out.chunks_exact_mut(oh * ow).zip(x.chunks_exact(height * width)) {
                for (out, rows) in out.chunks_exact_mut(ow).zip(plane.chunks_exact(2 * width)) {
                    let (top, bottom) = rows.split_at(width);
                    for ((o, t), b) in out.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
                        *o = later_wins(later_wins(later_wins(t[0], t[1]), b[0]), b[1]);
                    }
                }
            }
        },
    );
    Ok(())
}

/// Checks the input and output lengths of a 2x2 pooling of `planes` planes of `height x width`.
fn check_pool_lengths(planes: usize, height: usize, width: usize, [input, output]: [usize; 2]) -> Result<()> {
    let expected = element_count("max_pool2d", &[planes, height, width])?;
    if input != expected {
        return Err(Error::ElementCount { len: input, shape: vec![planes, height, width] });
    }
    if output != planes * (height / 2) * (width / 2) {
        return Err(Error::ElementCount { len: output, shape: vec![planes, height / 2, width / 2] });
    }
    Ok(())
}

/// The backward of [`max_pool2d`]: each output's gradient goes to the input its window chose.
pub fn max_pool2d_backward(
    x: &[f32],
    dy: &[f32],
    planes: usize,
    height: usize,
    width: usize,
    dx: &mut [f32],
) -> Result<()> {
    let (oh, ow) = (height / 2, width / 2);
    check_pool_lengths(planes, height, width, [x.len(), dy.len()])?;
    if dx.len() != x.len() {
        return Err(Error::ElementCount { len: dx.len(), shape: vec![planes, height, width] });
    }
    if dy.is_empty() {
        dx.fill(0.0);
        return Ok(());
    }
    let planes_per_task = (super::CHUNK / (height * width)).max(1);
    let plane = height * width;
    dx.par_chunks_mut(planes_per_task * plane)
        .zip(x.par_chunks(planes_per_task * plane).zip(dy.par_chunks(planes_per_task * oh * ow)))
        .for_each(|(dx, (x, dy))| {
            let planes = dx.chunks_exact_mut(plane).zip(x.chunks_exact(plane)).zip(dy.chunks_exact(oh * ow));
            for ((dx, x), dy) in planes {
                let rows = dx.chunks_exact_mut(2 * width).zip(x.chunks_exact(2 * width)).zip(dy.chunks_exact(ow));
                for ((dx, x), dy) in rows {
                    let (dx_top, dx_bottom) = dx.split_at_mut(width);
                    let (top, bottom) = x.split_at(width);
                    pool_backward_rows(top, bottom, dy, dx_top, dx_bottom);
                }
                zero_outside_windows(dx, height, width);
            }
        });
    Ok(())
}

/// Zeros the odd last row and column of a plane: the inputs no 2x2 window covers, the only
/// ones `pool_backward_rows` does not write.
fn zero_outside_windows(plane: &mut [f32], height: usize, width: usize) {
    let covered = height / 2 * 2 * width;
    plane[covered..].fill(0.0);
    if width % 2 == 1 {
        plane[..covered].chunks_exact_mut(width).for_each(|row| row[width - 1] = 0.0);
    }
}

/// One row of windows of [`max_pool2d_backward`]. A function of its own so that its slices are
/// known not to overlap: the loop then vectorizes without run-time overlap checks, whose cost
/// kept it scalar for rows as short as a CNN's.
#[inline(never)]
fn pool_backward_rows(top: &[f32], bottom: &[f32], dy: &[f32], dx_top: &mut [f32], dx_bottom: &mut [f32]) {
    let dx_pairs = dx_top.chunks_exact_mut(2).zip(dx_bottom.chunks_exact_mut(2));
    let x_pairs = top.chunks_exact(2).zip(bottom.chunks_exact(2));
    for (((dt, db), (t, b)), &g) in dx_pairs.zip(x_pairs).zip(dy) {
        // Boolean arithmetic, not branches: which input wins is data, so branches would be
        // mispredicted half of the time; this way the loop vectorizes.
        let largest = later_wins(later_wins(later_wins(t[0], t[1]), b[0]), b[1]);
        let is_largest = |v: f32| (v == largest) | v.is_nan();
        let (e0, e1, e2) = (is_largest(t[0]), is_largest(t[1]), is_largest(b[0]));
        let chosen = [e0, e1 & !e0, e2 & !(e0 | e1), !(e0 | e1 | e2)];
        let to = |k: usize| f32::from_bits(g.to_bits() & mask(chosen[k]));
        (dt[0], dt[1], db[0], db[1]) = (to(0), to(1), to(2), to(3));
    }
}

/// All ones when `condition` holds, else zeros.
#[inline(always)]
fn mask(condition: bool) -> u32 {
    0u32.wrapping_sub(condition as u32)
}

/// The running maximum of a window scanned row by row: a later value wins only when larger, or
/// NaN (and a NaN is kept).
#[inline(always)]
fn later_wins(best: f32, value: f32) -> f32 {
    if value > best || value.is_nan() { value } else { best }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_takes_the_first_largest_and_routes_its_gradient() {
        // Two planes of 3x5: the odd last row and column are dropped.
        let x = [
            1., 3., 3., 0., 9., 2., 2., 1., 4., 9., 7., 7., 7., 7., 7., 0., 0., 0., 0., 0., 0., 0., 0., -1., 0., 5.,
            5., 5., 5., 5.,
        ];
        let mut out = [f32::NAN; 4];
        max_pool2d(&x, 2, 3, 5, &mut out).unwrap();
        assert_eq!(out, [3., 4., 0., 0.]);
        let mut dx = [f32::NAN; 30];
        max_pool2d_backward(&x, &[1., 2., 3., 4.], 2, 3, 5, &mut dx).unwrap();
        let mut expected = [0.0; 30];
        (expected[1], expected[8], expected[15], expected[17]) = (1., 2., 3., 4.);
        assert_eq!(dx, expected);
        let mut nan = [0.0; 1];
        max_pool2d(&[1., f32::NAN, 2., 0.], 1, 2, 2, &mut nan).unwrap();
        assert!(nan[0].is_nan());
    }
}
