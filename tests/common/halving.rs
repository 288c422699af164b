//! The tiny successive-halving search the sweep tests share: six trials of an 8-unit MLP drawn
//! from a learning rate and a dropout, eta 3, so rung 0 trains all six 1 epoch and rung 1 the
//! best two to 3 epochs (10 epochs in all).

/// `engine sweep` flags of the search (without `sweep`), drawn from `seed`, on `train_limit`
/// training images.
pub fn tiny_halving(seed: &str, train_limit: &str) -> Vec<String> {
    #[rustfmt::skip]
    let args = [
        "--search", "halving", "--trials", "6", "--eta", "3", "--epochs", "3", "--search-seed", seed,
        "--space", "lr=loguniform(1e-3,0.3)", "--space", "dropout=uniform(0,0.4)", "--device", "cpu",
        "--train-limit", train_limit, "--hidden", "8", "--no-system-metrics",
    ];
    args.iter().map(|s| s.to_string()).collect()
}
