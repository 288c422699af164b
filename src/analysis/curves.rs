//! Reading loss curves: when did validation loss turn upward, and when should training stop.
//!
//! Both questions are about the same signal (validation loss that stops improving while training
//! loss keeps falling), one asked after the fact for a recorded run, the other during training.

use super::Series;

/// A run whose validation loss rose for its last epochs while its training loss fell.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Overfitting {
    /// The epoch where validation loss was lowest before it started rising.
    pub best_epoch: i64,
    pub best_val_loss: f64,
    /// How many epochs in a row, up to the last, validation loss rose.
    pub rising_epochs: usize,
    pub last_epoch: i64,
    pub last_val_loss: f64,
}

impl Overfitting {
    /// One line for tables and reports.
    pub fn describe(&self) -> String {
        format!(
            "validation loss rose for the last {} epochs (from {:.4} at epoch {} to {:.4} at epoch {}) while training loss fell",
            self.rising_epochs, self.best_val_loss, self.best_epoch, self.last_val_loss, self.last_epoch
        )
    }

    /// A short flag: `overfit@3` (the epoch validation loss was lowest).
    pub fn flag(&self) -> String {
        format!("overfit@{}", self.best_epoch)
    }
}

/// Flags overfitting: validation loss rose in each of the last `k` epochs (or more) while
/// training loss fell over the same epochs. Both series are `(epoch, value)` in epoch order.
pub fn detect_overfitting(train_loss: &Series, val_loss: &Series, k: usize) -> Option<Overfitting> {
    let k = k.max(1);
    let val: Vec<(i64, f64)> = val_loss.iter().copied().filter(|(_, v)| v.is_finite()).collect();
    let rising = val.windows(2).rev().take_while(|w| w[1].1 > w[0].1).count();
    if rising < k {
        return None;
    }
    let (start, last) = (val[val.len() - 1 - rising], val[val.len() - 1]);
    let train_at = |epoch: i64| train_loss.iter().find(|(e, _)| *e == epoch).map(|(_, v)| *v);
    let (train_start, train_last) = (train_at(start.0)?, train_at(last.0)?);
    (train_last < train_start).then_some(Overfitting {
        best_epoch: start.0,
        best_val_loss: start.1,
        rising_epochs: rising,
        last_epoch: last.0,
        last_val_loss: last.1,
    })
}

/// The lowest finite point of a series (the earliest on ties).
pub fn lowest_point(series: &Series) -> Option<(i64, f64)> {
    series.iter().copied().filter(|(_, v)| v.is_finite()).fold(None, |best, p| match best {
        Some(b) if b.1 <= p.1 => Some(b),
        _ => Some(p),
    })
}

/// What [`EarlyStopping::observe`] decides after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopDecision {
    /// A new best validation loss: its state was kept.
    Improved,
    /// No improvement yet, patience left.
    Wait,
    /// `patience` epochs without improvement: stop now.
    Stop,
}

/// Stops training after `patience` epochs without a new lowest validation loss, keeping the
/// state (e.g. the weights) of the best epoch so it can be restored.
#[derive(Debug)]
pub struct EarlyStopping<S> {
    patience: usize,
    best: Option<(usize, f64)>,
    best_state: Option<S>,
    since_best: usize,
}

impl<S> EarlyStopping<S> {
    /// `patience` is at least 1.
    pub fn new(patience: usize) -> Self {
        EarlyStopping { patience: patience.max(1), best: None, best_state: None, since_best: 0 }
    }

    /// Records an epoch's validation loss; `state` is called (to snapshot the weights) only
    /// when the epoch is the best so far. A NaN loss never counts as an improvement.
    pub fn observe(&mut self, epoch: usize, val_loss: f64, state: impl FnOnce() -> S) -> StopDecision {
        let improved = !val_loss.is_nan() && self.best.is_none_or(|(_, best)| val_loss < best);
        if improved {
            self.best = Some((epoch, val_loss));
            self.best_state = Some(state());
            self.since_best = 0;
            return StopDecision::Improved;
        }
        self.since_best += 1;
        if self.since_best >= self.patience { StopDecision::Stop } else { StopDecision::Wait }
    }

    /// The epoch with the lowest validation loss so far.
    pub fn best_epoch(&self) -> Option<usize> {
        self.best.map(|(e, _)| e)
    }

    /// The state kept at the best epoch.
    pub fn into_best_state(self) -> Option<S> {
        self.best_state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Series {
        values.iter().enumerate().map(|(i, v)| (i as i64 + 1, *v)).collect()
    }

    #[test]
    fn flags_validation_loss_rising_while_training_loss_falls() {
        let train = series(&[1.0, 0.8, 0.6, 0.5, 0.4, 0.3]);
        let val = series(&[1.1, 0.9, 0.7, 0.72, 0.75, 0.8]);
        let o = detect_overfitting(&train, &val, 2).expect("rose for 3 epochs");
        assert_eq!((o.best_epoch, o.rising_epochs, o.last_epoch), (3, 3, 6));
        assert_eq!(o.best_val_loss, 0.7);
        assert!(o.describe().contains("from 0.7000 at epoch 3 to 0.8000 at epoch 6"), "{}", o.describe());
        assert_eq!(o.flag(), "overfit@3");
        assert!(detect_overfitting(&train, &val, 3).is_some());
        assert!(detect_overfitting(&train, &val, 4).is_none(), "only 3 rising epochs");
    }

    #[test]
    fn not_flagged_when_validation_recovers_or_training_loss_rises_too() {
        let train = series(&[1.0, 0.8, 0.6, 0.5]);
        assert!(detect_overfitting(&train, &series(&[1.0, 0.9, 0.95, 0.9]), 2).is_none());
        assert!(detect_overfitting(&train, &series(&[1.0, 0.9, 0.95]), 2).is_none(), "one rise is not two");
        let diverging = series(&[1.0, 0.8, 0.9, 1.2]);
        assert!(detect_overfitting(&diverging, &series(&[1.0, 0.9, 0.95, 1.3]), 2).is_none());
        assert!(detect_overfitting(&train, &Series::new(), 2).is_none());
        assert!(detect_overfitting(&Series::new(), &series(&[1.0, 1.1, 1.2]), 2).is_none());
    }

    #[test]
    fn lowest_point_is_the_earliest_minimum() {
        assert_eq!(lowest_point(&series(&[0.5, 0.3, 0.4, 0.3])), Some((2, 0.3)));
        assert_eq!(lowest_point(&series(&[f64::NAN, 0.9])), Some((2, 0.9)));
        assert_eq!(lowest_point(&Series::new()), None);
    }

    #[test]
    fn early_stopping_stops_after_patience_and_keeps_the_best_state() {
        // Validation loss: best at epoch 3, then 2 epochs without improvement.
        let losses = [0.9, 0.7, 0.6, 0.65, 0.61, 0.5];
        let mut stopper = EarlyStopping::new(2);
        let mut stopped = None;
        for (i, loss) in losses.iter().enumerate() {
            let epoch = i + 1;
            let weights = vec![epoch as f32; 3]; // stands for the model after this epoch
            if stopper.observe(epoch, *loss, || weights.clone()) == StopDecision::Stop {
                stopped = Some(epoch);
                break;
            }
        }
        assert_eq!(stopped, Some(5), "epochs 4 and 5 did not beat 0.6");
        assert_eq!(stopper.best_epoch(), Some(3));
        assert_eq!(stopper.into_best_state(), Some(vec![3.0; 3]));
    }

    #[test]
    fn early_stopping_decisions() {
        let mut s = EarlyStopping::new(1);
        assert_eq!(s.observe(1, 1.0, || ()), StopDecision::Improved);
        assert_eq!(s.observe(2, 0.5, || ()), StopDecision::Improved);
        assert_eq!(s.observe(3, 0.5, || ()), StopDecision::Stop, "equal is not better");
        let mut s = EarlyStopping::new(3);
        assert_eq!(s.observe(1, f64::NAN, || ()), StopDecision::Wait);
        assert_eq!(s.best_epoch(), None);
        assert_eq!(s.observe(2, 2.0, || ()), StopDecision::Improved);
        assert_eq!(s.observe(3, 2.5, || ()), StopDecision::Wait);
        assert_eq!(s.observe(4, 2.5, || ()), StopDecision::Wait);
        assert_eq!(s.observe(5, 2.5, || ()), StopDecision::Stop);
    }
}
