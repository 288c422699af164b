//! The end of a sweep on the terminal: [`engine::experiment::sweep::summarize`] ranks the runs
//! and ends the parent; here the comparison is printed (or its JSON) and the parent's end
//! becomes the exit code.

use std::path::Path;
use std::process::ExitCode;

use engine::experiment::sweep::{self, Plan};
use engine::tracking::RunStatus;
use engine::train::TrainError;

use crate::cli::compare::{comparison_json, render_comparison};

/// Summarizes the plan at `path` and prints the comparison.
pub fn summarize(plan: &Plan, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let summary = sweep::summarize(plan, path)?;
    let (status, parent_id) = (summary.status, &plan.parent_run_id);
    if json {
        let mut value = comparison_json(&summary.summaries, &summary.ranking, None);
        value["parent_run_id"] = parent_id.clone().into();
        value["status"] = status.as_str().into();
        value["failed"] = summary
            .failures()
            .into_iter()
            .map(|(label, why)| serde_json::json!({"run": label, "error": why}))
            .collect();
        println!("{value}");
    } else {
        println!("\nsweep {} ({parent_id}): {} runs, {}", plan.parent_name, summary.children.len(), status);
        print!("{}", render_comparison(&summary.summaries, &summary.ranking, None));
    }
    match status {
        RunStatus::Finished => Ok(ExitCode::SUCCESS),
        RunStatus::Killed => Err(TrainError::Interrupted.into()),
        RunStatus::Failed => {
            let failed = summary.failures();
            let list: Vec<String> = failed.iter().map(|(label, why)| format!("{label}: {why}")).collect();
            anyhow::bail!("{} of {} runs failed: {}", failed.len(), summary.children.len(), list.join("; "))
        }
    }
}
