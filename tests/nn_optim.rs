//! The MLP and the optimizers: gradients reach every parameter, updates follow
//! `torch.optim`'s formulas, and training reproduces bit for bit whatever the thread count.

use engine::nn::{Description, ImageShape, Network, Weights};
use engine::optim::{Adam, Optimizer, Sgd};
use engine::rng::Rng;
use engine::{Device, Tensor};

fn batch(rows: usize, cols: usize, classes: usize, rng: &mut Rng) -> (Tensor, Tensor) {
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(0.0, 1.0)).collect();
    let y: Vec<f32> = (0..rows).map(|_| rng.below(classes) as f32).collect();
    (Tensor::from_vec(x, &[rows, cols], &Device::Cpu).unwrap(), Tensor::from_vec(y, &[rows], &Device::Cpu).unwrap())
}

/// A CPU MLP for 28x28 images and 10 classes.
fn mlp(hidden: &[usize], dropout: f32, rng: &mut Rng) -> Network {
    let description = Description::mlp(ImageShape::FASHION_MNIST, hidden, 10).unwrap();
    Network::new(description, dropout, rng, &Device::Cpu).unwrap()
}

#[test]
fn one_backward_pass_gives_every_parameter_a_nonzero_gradient() {
    let mut rng = Rng::new(0);
    let mlp = mlp(&[512, 512], 0.2, &mut rng);
    let (x, y) = batch(32, 784, 10, &mut rng);
    let grads = mlp.forward_train(&x, &mut rng).unwrap().cross_entropy(&y).unwrap().backward().unwrap();
    for (name, p) in mlp.named_parameters() {
        let g = grads.get(&p).unwrap_or_else(|| panic!("{name} has no gradient")).to_vec().unwrap();
        assert_eq!(g.len(), p.len());
        assert!(g.iter().any(|&v| v != 0.0), "{name}: all-zero gradient");
        assert!(g.iter().all(|v| v.is_finite()), "{name}: non-finite gradient");
    }
}

#[test]
fn linear_initialisation_follows_pytorch_bounds_and_layout() {
    let layer = Weights::init(&[512, 784], &mut Rng::new(1), &Device::Cpu).unwrap();
    assert_eq!(layer.weight.shape(), [512, 784], "PyTorch keeps weights as [out, in]");
    let bound = 1.0 / 784f32.sqrt();
    let w = layer.weight.to_vec().unwrap();
    assert!(w.iter().all(|v| v.abs() <= bound));
    // Uniform in ±bound: the largest magnitude comes close to the bound, the mean close to zero.
    assert!(w.iter().fold(0.0f32, |m, v| m.max(v.abs())) > 0.99 * bound);
    assert!((w.iter().sum::<f32>() / w.len() as f32).abs() < 0.01 * bound);
    assert!(layer.bias.to_vec().unwrap().iter().all(|v| v.abs() <= bound));
    let names: Vec<String> =
        mlp(&[512, 512], 0.0, &mut Rng::new(1)).named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]);
}

const GRADS: [[f32; 2]; 3] = [[0.5, 0.25], [-1.0, 0.5], [0.2, -0.3]];

/// Runs three steps with fixed gradients: `loss = sum(p * g)` has gradient `g`.
fn three_steps(make: impl Fn(Vec<Tensor>) -> Box<dyn Optimizer>) -> Vec<[f32; 2]> {
    let p = Tensor::variable(vec![1.0, -2.0], &[2], &Device::Cpu).unwrap();
    let mut opt = make(vec![p.clone()]);
    GRADS
        .iter()
        .map(|g| {
            let g = Tensor::from_vec(g.to_vec(), &[2], &Device::Cpu).unwrap();
            opt.step(&p.mul(&g).unwrap().sum().unwrap().backward().unwrap()).unwrap();
            let v = p.to_vec().unwrap();
            [v[0], v[1]]
        })
        .collect()
}

fn assert_close(got: &[[f32; 2]], expected: &[[f64; 2]]) {
    for (step, (g, e)) in got.iter().zip(expected).enumerate() {
        for i in 0..2 {
            assert!((g[i] as f64 - e[i]).abs() < 2e-6, "step {step} [{i}]: {} vs {}", g[i], e[i]);
        }
    }
}

// Expected values worked through PyTorch's update formulas by hand, in f64.
#[test]
fn sgd_momentum_weight_decay_matches_pytorch_formulas() {
    let got = three_steps(|p| Box::new(Sgd::new(p, 0.1, 0.9, 0.1)));
    assert_close(&got, &[[0.94, -2.005], [0.9766, -2.03945], [0.979774, -2.0200605]]);
}

#[test]
fn adam_with_bias_correction_matches_pytorch_formulas() {
    let got = three_steps(|p| Box::new(Adam::new(p, 0.01, 0.1)));
    assert_close(
        &got,
        &[
            [0.9900000001666667, -2.0099999980000005],
            [0.9924819887658624, -2.0184441687579735],
            [0.9926279837468459, -2.0163492513359342],
        ],
    );
}

#[test]
fn adamw_decouples_weight_decay() {
    let got = three_steps(|p| Box::new(Adam::adamw(p, 0.01, 0.1)));
    assert_close(
        &got,
        &[
            [0.9890000002, -2.0079999996],
            [0.9916720354238566, -2.0156438196144806],
            [0.9923405385380873, -2.017179192307451],
        ],
    );
}

fn loss_sequence(threads: usize) -> Vec<u32> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut rng = Rng::new(9);
        let mlp = mlp(&[300, 200], 0.1, &mut rng);
        let mut opt = Adam::new(mlp.parameters(), 1e-3, 0.0);
        (0..5)
            .map(|_| {
                let (x, y) = batch(150, 784, 10, &mut rng);
                let loss = mlp.forward_train(&x, &mut rng).unwrap().cross_entropy(&y).unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
                loss.to_scalar().unwrap().to_bits()
            })
            .collect()
    })
}

#[test]
fn same_seed_same_losses_with_one_and_two_threads() {
    let one = loss_sequence(1);
    assert_eq!(one, loss_sequence(2));
    assert_ne!(one[0], one[4], "training should move the loss");
}
