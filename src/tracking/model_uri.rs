//! The model URIs MLflow's own client accepts, read once into [`ModelUri`] before anything is
//! resolved: `models:/NAME/VERSION`, `models:/NAME/STAGE`, `models:/NAME/latest`,
//! `models:/NAME@ALIAS`, `models:/<model id>` (an MLflow 3 LoggedModel), `runs:/RUN_ID/model`, a
//! bare run id, or a model directory.
//!
//! Telling a run id from a path is the one guess in here, and it errs toward the path: anything
//! with a `/`, a leading `.` or `~`, or that exists on disk is a directory, so a mistyped path is
//! reported as missing and never sent to a server as a run id. Every failure, here or while
//! resolving, is a [`ModelUriError`] that says which form the input was read as, so a user who
//! meant another form sees why it was not taken.

use std::fmt;
use std::path::{Path, PathBuf};

/// A registry stage (deprecated by MLflow in favour of aliases, still served).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Production,
    Staging,
    Archived,
    None,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Production, Stage::Staging, Stage::Archived, Stage::None];

    /// The stage as MLflow spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Production => "Production",
            Stage::Staging => "Staging",
            Stage::Archived => "Archived",
            Stage::None => "None",
        }
    }

    /// A stage name in any case, as MLflow reads them.
    pub fn parse(text: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which version of a registered model a `models:/NAME…` URI names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionSelector {
    /// `models:/NAME/3`.
    Number(String),
    /// `models:/NAME/Production`: the highest version in that stage.
    Stage(Stage),
    /// `models:/NAME/latest`: the highest version.
    Latest,
    /// `models:/NAME@champion`: the version the alias points to now.
    Alias(String),
}

/// A model URI, read but not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelUri {
    /// A version of a registered model.
    Registered { name: String, selector: VersionSelector },
    /// `models:/m-…`: an MLflow 3 LoggedModel, found by its id.
    LoggedModel { model_id: String },
    /// `runs:/RUN_ID/model` or a bare run id (or a prefix of one): the run's model.
    Run { run_id: String },
    /// A directory holding a model (`MLmodel`, the weights, `engine_model.json`).
    Directory(PathBuf),
}

/// The forms, for messages that list them.
pub const FORMS: &str = "models:/NAME/VERSION, models:/NAME/STAGE, models:/NAME/latest, models:/NAME@ALIAS, \
                         models:/<model id>, runs:/RUN_ID/model, a run id or a model directory";

/// Why a model URI could not be read or resolved: what the input was read as, and what went
/// wrong with that reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("read `{input}` as {read_as}: {problem}")]
pub struct ModelUriError {
    pub input: String,
    pub read_as: String,
    pub problem: String,
}

impl ModelUriError {
    pub fn new(input: &str, read_as: impl Into<String>, problem: impl Into<String>) -> Self {
        ModelUriError { input: input.to_string(), read_as: read_as.into(), problem: problem.into() }
    }
}

impl ModelUri {
    /// Reads `text` as one of the forms (see the module docs); a path is classified by whether
    /// it exists on this machine.
    pub fn parse(text: &str) -> Result<ModelUri, ModelUriError> {
        Self::parse_with(text, &|p: &Path| p.exists())
    }

    /// A value given as `--run-id`: a run id (or prefix), never a path or URI.
    pub fn run_id(text: &str) -> Result<ModelUri, ModelUriError> {
        let id = text.trim();
        let read_as = format!("a run id `{id}`");
        if id.is_empty() {
            return Err(ModelUriError::new(text, read_as, "it is empty"));
        }
        if id.contains(['/', '\\', ':']) {
            return Err(ModelUriError::new(
                text,
                read_as,
                "a run id is a single name; pass a URI or a directory as --model-uri",
            ));
        }
        Ok(ModelUri::Run { run_id: id.to_string() })
    }

    /// [`ModelUri::parse`] with the existence test given, for tests.
    pub fn parse_with(text: &str, exists: &dyn Fn(&Path) -> bool) -> Result<ModelUri, ModelUriError> {
        let input = text.trim();
        if input.is_empty() {
            return Err(ModelUriError::new(text, "nothing", format!("it is empty; give one of {FORMS}")));
        }
        if let Some(rest) = input.strip_prefix("models:") {
            return parse_models(input, rest);
        }
        if let Some(rest) = input.strip_prefix("runs:") {
            return parse_runs(input, rest);
        }
        if let Some(path) = input.strip_prefix("file://") {
            return Ok(ModelUri::Directory(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = input.split_once(":/")
            && !scheme.is_empty()
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(ModelUriError::new(
                input,
                format!("a `{scheme}:` URI"),
                format!("engine does not read that scheme; give one of {FORMS}"),
            ));
        }
        let looks_like_path = input.contains(['/', '\\']) || input.starts_with(['.', '~']);
        if looks_like_path || exists(Path::new(input)) {
            return Ok(ModelUri::Directory(PathBuf::from(input)));
        }
        Ok(ModelUri::Run { run_id: input.to_string() })
    }

    /// What the input was read as, for messages: "version 3 of registered model `x`".
    pub fn describe(&self) -> String {
        match self {
            ModelUri::Registered { name, selector } => match selector {
                VersionSelector::Number(v) => format!("version {v} of registered model `{name}`"),
                VersionSelector::Stage(stage) => format!("a registered model `{name}` in stage `{stage}`"),
                VersionSelector::Latest => format!("the latest version of registered model `{name}`"),
                VersionSelector::Alias(alias) => format!("registered model `{name}` with alias `{alias}`"),
            },
            ModelUri::LoggedModel { model_id } => format!("a logged model id `{model_id}`"),
            ModelUri::Run { run_id } => format!("a run id `{run_id}`"),
            ModelUri::Directory(dir) => format!("a model directory `{}`", dir.display()),
        }
    }

    /// An error about this reading of `input` (which the message quotes, so a run id or path
    /// that is the whole input is not repeated).
    pub fn error(&self, input: &str, problem: impl Into<String>) -> ModelUriError {
        let read_as = match self {
            ModelUri::Run { run_id } if run_id == input.trim() => "a run id".to_string(),
            ModelUri::Directory(dir) if dir == Path::new(input.trim()) => "a model directory".to_string(),
            _ => self.describe(),
        };
        ModelUriError::new(input, read_as, problem)
    }

    /// Whether the model lives on an MLflow server (a registry or a LoggedModel).
    pub fn needs_server(&self) -> bool {
        matches!(self, ModelUri::Registered { .. } | ModelUri::LoggedModel { .. })
    }
}

/// `models:` followed by `rest`, read as MLflow's `_parse_model_uri` does.
fn parse_models(input: &str, rest: &str) -> Result<ModelUri, ModelUriError> {
    let shapes =
        "models:/NAME/VERSION, models:/NAME/STAGE, models:/NAME/latest, models:/NAME@ALIAS or models:/<model id>";
    let malformed = |problem: &str| ModelUriError::new(input, "a `models:` URI", format!("{problem}; give {shapes}"));
    let Some(path) = rest.strip_prefix('/') else {
        return Err(malformed("it must start with `models:/`"));
    };
    let path = path.trim_start_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [name, suffix] => {
            let name = name.trim();
            if name.is_empty() {
                return Err(malformed("the name is empty"));
            }
            if name.contains('@') {
                return Err(malformed("an alias and a version cannot both be given"));
            }
            let suffix = suffix.trim();
            let selector = if suffix.is_empty() {
                return Err(ModelUriError::new(
                    input,
                    format!("registered model `{name}`"),
                    format!(
                        "no version after the `/`; give models:/{name}/VERSION, models:/{name}/STAGE, \
                         models:/{name}/latest or models:/{name}@ALIAS"
                    ),
                ));
            } else if suffix.bytes().all(|b| b.is_ascii_digit()) {
                VersionSelector::Number(suffix.to_string())
            } else if suffix.eq_ignore_ascii_case("latest") {
                VersionSelector::Latest
            } else {
                match Stage::parse(suffix) {
                    Some(stage) => VersionSelector::Stage(stage),
                    None => {
                        return Err(ModelUriError::new(
                            input,
                            format!("a registered model `{name}` in stage `{suffix}`"),
                            "no such stage; stages are Production, Staging, Archived, None \
                             (a version is a number, an alias follows `@`)",
                        ));
                    }
                }
            };
            Ok(ModelUri::Registered { name: name.to_string(), selector })
        }
        [one] if one.contains('@') => {
            let (name, alias) = one.split_once('@').unwrap_or_default();
            let (name, alias) = (name.trim(), alias.trim());
            if name.is_empty() || alias.is_empty() || alias.contains('@') {
                return Err(malformed("an alias URI is models:/NAME@ALIAS"));
            }
            Ok(ModelUri::Registered { name: name.to_string(), selector: VersionSelector::Alias(alias.to_string()) })
        }
        [one] if !one.trim().is_empty() => Ok(ModelUri::LoggedModel { model_id: one.trim().to_string() }),
        [_] => Err(malformed("nothing follows `models:/`")),
        _ => Err(malformed("a registered model name holds no `/`")),
    }
}

/// `runs:` followed by `rest`: `runs:/RUN_ID/model` (the run's model; `runs:/RUN_ID` too).
fn parse_runs(input: &str, rest: &str) -> Result<ModelUri, ModelUriError> {
    let Some(path) = rest.strip_prefix('/') else {
        return Err(ModelUriError::new(input, "a `runs:` URI", "it must start with `runs:/`; give runs:/RUN_ID/model"));
    };
    let path = path.trim_start_matches('/').trim_end_matches('/');
    let (run_id, artifact) = path.split_once('/').unwrap_or((path, "model"));
    if run_id.trim().is_empty() {
        return Err(ModelUriError::new(input, "a `runs:` URI", "no run id; give runs:/RUN_ID/model"));
    }
    if artifact != crate::tracking::MODEL_ARTIFACT_DIR {
        return Err(ModelUriError::new(
            input,
            format!("the artifact `{artifact}` of run `{run_id}`"),
            format!("engine's model of a run is its `model` artifact: give runs:/{run_id}/model"),
        ));
    }
    Ok(ModelUri::Run { run_id: run_id.trim().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelUri, ModelUriError> {
        ModelUri::parse_with(text, &|p: &Path| p == Path::new("existing-file"))
    }

    fn registered(name: &str, selector: VersionSelector) -> ModelUri {
        ModelUri::Registered { name: name.into(), selector }
    }

    #[test]
    fn every_form_is_read() {
        assert_eq!(
            parse("models:/fashion-mlp/3").unwrap(),
            registered("fashion-mlp", VersionSelector::Number("3".into()))
        );
        for (text, stage) in [
            ("models:/m/Production", Stage::Production),
            ("models:/m/production", Stage::Production),
            ("models:/m/STAGING", Stage::Staging),
            ("models:/m/archived", Stage::Archived),
            ("models:/m/None", Stage::None),
        ] {
            assert_eq!(parse(text).unwrap(), registered("m", VersionSelector::Stage(stage)), "{text}");
        }
        assert_eq!(parse("models:/m/latest").unwrap(), registered("m", VersionSelector::Latest));
        assert_eq!(parse("models:/m/Latest").unwrap(), registered("m", VersionSelector::Latest));
        assert_eq!(parse("models:/m@champion").unwrap(), registered("m", VersionSelector::Alias("champion".into())));
        assert_eq!(parse("models:/m-0123abcd").unwrap(), ModelUri::LoggedModel { model_id: "m-0123abcd".into() });
        let run = ModelUri::Run { run_id: "0123abcd".into() };
        for text in ["runs:/0123abcd/model", "runs:/0123abcd/model/", "runs:/0123abcd", "0123abcd", " 0123abcd "] {
            assert_eq!(parse(text).unwrap(), run, "{text}");
        }
        for text in ["runs/abc/model", "./model", "../x", "/abs/model", "~/m", "existing-file", ".hidden"] {
            assert_eq!(parse(text).unwrap(), ModelUri::Directory(text.into()), "{text}");
        }
        assert_eq!(parse("file:///srv/model").unwrap(), ModelUri::Directory("/srv/model".into()));
        assert_eq!(ModelUri::run_id("0123").unwrap(), ModelUri::Run { run_id: "0123".into() });
    }

    #[test]
    fn errors_say_what_the_input_was_read_as() {
        let e = parse("models:/fashion-mlp/Prodution").unwrap_err();
        assert_eq!(
            e.to_string(),
            "read `models:/fashion-mlp/Prodution` as a registered model `fashion-mlp` in stage `Prodution`: no such \
             stage; stages are Production, Staging, Archived, None (a version is a number, an alias follows `@`)"
        );
        for (text, says) in [
            ("models:fashion/1", "must start with `models:/`"),
            ("models:/", "nothing follows"),
            ("models:/a/b/c", "no `/`"),
            ("models:/a/", "no version after the `/`"),
            ("models:/a@", "models:/NAME@ALIAS"),
            ("models:/@x", "models:/NAME@ALIAS"),
            ("models:/a@b/1", "cannot both"),
            ("runs:/abc/weights", "runs:/abc/model"),
            ("runs:/", "no run id"),
            ("runs:abc", "runs:/RUN_ID/model"),
            ("s3://bucket/model", "does not read that scheme"),
            ("", "it is empty"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("read `{}` as ", text.trim())), "{text}: {e}");
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(ModelUri::run_id("runs/abc").unwrap_err().to_string().contains("--model-uri"));
        assert!(ModelUri::run_id("").is_err());
    }

    #[test]
    fn descriptions_name_the_reading() {
        assert_eq!(parse("models:/x/Staging").unwrap().describe(), "a registered model `x` in stage `Staging`");
        assert_eq!(parse("models:/x/2").unwrap().describe(), "version 2 of registered model `x`");
        assert_eq!(parse("abc").unwrap().describe(), "a run id `abc`");
        assert!(parse("models:/m-1").unwrap().needs_server());
        assert!(!parse("abc").unwrap().needs_server());
        let e = parse("runs/x").unwrap().error("runs/x", "a run directory");
        assert_eq!(e.to_string(), "read `runs/x` as a model directory: a run directory");
        let e = parse("runs:/abc/model").unwrap().error("runs:/abc/model", "unknown");
        assert_eq!(e.to_string(), "read `runs:/abc/model` as a run id `abc`: unknown");
    }
}
