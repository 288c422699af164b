use engine::backend::cpu::matmul::{MatRef, gemm};
use std::time::Instant;
fn main() {
    for &(m, k, n) in &[(1024usize, 1024usize, 1024usize), (128, 784, 512), (126, 256, 16), (6, 256, 16)] {
        let a = vec![1.0f32; m * k];
        let b = vec![0.5f32; k * n];
        let mut c = vec![0.0; m * n];
        let (ar, br) = (MatRef::new(&a, m, k, false), MatRef::new(&b, k, n, false));
        let reps = (2e9 / (2.0 * (m * k * n) as f64)).max(1.0) as usize;
        for _ in 0..3 {
            gemm(ar, br, &mut c, false);
        }
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                gemm(ar, br, &mut c, false);
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        let mut best2 = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            }
            best2 = best2.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        let f = 2.0 * (m * k * n) as f64;
        println!("{m}x{k}x{n}: ours {:.1} GF/s  mm {:.1} GF/s", f / best / 1e9, f / best2 / 1e9);
    }
}
