//! Where a run stands in a successive-halving search, read from the runs alone: each rung's
//! trials, the epochs they spent and the trials it pruned, and for a trial the rung it reached.
//! A search's runs are its children (`parent_run_id`), each logging the rung it trained
//! ([`crate::search::RUNG_METRIC`]); the parent's `search_rung_epochs` param lists the rungs. A
//! trial with no run in the next rung was pruned once that rung has runs, else it waits for the
//! promotion.

use super::RunSummary;

/// One rung of a search, as its runs logged it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RungRecord {
    pub rung: usize,
    /// The epochs a trial of the rung trains to, when known.
    pub epochs: Option<usize>,
    /// The trials (run names) with a run in the rung.
    pub trials: Vec<String>,
    /// The epochs the rung's runs trained (a promoted trial trains only what its rung adds).
    pub epochs_spent: usize,
    /// The trials the next rung left out (empty while the next rung has no run).
    pub pruned: Vec<String>,
}

/// More rungs than any search has (each keeps at most half the one before), so a run's made-up
/// rung number cannot make the description endless.
const MAX_RUNGS: usize = 64;

/// A trial's place in its search.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TrialPlace {
    pub name: String,
    /// The rung the analysed run trained.
    pub run_rung: usize,
    /// The furthest rung of the trial.
    pub reached: usize,
    pub pruned: bool,
}

/// A successive-halving search seen from one of its runs: the parent, or a trial's.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SearchRungs {
    pub search_run_id: String,
    /// The rungs the search plans, from its parent (`None` when the parent is not found).
    pub planned_rungs: Option<usize>,
    pub rungs: Vec<RungRecord>,
    /// Set when the analysed run is a trial's.
    pub trial: Option<TrialPlace>,
}

/// The search `run` belongs to (as its parent or a trial's run), from the runs of its
/// experiment; `None` for a run of no halving search.
pub fn search_rungs(run: &RunSummary, experiment: &[RunSummary]) -> Option<SearchRungs> {
    let rung_of = |r: &RunSummary| {
        let rung = r.metric(crate::search::RUNG_METRIC)?;
        (rung.fract() == 0.0 && (0.0..MAX_RUNGS as f64).contains(&rung)).then_some(rung as usize)
    };
    let is_parent = run.param("search_strategy") == Some("halving");
    let search_run_id =
        if is_parent { run.run_id.clone() } else { run.parent_run_id.clone().filter(|_| rung_of(run).is_some())? };
    let parent = experiment.iter().chain([run]).find(|r| r.run_id == search_run_id);
    let mut runs: Vec<(&RunSummary, usize)> = experiment
        .iter()
        .chain([run])
        .filter(|r| r.parent_run_id.as_deref() == Some(search_run_id.as_str()))
        .filter_map(|r| Some((r, rung_of(r)?)))
        .collect();
    runs.sort_by(|a, b| a.0.run_id.cmp(&b.0.run_id));
    runs.dedup_by(|a, b| a.0.run_id == b.0.run_id);
    let planned: Vec<usize> = parent
        .and_then(|p| p.param("search_rung_epochs"))
        .map(|list| list.split(',').take(MAX_RUNGS).filter_map(|e| e.trim().parse().ok()).collect())
        .unwrap_or_default();
    let reached = runs.iter().map(|(_, rung)| rung + 1).max().unwrap_or(0);
    let rungs: Vec<RungRecord> =
        (0..planned.len().max(reached)).map(|r| rung_record(&runs, r, planned.get(r))).collect();
    let trial = (!is_parent).then(|| trial_place(run, &runs, &rungs)).flatten();
    let planned_rungs = (!planned.is_empty()).then_some(planned.len());
    Some(SearchRungs { search_run_id, planned_rungs, rungs, trial })
}

/// Rung `rung` from the search's `(run, rung)` pairs.
fn rung_record(runs: &[(&RunSummary, usize)], rung: usize, planned_epochs: Option<&usize>) -> RungRecord {
    let names_at = |r: usize| {
        let mut names: Vec<String> =
            runs.iter().filter(|(_, at)| *at == r).map(|(run, _)| run.run_name.clone()).collect();
        names.sort();
        names.dedup();
        names
    };
    let trials = names_at(rung);
    let next = names_at(rung + 1);
    let pruned =
        if next.is_empty() { Vec::new() } else { trials.iter().filter(|t| !next.contains(t)).cloned().collect() };
    let at_rung = runs.iter().filter(|(_, at)| *at == rung).map(|(run, _)| run);
    let epochs_spent = at_rung.clone().map(|run| run.train_loss.len()).sum();
    let logged_epochs = at_rung.filter_map(|run| run.param("epochs")?.parse().ok()).max();
    RungRecord { rung, epochs: planned_epochs.copied().or(logged_epochs), trials, epochs_spent, pruned }
}

fn trial_place(run: &RunSummary, runs: &[(&RunSummary, usize)], rungs: &[RungRecord]) -> Option<TrialPlace> {
    let run_rung = runs.iter().find(|(r, _)| r.run_id == run.run_id)?.1;
    let reached = runs.iter().filter(|(r, _)| r.run_name == run.run_name).map(|(_, at)| *at).max()?;
    let pruned = rungs.get(reached).is_some_and(|r| r.pruned.contains(&run.run_name));
    Some(TrialPlace { name: run.run_name.clone(), run_rung, reached, pruned })
}

impl SearchRungs {
    /// One line a person reads: the trial's place, then each rung.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &self.trial {
            let last = self.planned_rungs.map(|n| n.saturating_sub(1));
            let outcome = match (t.pruned, last) {
                (true, _) => " and was pruned there",
                (false, Some(last)) if t.reached == last => ", the last",
                (false, Some(_)) => " and waits for its promotion",
                (false, None) => " (the search's parent run, which lists its rungs, is not found)",
            };
            parts.push(format!("trial {} (this run: rung {}) reached rung {}{outcome}", t.name, t.run_rung, t.reached));
        }
        for r in &self.rungs {
            let epochs = r.epochs.map_or_else(|| "? epochs".to_string(), |e| count(e, "epoch"));
            let pruned = match r.pruned.len() {
                0 => String::new(),
                n => format!(", {n} pruned ({})", r.pruned.join("; ")),
            };
            let (trials, spent) = (count(r.trials.len(), "trial"), count(r.epochs_spent, "epoch"));
            parts.push(format!("rung {} ({epochs}): {trials}, {spent} spent{pruned}", r.rung));
        }
        let spent: usize = self.rungs.iter().map(|r| r.epochs_spent).sum();
        let id = super::short_id(&self.search_run_id);
        format!("Successive halving (search {id}): {}; {} in all.", parts.join("; "), count(spent, "epoch"))
    }
}

/// `1 epoch`, `3 epochs`.
fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trial's run at `rung`, trained `epochs` epochs of which it logged `logged`.
    fn trial(id: &str, name: &str, rung: usize, epochs: usize, logged: usize) -> RunSummary {
        let mut r = RunSummary {
            run_id: id.into(),
            run_name: name.into(),
            parent_run_id: Some("p".into()),
            ..Default::default()
        };
        r.metrics.insert("rung".into(), rung as f64);
        r.params.insert("epochs".into(), epochs.to_string());
        r.train_loss = (1..=logged as i64).map(|e| (e, 1.0)).collect();
        r
    }

    fn search() -> Vec<RunSummary> {
        let mut parent = RunSummary { run_id: "p".into(), run_name: "search".into(), ..Default::default() };
        parent.params.insert("search_strategy".into(), "halving".into());
        parent.params.insert("search_rung_epochs".into(), "1,3,9".into());
        vec![
            parent,
            trial("a0", "a", 0, 1, 1),
            trial("b0", "b", 0, 1, 1),
            trial("c0", "c", 0, 1, 1),
            trial("a1", "a", 1, 3, 2),
            trial("other", "x", 0, 1, 1),
        ]
        .into_iter()
        .map(|mut r| {
            if r.run_id == "other" {
                r.parent_run_id = Some("q".into());
            }
            r
        })
        .collect()
    }

    #[test]
    fn a_parent_lists_each_rung_with_its_trials_epochs_and_pruned() {
        let runs = search();
        let s = search_rungs(&runs[0], &runs).unwrap();
        assert_eq!((s.search_run_id.as_str(), s.planned_rungs, s.trial.clone()), ("p", Some(3), None));
        let rung =
            |r: usize| (s.rungs[r].trials.len(), s.rungs[r].epochs, s.rungs[r].epochs_spent, s.rungs[r].pruned.clone());
        assert_eq!(rung(0), (3, Some(1), 3, vec!["b".to_string(), "c".to_string()]));
        assert_eq!(rung(1), (1, Some(3), 2, vec![]), "rung 2 has no run yet: nobody pruned");
        assert_eq!(rung(2), (0, Some(9), 0, vec![]));
        assert_eq!(
            s.describe(),
            "Successive halving (search p): rung 0 (1 epoch): 3 trials, 3 epochs spent, 2 pruned (b; c); \
             rung 1 (3 epochs): 1 trial, 2 epochs spent; rung 2 (9 epochs): 0 trials, 0 epochs spent; 5 epochs in all."
        );
    }

    #[test]
    fn a_trial_says_the_rung_it_reached_and_whether_it_was_pruned() {
        let runs = search();
        let place =
            |id: &str| search_rungs(runs.iter().find(|r| r.run_id == id).unwrap(), &runs).unwrap().trial.unwrap();
        let b = place("b0");
        assert_eq!((b.run_rung, b.reached, b.pruned), (0, 0, true));
        let a = place("a0");
        assert_eq!((a.run_rung, a.reached, a.pruned), (0, 1, false), "rung 0's run of a trial that went on");
        let line = search_rungs(&runs[2], &runs).unwrap().describe();
        assert!(
            line.starts_with(
                "Successive halving (search p): trial b (this run: rung 0) reached rung 0 and was pruned there; rung 0"
            ),
            "{line}"
        );
        let line = search_rungs(&runs[4], &runs).unwrap().describe();
        assert!(line.contains("trial a (this run: rung 1) reached rung 1 and waits for its promotion;"), "{line}");
        // Without its parent, the rungs come from the runs.
        let orphans: Vec<RunSummary> = runs[1..].to_vec();
        let s = search_rungs(&runs[4], &orphans).unwrap();
        assert_eq!((s.planned_rungs, s.rungs.len(), s.rungs[1].epochs), (None, 2, Some(3)));
        assert!(s.describe().contains("reached rung 1 (the search's parent run"), "{}", s.describe());
        let mut done = runs.clone();
        done.push(trial("a2", "a", 2, 9, 6));
        let line = search_rungs(&done[6], &done).unwrap().describe();
        assert!(line.contains("trial a (this run: rung 2) reached rung 2, the last;"), "{line}");
        assert!(search_rungs(&RunSummary::default(), &runs).is_none(), "a run of no search");
        for made_up in [1e300, -1.0, 0.5, 64.0] {
            let mut odd = trial("odd", "a", 0, 1, 1);
            odd.metrics.insert("rung".into(), made_up);
            assert!(search_rungs(&odd, &runs).is_none(), "rung {made_up} is no rung");
        }
    }
}
