//! Finding MLflow's `mlflow` executable, and what can go wrong running its server. The engine
//! never installs it: without one, the error gives the one line that does.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The MLflow release the engine is tested against.
pub const MLFLOW_REQUIREMENT: &str = "mlflow==3.17.2";

/// Where a project keeps its own MLflow (what `scripts/mlflow-venv.sh` and the README create).
pub const PROJECT_VENV: &str = ".venv-mlflow";

/// Starting or running an MLflow server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "MLflow is not installed: no `mlflow` in {searched}. Install it with\n  pip install {MLFLOW_REQUIREMENT}\n\
         (or into the project: python3 -m venv {PROJECT_VENV} && {PROJECT_VENV}/bin/pip install {MLFLOW_REQUIREMENT}), \
         or name one with --mlflow PATH or ENGINE_MLFLOW"
    )]
    NotFound { searched: String },
    #[error("{} (from --mlflow or ENGINE_MLFLOW) is not an executable file", path.display())]
    NotExecutable { path: PathBuf },
    #[error(
        "{addr} is already in use (another MLflow server or `engine ui`?): pick a free port with --port, \
         or sync into the server listening there with --tracking-uri http://{addr}"
    )]
    PortInUse { addr: String },
    #[error("cannot listen on {addr}: {source} (check --host)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {}: {source}", bin.display())]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the MLflow server exited ({status}) {when}; check --backend-store-uri and --artifacts-destination. \
         Its last output:\n{log}"
    )]
    Exited { status: String, when: &'static str, log: String },
    #[error("the MLflow server did not answer {url}/health within {secs} s. Its last output:\n{log}")]
    NoAnswer { url: String, secs: u64, log: String },
    #[error("cannot open the store {uri}: {detail}")]
    Store { uri: String, detail: String },
    #[error("interrupted before the MLflow server answered")]
    Interrupted,
}

/// The `mlflow` to run: `named` (a flag or variable) when given, else the project's
/// `.venv-mlflow/bin/mlflow` (pinned for this project), else the first `mlflow` on `path_var`.
pub fn find_mlflow(named: Option<&Path>, project_dir: &Path, path_var: Option<&OsStr>) -> Result<PathBuf, ServerError> {
    if let Some(path) = named {
        return if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(ServerError::NotExecutable { path: path.to_path_buf() })
        };
    }
    let venv = project_dir.join(PROJECT_VENV).join("bin").join("mlflow");
    if is_executable(&venv) {
        return Ok(venv);
    }
    let on_path = path_var.into_iter().flat_map(std::env::split_paths).map(|dir| dir.join("mlflow"));
    let mut on_path = on_path.filter(|p| is_executable(p));
    on_path.next().ok_or_else(|| ServerError::NotFound {
        searched: format!("{} nor on the PATH", Path::new(PROJECT_VENV).join("bin").display()),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("engine-mlflow-bin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn fake_mlflow(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).expect("dir");
        let bin = dir.join("mlflow");
        std::fs::write(&bin, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        bin
    }

    #[test]
    fn named_then_project_venv_then_path() {
        let root = scratch("order");
        let project = root.join("project");
        let on_path = fake_mlflow(&root.join("bin"));
        let path_var = root.join("bin").into_os_string();
        assert_eq!(find_mlflow(None, &project, Some(&path_var)).ok(), Some(on_path.clone()));
        let venv = fake_mlflow(&project.join(".venv-mlflow/bin"));
        assert_eq!(find_mlflow(None, &project, Some(&path_var)).ok(), Some(venv));
        assert_eq!(find_mlflow(Some(&on_path), &project, None).ok(), Some(on_path));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn none_found_says_how_to_install() {
        let root = scratch("none");
        let error = find_mlflow(None, &root, Some(root.as_os_str())).expect_err("nothing there");
        assert!(error.to_string().contains("pip install mlflow==3.17.2"), "{error}");
        let named = find_mlflow(Some(&root.join("nope")), &root, None).expect_err("not a file");
        assert!(matches!(named, ServerError::NotExecutable { .. }));
        let _ = std::fs::remove_dir_all(&root);
    }
}
