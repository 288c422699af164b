//! The MLflow Model Registry: registered models, versions, stages (deprecated but still served)
//! and aliases (their replacement). Promotion does both, so either kind of consumer finds the
//! model.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::model_uri::{Stage, VersionSelector};
use super::{MlflowClient, TrackingError};

/// One version of a registered model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub stage: String,
    pub status: String,
    pub run_id: Option<String>,
    /// The LoggedModel it was registered from (MLflow 3), if any.
    pub model_id: Option<String>,
    pub aliases: Vec<String>,
}

impl ModelVersion {
    fn from_json(endpoint: &str, v: &Value) -> Result<ModelVersion, TrackingError> {
        let text = |key: &str| v[key].as_str().map(String::from);
        let (Some(name), Some(version)) = (text("name"), text("version")) else {
            return Err(TrackingError::Protocol {
                endpoint: endpoint.into(),
                detail: "a model version without name or version".into(),
            });
        };
        Ok(ModelVersion {
            name,
            version,
            stage: text("current_stage").unwrap_or_else(|| "None".into()),
            status: text("status").unwrap_or_default(),
            run_id: text("run_id").filter(|r| !r.is_empty()),
            // Servers that do not echo `model_id` still name the LoggedModel in the source.
            model_id: text("model_id").filter(|m| !m.is_empty()).or_else(|| {
                text("source")
                    .and_then(|s| s.strip_prefix("models:/").filter(|id| id.starts_with("m-")).map(String::from))
            }),
            aliases: v["aliases"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default(),
        })
    }
}

impl MlflowClient {
    /// Creates the registered model unless it exists already (another pipeline may be first).
    pub fn ensure_registered_model(&self, name: &str) -> Result<(), TrackingError> {
        match self.post_json(
            "registered-models/create",
            &json!({"name": name, "description": "engine model on FashionMNIST"}),
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Registers `source` (e.g. `models:/<model_id>`) as a new version of `name`.
    pub fn create_model_version(
        &self,
        name: &str,
        source: &str,
        model_id: Option<&str>,
        run_id: &str,
    ) -> Result<ModelVersion, TrackingError> {
        let mut body = json!({"name": name, "source": source, "run_id": run_id});
        if let Some(id) = model_id {
            body["model_id"] = json!(id);
        }
        let v = self.post_json("model-versions/create", &body)?;
        ModelVersion::from_json("model-versions/create", &v["model_version"])
    }

    pub fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion, TrackingError> {
        let v = self.get_json("model-versions/get", &[("name", name), ("version", version)])?;
        ModelVersion::from_json("model-versions/get", &v["model_version"])
    }

    /// Fails unless the LoggedModel behind a version (when it has one) has all its files.
    pub fn require_ready_version(&self, version: &ModelVersion) -> Result<(), TrackingError> {
        match &version.model_id {
            Some(id) => self.get_logged_model(id)?.require_ready().map(|_| ()),
            None => Ok(()),
        }
    }

    /// Polls a version until the server reports it READY (registration may be asynchronous).
    pub fn wait_until_ready(
        &self,
        name: &str,
        version: &str,
        timeout: Duration,
    ) -> Result<ModelVersion, TrackingError> {
        let start = Instant::now();
        loop {
            let mv = self.get_model_version(name, version)?;
            match mv.status.as_str() {
                "READY" => return Ok(mv),
                "FAILED_REGISTRATION" => {
                    return Err(TrackingError::InvalidArgument(format!(
                        "registration of {name} version {version} failed"
                    )));
                }
                _ if start.elapsed() > timeout => {
                    return Err(TrackingError::InvalidArgument(format!(
                        "{name} version {version} is still {} after {}s",
                        mv.status,
                        timeout.as_secs()
                    )));
                }
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// Moves a version to `stage` (`Staging`, `Production`, `Archived`, `None`).
    pub fn transition_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
    ) -> Result<ModelVersion, TrackingError> {
        let body =
            json!({"name": name, "version": version, "stage": stage, "archive_existing_versions": archive_existing});
        let v = self.post_json("model-versions/transition-stage", &body)?;
        ModelVersion::from_json("model-versions/transition-stage", &v["model_version"])
    }

    /// Points `alias` at `version` (moving it from any other version).
    pub fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), TrackingError> {
        self.post_json("registered-models/alias", &json!({"name": name, "alias": alias, "version": version}))?;
        Ok(())
    }

    /// Every version of `name`, newest first.
    pub fn model_versions(&self, name: &str) -> Result<Vec<ModelVersion>, TrackingError> {
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let v = self.get_json("model-versions/search", &[("filter", &filter), ("order_by", "version_number DESC")])?;
        v["model_versions"]
            .as_array()
            .map(|a| a.iter().map(|mv| ModelVersion::from_json("model-versions/search", mv)).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// The version of `name` that `selector` names now: a number as given, the highest version
    /// in a stage, the highest of all, or the one an alias points to. A name, version, stage or
    /// alias the registry lacks is an [`TrackingError::InvalidArgument`] that says what it has.
    pub fn resolve_version(&self, name: &str, selector: &VersionSelector) -> Result<ModelVersion, TrackingError> {
        match selector {
            VersionSelector::Number(number) => match self.get_model_version(name, number) {
                Err(e) if e.is_not_found() => Err(self.missing(name, &format!("`{name}` has no version {number}"))),
                found => found,
            },
            VersionSelector::Stage(stage) => {
                let body = json!({"name": name, "stages": [stage.as_str()]});
                let found = match self.post_json("registered-models/get-latest-versions", &body) {
                    Err(e) if e.is_not_found() => return Err(self.missing(name, "")),
                    found => found?,
                };
                let mut versions: Vec<ModelVersion> = found["model_versions"]
                    .as_array()
                    .map(|a| a.iter().map(|v| ModelVersion::from_json("registered-models/get-latest-versions", v)))
                    .into_iter()
                    .flatten()
                    .collect::<Result<_, _>>()?;
                versions.retain(|v| v.stage.eq_ignore_ascii_case(stage.as_str()));
                versions.sort_by_key(|v| v.version.parse::<u64>().unwrap_or(0));
                match versions.pop() {
                    Some(version) => Ok(version),
                    None => {
                        let hint = match stage {
                            Stage::Production => {
                                format!(" (`engine promote --name {name} --version N` moves one there)")
                            }
                            _ => String::new(),
                        };
                        Err(self.missing(name, &format!("no version of `{name}` is in {stage}{hint}")))
                    }
                }
            }
            VersionSelector::Latest => match self.model_versions(name)?.into_iter().next() {
                Some(version) => Ok(version),
                None => Err(self.missing(name, &format!("`{name}` has no versions"))),
            },
            VersionSelector::Alias(alias) => match self.aliased_version(name, alias)? {
                Some(version) => Ok(version),
                None => Err(self.missing(name, &format!("`{name}` has no alias `{alias}`"))),
            },
        }
    }

    /// The version `alias` of `name` points to now, or `None` when the model or the alias does
    /// not exist (yet: the first model to reach production has no champion before it).
    pub fn aliased_version(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>, TrackingError> {
        match self.get_json("registered-models/alias", &[("name", name), ("alias", alias)]) {
            Ok(v) => ModelVersion::from_json("registered-models/alias", &v["model_version"]).map(Some),
            // MLflow answers an unknown alias with 400, an unknown model with 404.
            Err(e) if e.is_not_found() || e.http_status() == Some(400) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Explains a lookup in `name` that found nothing: when the registered model itself is
    /// missing, says so and names those that exist; else `problem` and what `name` holds.
    fn missing(&self, name: &str, problem: &str) -> TrackingError {
        let server = self.tracking_uri();
        match self.get_json("registered-models/get", &[("name", name)]) {
            Err(e) if e.is_not_found() => {
                let known = self.registered_model_names().unwrap_or_default();
                let there = if known.is_empty() {
                    format!("none is registered there; `engine register --run-id RUN --name {name}` registers one")
                } else {
                    format!("registered there: {}", known.join(", "))
                };
                TrackingError::InvalidArgument(format!("no registered model `{name}` on {server}; {there}"))
            }
            Err(e) => e,
            Ok(model) => {
                let versions = self.model_versions(name).unwrap_or_default();
                let listed = if versions.is_empty() {
                    "it has no versions".to_string()
                } else {
                    let each: Vec<String> =
                        versions.iter().rev().map(|v| format!("{} ({})", v.version, v.stage)).collect();
                    format!("its versions: {}", each.join(", "))
                };
                let aliases: Vec<String> = model["registered_model"]["aliases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| Some(format!("{} -> {}", a["alias"].as_str()?, a["version"].as_str()?)))
                    .collect();
                let aliases =
                    if aliases.is_empty() { String::new() } else { format!("; its aliases: {}", aliases.join(", ")) };
                TrackingError::InvalidArgument(format!("{problem}; {listed}{aliases}"))
            }
        }
    }

    /// The names of the registered models on the server (the first page, at most 50).
    pub fn registered_model_names(&self) -> Result<Vec<String>, TrackingError> {
        let found = self.get_json("registered-models/search", &[("max_results", "50")])?;
        Ok(found["registered_models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str().map(String::from))
            .collect())
    }
}
