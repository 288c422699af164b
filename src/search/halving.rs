//! Successive halving's arithmetic: the epochs of each rung, how many trials each rung keeps,
//! the epochs a search spends, and which trials a rung promotes. Every trial starts in rung 0;
//! the best `1/eta` of a rung go on to the next, `eta` times longer, continuing from their
//! checkpoint, until the last rung trains `--epochs`.

use std::cmp::Ordering;

/// The rungs of a successive-halving search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halving {
    /// Each rung keeps `1/eta` of the one before and trains `eta` times longer.
    pub eta: usize,
    /// The epochs of the first rung, at least.
    pub min_epochs: usize,
    /// The epochs of the last rung: the full training.
    pub max_epochs: usize,
}

/// Why halving's settings were refused, naming the flag to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HalvingError {
    #[error("--eta {0}: each rung keeps 1/eta of the one before, so eta must be at least 2")]
    EtaTooSmall(usize),
    #[error("--min-epochs 0: the first rung must train at least one epoch")]
    NoEpochs,
    #[error("--epochs {max} is smaller than one rung (--min-epochs {min}): give --epochs of at least {min}")]
    BudgetBelowRung { max: usize, min: usize },
    #[error(
        "--epochs {max} holds one rung only (--min-epochs {min} times --eta {eta} is more), so nothing would be promoted: raise --epochs to at least {need} or lower --min-epochs"
    )]
    SingleRung { max: usize, min: usize, eta: usize, need: usize },
    #[error("--trials {trials} with --eta {eta} promotes nobody: give at least {eta} trials")]
    TooFewTrials { trials: usize, eta: usize },
}

impl Halving {
    /// Checks the settings for `trials` trials.
    pub fn new(eta: usize, min_epochs: usize, max_epochs: usize, trials: usize) -> Result<Halving, HalvingError> {
        if eta < 2 {
            return Err(HalvingError::EtaTooSmall(eta));
        }
        if min_epochs == 0 {
            return Err(HalvingError::NoEpochs);
        }
        if max_epochs < min_epochs {
            return Err(HalvingError::BudgetBelowRung { max: max_epochs, min: min_epochs });
        }
        let halving = Halving { eta, min_epochs, max_epochs };
        if halving.rung_epochs().len() < 2 {
            let need = min_epochs.saturating_mul(eta);
            return Err(HalvingError::SingleRung { max: max_epochs, min: min_epochs, eta, need });
        }
        if trials < eta {
            return Err(HalvingError::TooFewTrials { trials, eta });
        }
        Ok(halving)
    }

    /// The epochs each rung trains to, rising: the last is `max_epochs`, each one before it is
    /// the next divided by `eta` (rounded down), down to the first not below `min_epochs`.
    pub fn rung_epochs(&self) -> Vec<usize> {
        let mut epochs = vec![self.max_epochs];
        let mut next = self.max_epochs / self.eta.max(2);
        while next >= self.min_epochs.max(1) {
            epochs.push(next);
            next /= self.eta.max(2);
        }
        epochs.reverse();
        epochs
    }

    /// How many of `trials` reach rung `rung`: `trials / eta^rung`, at least one.
    pub fn survivors(&self, trials: usize, rung: usize) -> usize {
        let divisor = (0..rung).fold(1usize, |d, _| d.saturating_mul(self.eta));
        (trials / divisor).max(1)
    }

    /// The epochs the whole search trains when every rung is full: a promoted trial continues
    /// from its checkpoint, so it trains only the epochs its new rung adds.
    pub fn planned_epochs(&self, trials: usize) -> usize {
        let mut before = 0;
        let mut total = 0;
        for (rung, &epochs) in self.rung_epochs().iter().enumerate() {
            total += self.survivors(trials, rung) * (epochs - before);
            before = epochs;
        }
        total
    }
}

/// The `keep` best of a rung's `(trial, metric)` results, in rank order: lowest metric first
/// (highest with `maximize`); a trial without a finite metric (failed, diverged) ranks last,
/// and ties go to the lower trial number, so that every process promotes the same trials.
pub fn promote(results: &[(usize, Option<f64>)], keep: usize, maximize: bool) -> Vec<usize> {
    let mut ranked: Vec<(usize, Option<f64>)> =
        results.iter().map(|&(trial, metric)| (trial, metric.filter(|m| m.is_finite()))).collect();
    ranked.sort_by(|(ta, a), (tb, b)| {
        let by_metric = match (a, b) {
            (Some(a), Some(b)) if maximize => b.total_cmp(a),
            (Some(a), Some(b)) => a.total_cmp(b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_metric.then(ta.cmp(tb))
    });
    ranked.into_iter().take(keep).map(|(trial, _)| trial).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_divide_the_full_training_by_eta() {
        let h = Halving::new(3, 1, 10, 45).unwrap();
        assert_eq!(h.rung_epochs(), [1, 3, 10]);
        assert_eq!([h.survivors(45, 0), h.survivors(45, 1), h.survivors(45, 2)], [45, 15, 5]);
        // 45 trials of 1 epoch, 15 going on 2 more, 5 going on 7 more.
        assert_eq!(h.planned_epochs(45), 45 + 15 * 2 + 5 * 7);
        assert_eq!(Halving::new(2, 1, 10, 8).unwrap().rung_epochs(), [1, 2, 5, 10]);
        assert_eq!(Halving::new(3, 2, 10, 9).unwrap().rung_epochs(), [3, 10]);
        assert_eq!(Halving::new(2, 1, 2, 2).unwrap().survivors(3, 5), 1, "at least one survives");
    }

    #[test]
    fn bad_settings_name_their_flag() {
        assert_eq!(Halving::new(1, 1, 9, 9), Err(HalvingError::EtaTooSmall(1)));
        assert_eq!(Halving::new(3, 0, 9, 9), Err(HalvingError::NoEpochs));
        assert_eq!(Halving::new(3, 4, 3, 9), Err(HalvingError::BudgetBelowRung { max: 3, min: 4 }));
        let single = Halving::new(3, 2, 5, 9).unwrap_err();
        assert_eq!(single, HalvingError::SingleRung { max: 5, min: 2, eta: 3, need: 6 });
        assert!(single.to_string().contains("--epochs 5"), "{single}");
        assert_eq!(Halving::new(3, 1, 9, 2), Err(HalvingError::TooFewTrials { trials: 2, eta: 3 }));
    }

    #[test]
    fn promotion_keeps_the_best_and_ranks_failures_last() {
        let results = [(0, Some(0.5)), (1, None), (2, Some(0.3)), (3, Some(f64::NAN)), (4, Some(0.3)), (5, Some(0.9))];
        assert_eq!(promote(&results, 3, false), [2, 4, 0], "lowest first, ties by trial");
        assert_eq!(promote(&results, 2, true), [5, 0]);
        assert_eq!(promote(&results, 6, false)[4..], [1, 3], "no metric ranks last");
        assert!(promote(&[], 2, false).is_empty());
    }
}
