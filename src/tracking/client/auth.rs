//! Credentials sent with every request, read from MLflow's variables, and kept out of
//! everything printed: `Debug`, error messages, a server's echoed answers.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Credentials sent with every request. `Debug` never shows the secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    /// HTTP Basic (`MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`).
    Basic { username: String, password: String },
    /// `Authorization: Bearer` (`MLFLOW_TRACKING_TOKEN`).
    Bearer(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => write!(f, "Auth::None"),
            Auth::Basic { username, .. } => {
                write!(f, "Auth::Basic {{ username: {username:?}, password: \"***\" }}")
            }
            Auth::Bearer(_) => write!(f, "Auth::Bearer(\"***\")"),
        }
    }
}

impl Auth {
    /// Reads the credentials as MLflow's client does: Basic when both username and password
    /// are set, else a bearer token when `MLFLOW_TRACKING_TOKEN` is set, else none.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (var("MLFLOW_TRACKING_USERNAME"), var("MLFLOW_TRACKING_PASSWORD")) {
            (Some(username), Some(password)) => Auth::Basic { username, password },
            _ => match var("MLFLOW_TRACKING_TOKEN") {
                Some(t) => Auth::Bearer(t),
                None => Auth::None,
            },
        }
    }

    /// The strings that must never be printed: password, token, and the header carrying them.
    fn secrets(&self) -> Vec<String> {
        let mut out = match self {
            Auth::None => Vec::new(),
            Auth::Basic { password, .. } => vec![password.clone()],
            Auth::Bearer(t) => vec![t.clone()],
        };
        out.extend(self.header().and_then(|h| h.split_once(' ').map(|(_, v)| v.to_string())));
        out.retain(|s| !s.is_empty());
        out
    }

    /// `text` (a server's message) with every secret replaced by `***`: a server that echoes
    /// the credentials back must not get them printed.
    pub(super) fn scrub(&self, text: &str) -> String {
        self.secrets().iter().fold(text.to_string(), |t, secret| t.replace(secret.as_str(), "***"))
    }

    pub(super) fn header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic { username, password } => {
                Some(format!("Basic {}", BASE64.encode(format!("{username}:{password}"))))
            }
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::{MlflowClient, RetryPolicy};

    #[test]
    fn auth_debug_redacts_and_headers_encode() {
        let a = Auth::Basic { username: "alice".into(), password: "s3cret".into() };
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("s3cret") && dbg.contains("alice"), "{dbg}");
        assert_eq!(a.header().unwrap(), "Basic YWxpY2U6czNjcmV0");
        let t = Auth::Bearer("tok-123".into());
        assert!(!format!("{t:?}").contains("tok-123"));
        let c = MlflowClient::new("http://127.0.0.1:5000/", a, RetryPolicy::default()).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.tracking_uri(), "http://127.0.0.1:5000");
    }
}
