//! The schedule of a search: which trials each rung trains and for how many epochs. A grid or a
//! random search is one rung of every trial at full length; successive halving adds a rung at
//! each promotion. It is the part of a sweep plan that changes as the search goes, written back
//! atomically after each promotion, so that a killed sweep resumes at the rung it reached and a
//! scheduler's array job for rung `r` runs exactly the trials rung `r` holds.

use super::halving::{Halving, promote};

/// How a halving search ranks and promotes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HalvingRule {
    pub eta: usize,
    /// The metric trials are ranked by at the end of each rung, e.g. `val_loss`.
    pub metric: String,
    /// Higher is better (accuracy) rather than lower (loss).
    pub maximize: bool,
}

/// The rungs of a search decided so far.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    /// `None` for a grid or random search (one rung).
    pub halving: Option<HalvingRule>,
    /// The epochs each rung trains to, rising.
    pub rung_epochs: Vec<usize>,
    /// The trials of each rung decided so far, by their index in the plan; the last is the
    /// rung being trained.
    pub rungs: Vec<Vec<usize>>,
}

/// Why a schedule cannot go on, or (hand-edited) makes no sense. `field` is where in the
/// schedule the problem is, e.g. `rungs[1][3]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    #[error("rung {rung} is not complete: trials {missing:?} have no {metric} yet")]
    Incomplete { rung: usize, missing: Vec<usize>, metric: String },
    #[error("the last rung is done: there is nothing to promote to")]
    Finished,
}

fn invalid(field: impl Into<String>, why: impl Into<String>) -> ScheduleError {
    ScheduleError::Invalid { field: field.into(), why: why.into() }
}

impl Schedule {
    /// A grid or random search: every one of `trials` trained `epochs` epochs.
    pub fn single(trials: usize, epochs: usize) -> Schedule {
        Schedule { halving: None, rung_epochs: vec![epochs], rungs: vec![(0..trials).collect()] }
    }

    /// Successive halving over `trials` trials, all in rung 0.
    pub fn halving(trials: usize, halving: &Halving, metric: &str, maximize: bool) -> Schedule {
        Schedule {
            halving: Some(HalvingRule { eta: halving.eta, metric: metric.to_string(), maximize }),
            rung_epochs: halving.rung_epochs(),
            rungs: vec![(0..trials).collect()],
        }
    }

    /// The rung being trained (0-based).
    pub fn rung(&self) -> usize {
        self.rungs.len().saturating_sub(1)
    }

    /// The trials of the rung being trained.
    pub fn current_trials(&self) -> &[usize] {
        self.rungs.last().map_or(&[], Vec::as_slice)
    }

    /// The epochs the rung being trained trains to.
    pub fn current_epochs(&self) -> usize {
        self.epochs_of(self.rung())
    }

    /// The epochs rung `rung` trains to.
    pub fn epochs_of(&self, rung: usize) -> usize {
        self.rung_epochs.get(rung).copied().unwrap_or(0)
    }

    /// Whether the rung being trained is the last.
    pub fn is_last_rung(&self) -> bool {
        self.rungs.len() >= self.rung_epochs.len()
    }

    /// The highest rung `trial` was placed in.
    pub fn rung_reached(&self, trial: usize) -> Option<usize> {
        self.rungs.iter().rposition(|rung| rung.contains(&trial))
    }

    /// Whether `trial` stopped before the last rung: a finished search pruned it.
    pub fn is_pruned(&self, trial: usize) -> bool {
        self.rung_reached(trial).is_some_and(|r| r + 1 < self.rung_epochs.len())
    }

    /// The epochs trained by the rungs decided so far (when each completes): a promoted trial
    /// trains only what its rung adds to the one before.
    pub fn epochs_planned(&self) -> usize {
        let mut before = 0;
        let mut total = 0;
        for (rung, trials) in self.rungs.iter().enumerate() {
            let epochs = self.epochs_of(rung);
            total += trials.len() * epochs.saturating_sub(before);
            before = epochs;
        }
        total
    }

    /// Decides the next rung from the current rung's results, `(trial, metric)` with `None` for
    /// a trial that failed: the best `1/eta` go on. Every trial of the rung must have a result.
    /// Returns the trials pruned.
    pub fn promote(&mut self, results: &[(usize, Option<f64>)]) -> Result<Vec<usize>, ScheduleError> {
        let Some(rule) = self.halving.clone() else { return Err(ScheduleError::Finished) };
        if self.is_last_rung() {
            return Err(ScheduleError::Finished);
        }
        let current = self.current_trials().to_vec();
        let missing: Vec<usize> = current.iter().copied().filter(|t| !results.iter().any(|(r, _)| r == t)).collect();
        if !missing.is_empty() {
            return Err(ScheduleError::Incomplete { rung: self.rung(), missing, metric: rule.metric });
        }
        let ours: Vec<(usize, Option<f64>)> = results.iter().copied().filter(|(t, _)| current.contains(t)).collect();
        let keep = (current.len() / rule.eta).max(1);
        let mut next = promote(&ours, keep, rule.maximize);
        next.sort_unstable();
        let pruned = current.iter().copied().filter(|t| !next.contains(t)).collect();
        self.rungs.push(next);
        Ok(pruned)
    }

    /// Refuses a schedule no sweep would write (one edited by hand into nonsense) for a plan of
    /// `trials` trials, naming the field at fault.
    pub fn check(&self, trials: usize) -> Result<(), ScheduleError> {
        if self.rung_epochs.is_empty() {
            return Err(invalid("rung_epochs", "lists no rungs"));
        }
        if let Some(at) = self.rung_epochs.iter().position(|&e| e == 0) {
            return Err(invalid(format!("rung_epochs[{at}]"), "a rung trains at least one epoch"));
        }
        if let Some(at) = self.rung_epochs.windows(2).position(|w| w[0] >= w[1]) {
            return Err(invalid(
                format!("rung_epochs[{}]", at + 1),
                "each rung trains more epochs than the one before",
            ));
        }
        match &self.halving {
            None if self.rung_epochs.len() > 1 => {
                return Err(invalid("rung_epochs", "several rungs need \"halving\" settings"));
            }
            Some(rule) if rule.eta < 2 => return Err(invalid("halving.eta", "must be at least 2")),
            Some(rule) if rule.metric.trim().is_empty() => return Err(invalid("halving.metric", "is empty")),
            _ => {}
        }
        if self.rungs.is_empty() || self.rungs.len() > self.rung_epochs.len() {
            let why = format!("must list 1 to {} rungs, one per rung_epochs entry", self.rung_epochs.len());
            return Err(invalid("rungs", why));
        }
        if self.rungs[0].len() != trials || self.rungs[0].iter().enumerate().any(|(i, &t)| i != t) {
            return Err(invalid(
                "rungs[0]",
                format!("must list every trial, 0 to {}, in order", trials.saturating_sub(1)),
            ));
        }
        for (r, pair) in self.rungs.windows(2).enumerate() {
            let (before, rung) = (&pair[0], &pair[1]);
            if rung.is_empty() {
                return Err(invalid(format!("rungs[{}]", r + 1), "lists no trials"));
            }
            if let Some(at) = rung.windows(2).position(|w| w[0] >= w[1]) {
                return Err(invalid(format!("rungs[{}][{}]", r + 1, at + 1), "trials must rise, each listed once"));
            }
            if let Some(at) = rung.iter().position(|t| !before.contains(t)) {
                let why = format!("trial {} was not in rung {r}, so it cannot have been promoted", rung[at]);
                return Err(invalid(format!("rungs[{}][{at}]", r + 1), why));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn halving9() -> Schedule {
        Schedule::halving(9, &Halving::new(3, 1, 9, 9).unwrap(), "val_loss", false)
    }

    #[test]
    fn promotion_walks_the_rungs_to_the_last() {
        let mut s = halving9();
        assert_eq!((s.rung(), s.current_epochs(), s.current_trials().len()), (0, 1, 9));
        let results: Vec<(usize, Option<f64>)> = (0..9).map(|t| (t, Some(1.0 - t as f64 / 10.0))).collect();
        assert_eq!(s.promote(&results).unwrap(), [0, 1, 2, 3, 4, 5]);
        assert_eq!((s.rung(), s.current_epochs(), s.current_trials()), (1, 3, &[6, 7, 8][..]));
        let incomplete = s.promote(&results[6..8]).unwrap_err();
        assert_eq!(incomplete, ScheduleError::Incomplete { rung: 1, missing: vec![8], metric: "val_loss".into() });
        assert_eq!(s.promote(&[(6, Some(0.2)), (7, None), (8, Some(0.3))]).unwrap(), [7, 8]);
        assert!(s.is_last_rung());
        assert_eq!(s.current_trials(), [6]);
        assert_eq!(s.promote(&[(6, Some(0.1))]), Err(ScheduleError::Finished));
        assert_eq!(s.epochs_planned(), 9 + 3 * 2 + 6);
        assert_eq!((s.rung_reached(6), s.is_pruned(6), s.is_pruned(7), s.is_pruned(0)), (Some(2), false, true, true));
        s.check(9).unwrap();
        assert_eq!(Schedule::single(4, 10).promote(&[]), Err(ScheduleError::Finished));
    }

    #[test]
    fn a_schedule_edited_into_nonsense_names_the_field() {
        let field = |s: &Schedule| match s.check(9) {
            Err(ScheduleError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let mut s = halving9();
        s.rungs.push(vec![2, 11]);
        assert_eq!(field(&s), "rungs[1][1]");
        s.rungs[1] = vec![3, 3];
        assert_eq!(field(&s), "rungs[1][1]");
        s.rungs[1] = vec![];
        assert_eq!(field(&s), "rungs[1]");
        let mut s = halving9();
        s.rung_epochs = vec![1, 3, 3];
        assert_eq!(field(&s), "rung_epochs[2]");
        let mut s = halving9();
        s.rungs[0].pop();
        assert_eq!(field(&s), "rungs[0]");
        let mut s = halving9();
        s.rungs = vec![vec![]; 4];
        assert_eq!(field(&s), "rungs");
        let mut s = halving9();
        s.halving.as_mut().unwrap().eta = 1;
        assert_eq!(field(&s), "halving.eta");
        let mut s = Schedule::single(9, 5);
        s.rung_epochs.push(6);
        assert_eq!(field(&s), "rung_epochs");
    }
}
