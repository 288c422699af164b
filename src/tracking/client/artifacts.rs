//! A run's artifacts through the server's `mlflow-artifacts` proxy: uploaded from a file or
//! bytes, downloaded into memory or a file within a size cap, and listed with every entry
//! checked, in a walk that a server cannot keep going forever.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::MlflowClient;
use super::retry::Retry;
use super::transport::{ReqBody, Sink};
use super::uri::{artifact_proxy_path, check_artifact_rel_path};
use crate::tracking::error::TrackingError;
use crate::tracking::paths;
use crate::tracking::util::percent_encode;
use crate::tracking::wire::FileInfo;

/// Deepest artifact directory [`MlflowClient::list_artifacts_recursive`] descends into.
pub const MAX_ARTIFACT_DEPTH: usize = 32;
/// Most directories [`MlflowClient::list_artifacts_recursive`] lists (one request each).
pub const MAX_ARTIFACT_DIRS: usize = 10_000;
/// Most entries (files and directories) [`MlflowClient::list_artifacts_recursive`] accepts.
pub const MAX_ARTIFACT_ENTRIES: usize = 100_000;

fn content_type_for(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("png") => "image/png",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("txt") | Some("log") | Some("jsonl") | Some("md") => "text/plain",
        Some("csv") => "text/csv",
        Some("html") => "text/html",
        Some("yaml") | Some("yml") => "application/x-yaml",
        _ => "application/octet-stream",
    }
}

impl MlflowClient {
    fn artifact_url_path(artifact_uri: &str, rel_path: &str) -> Result<String, TrackingError> {
        check_artifact_rel_path(rel_path)?;
        let root = artifact_proxy_path(artifact_uri)?;
        let full = if rel_path.is_empty() {
            root
        } else if root.is_empty() {
            rel_path.to_string()
        } else {
            format!("{root}/{rel_path}")
        };
        Ok(format!("/api/2.0/mlflow-artifacts/artifacts/{}", percent_encode(&full, true)))
    }

    /// Uploads one local file to `<artifact_uri>/<rel_path>` through the artifact proxy
    /// (one raw-body PUT; an existing file is overwritten).
    pub fn upload_artifact_file(
        &self,
        artifact_uri: &str,
        rel_path: &str,
        local_path: &Path,
    ) -> Result<(), TrackingError> {
        if rel_path.is_empty() {
            return Err(TrackingError::InvalidArgument("empty artifact path".into()));
        }
        let path = Self::artifact_url_path(artifact_uri, rel_path)?;
        // Fail early and clearly on a missing local file (not as a network error).
        File::open(local_path).map_err(|e| TrackingError::io(local_path, e))?;
        let ct = content_type_for(local_path);
        let (r, attempts) =
            self.send("PUT", &path, &[], ReqBody::File(local_path, ct), Retry::Idempotent, Sink::ANSWER)?;
        if !(200..300).contains(&r.status) {
            return Err(self.api_error("PUT", &path, &r, attempts));
        }
        Ok(())
    }

    /// Uploads bytes to `<artifact_uri>/<rel_path>`.
    pub fn upload_artifact_bytes(&self, artifact_uri: &str, rel_path: &str, bytes: &[u8]) -> Result<(), TrackingError> {
        if rel_path.is_empty() {
            return Err(TrackingError::InvalidArgument("empty artifact path".into()));
        }
        let path = Self::artifact_url_path(artifact_uri, rel_path)?;
        let ct = content_type_for(Path::new(rel_path));
        let (r, attempts) = self.send("PUT", &path, &[], ReqBody::Bytes(bytes, ct), Retry::Idempotent, Sink::ANSWER)?;
        if !(200..300).contains(&r.status) {
            return Err(self.api_error("PUT", &path, &r, attempts));
        }
        Ok(())
    }

    /// Downloads `<artifact_uri>/<rel_path>` through the artifact proxy into memory; a file
    /// over [`MAX_RESPONSE_BYTES`](super::MAX_RESPONSE_BYTES) is refused.
    pub fn download_artifact(&self, artifact_uri: &str, rel_path: &str) -> Result<Vec<u8>, TrackingError> {
        let path = Self::artifact_url_path(artifact_uri, rel_path)?;
        let (r, attempts) = self.send("GET", &path, &[], ReqBody::None, Retry::Idempotent, Sink::ANSWER)?;
        if !(200..300).contains(&r.status) {
            return Err(self.api_error("GET", &path, &r, attempts));
        }
        Ok(r.body)
    }

    /// Downloads `<artifact_uri>/<rel_path>` to `<dest_root>/<rel_path>` (parent directories are
    /// created) and returns that path. The body is streamed to a temporary file and renamed into
    /// place whole; one over `max_bytes` is refused, and nothing is left behind.
    pub fn download_artifact_to(
        &self,
        artifact_uri: &str,
        rel_path: &str,
        dest_root: &Path,
        max_bytes: u64,
    ) -> Result<PathBuf, TrackingError> {
        let dest = paths::safe_join(dest_root, rel_path)?;
        let path = Self::artifact_url_path(artifact_uri, rel_path)?;
        let parent = dest.parent().unwrap_or(dest_root);
        std::fs::create_dir_all(parent).map_err(|e| TrackingError::io(parent, e))?;
        let tmp = crate::files::temp_path(&dest);
        let sink = Sink::File { path: &tmp, max: max_bytes };
        let result = self.send("GET", &path, &[], ReqBody::None, Retry::Idempotent, sink).and_then(|(r, attempts)| {
            if !(200..300).contains(&r.status) {
                return Err(self.api_error("GET", &path, &r, attempts));
            }
            std::fs::rename(&tmp, &dest).map_err(|e| TrackingError::io(&dest, e))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| dest)
    }

    /// `artifacts/list` for a run: the entries directly under `path` ("" = the root). Every
    /// entry must be a direct child of `path` with a plain name; a listing with anything else
    /// (`..`, a sibling, the directory itself, an absolute path) is refused.
    pub fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<FileInfo>, TrackingError> {
        let api = "artifacts/list";
        check_artifact_rel_path(path)?;
        let mut q = vec![("run_id", run_id)];
        if !path.is_empty() {
            q.push(("path", path));
        }
        let v = self.get_json(api, &q)?;
        let files: Vec<FileInfo> = Self::decode(api, v.get("files").cloned().unwrap_or(json!([])))?;
        for f in &files {
            let name = if path.is_empty() {
                Some(f.path.as_str())
            } else {
                f.path.strip_prefix(path).and_then(|rest| rest.strip_prefix('/'))
            };
            let plain = name.is_some_and(|n| !n.contains('/') && paths::check_relative(n).is_ok());
            if !plain {
                return Err(TrackingError::Refused {
                    endpoint: format!("GET {}", Self::endpoint_name(api)),
                    detail: format!(
                        "the listing of {:?} holds {:?}, which is not a plain name directly inside it; \
                         the server is broken or hostile, so this run's artifacts are left alone",
                        if path.is_empty() { "/" } else { path },
                        f.path
                    ),
                });
            }
        }
        Ok(files)
    }

    /// Every file (not directory) of a run's artifacts, recursively, with paths from the root.
    /// The walk is bounded ([`MAX_ARTIFACT_DEPTH`], [`MAX_ARTIFACT_DIRS`],
    /// [`MAX_ARTIFACT_ENTRIES`]) and each listing is checked (see [`Self::list_artifacts`]), so a
    /// server cannot keep it going forever.
    pub fn list_artifacts_recursive(&self, run_id: &str) -> Result<Vec<FileInfo>, TrackingError> {
        let refuse = |detail: String| TrackingError::Refused {
            endpoint: format!("GET {}", Self::endpoint_name("artifacts/list")),
            detail: format!("{detail}; the server is broken or hostile, so this run's artifacts are left alone"),
        };
        let mut out = Vec::new();
        let mut dirs = vec![(String::new(), 0usize)];
        let (mut listed, mut entries) = (0usize, 0usize);
        while let Some((d, depth)) = dirs.pop() {
            listed += 1;
            if listed > MAX_ARTIFACT_DIRS {
                return Err(refuse(format!("run {run_id} has more than {MAX_ARTIFACT_DIRS} artifact directories")));
            }
            for f in self.list_artifacts(run_id, &d)? {
                entries += 1;
                if entries > MAX_ARTIFACT_ENTRIES {
                    return Err(refuse(format!("run {run_id} has more than {MAX_ARTIFACT_ENTRIES} artifacts")));
                }
                if f.is_dir {
                    if depth + 1 > MAX_ARTIFACT_DEPTH {
                        return Err(refuse(format!(
                            "artifact directory {:?} is nested more than {MAX_ARTIFACT_DEPTH} levels deep",
                            f.path
                        )));
                    }
                    dirs.push((f.path, depth + 1));
                } else {
                    out.push(f);
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_urls_are_encoded_below_the_proxy() {
        assert_eq!(
            MlflowClient::artifact_url_path("mlflow-artifacts:/1/r/artifacts", "plots/a b.png").unwrap(),
            "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/plots/a%20b.png"
        );
    }
}
