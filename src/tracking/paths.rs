//! Paths built from names that a server or a user chose: run ids, run, experiment and model
//! names, artifact paths and the entries of artifact listings.
//!
//! Every such join goes through [`safe_join`] or [`join_component`], so a hostile or broken
//! server answering a run id of `../../tmp/x` or an artifact called `/etc/passwd` gets an error,
//! never a file outside the directory it was meant for. The rules are checked on the text, before
//! the operating system sees it, so they hold the same on every platform.

use std::path::{Component, Path, PathBuf};

use super::error::TrackingError;

/// Why `rel` is not a plain relative path of names separated by `/`, or `None` when it is.
fn problem(rel: &str) -> Option<&'static str> {
    if rel.is_empty() {
        return Some("it is empty");
    }
    if rel.contains('\0') {
        return Some("it contains a NUL byte");
    }
    if rel.contains('\\') {
        return Some("it contains a backslash");
    }
    if rel.starts_with('/') {
        return Some("it is absolute");
    }
    for segment in rel.split('/') {
        match segment {
            "" => return Some("it has an empty component (`//` or a trailing `/`)"),
            "." => return Some("it has a `.` component"),
            ".." => return Some("it has a `..` component"),
            _ => {}
        }
    }
    // What the platform itself would read as a root or drive prefix (`C:` on Windows).
    if !Path::new(rel).components().all(|c| matches!(c, Component::Normal(_))) {
        return Some("it is not a plain relative path on this platform");
    }
    None
}

fn unsafe_path(rel: &str, root: &Path, reason: &str) -> TrackingError {
    TrackingError::UnsafePath { path: rel.to_string(), root: root.to_path_buf(), reason: reason.to_string() }
}

/// Checks a relative path of plain names separated by `/`: not empty, not absolute, no `..`,
/// `.` or empty components, no backslash or NUL.
pub fn check_relative(rel: &str) -> Result<(), TrackingError> {
    match problem(rel) {
        Some(reason) => Err(TrackingError::InvalidArgument(format!(
            "invalid path {rel:?}: {reason}; use a relative path of plain names separated by '/'"
        ))),
        None => Ok(()),
    }
}

/// `root/rel` when `rel` stays under `root` (see [`check_relative`]), else
/// [`TrackingError::UnsafePath`].
pub fn safe_join(root: &Path, rel: &str) -> Result<PathBuf, TrackingError> {
    match problem(rel) {
        Some(reason) => Err(unsafe_path(rel, root, reason)),
        None => Ok(root.join(rel)),
    }
}

/// `root/name` when `name` is one plain path component (a run id, a directory name), else
/// [`TrackingError::UnsafePath`].
pub fn join_component(root: &Path, name: &str) -> Result<PathBuf, TrackingError> {
    if name.contains('/') {
        return Err(unsafe_path(name, root, "it must be a single name but contains `/`"));
    }
    safe_join(root, name)
}

/// A directory name made from any text (an experiment name): anything outside
/// `[A-Za-z0-9._-]`, and a leading dot, becomes `_`, and a long name is cut to a prefix and a
/// hash of the whole, so the result is always one safe component that fits in a file name.
pub fn sanitize_component(name: &str) -> String {
    sanitize_keeping(name, "")
}

/// [`sanitize_component`], also keeping the characters of `keep` (a label's `=` and `,`, say),
/// except `/`, a backslash and NUL, which never stay.
pub fn sanitize_keeping(name: &str, keep: &str) -> String {
    const MAX_PLAIN: usize = 64;
    let kept = |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || (keep.contains(c) && !"/\\\0".contains(c))
    };
    let mut s: String = name.chars().map(|c| if kept(c) { c } else { '_' }).collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    if s.is_empty() {
        s.push('_');
    }
    if s.len() > MAX_PLAIN {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(name.as_bytes());
        let hash = crate::hex::lower_hex(&digest[..8]);
        s.truncate(MAX_PLAIN - hash.len() - 1);
        s = format!("{s}-{hash}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESCAPES: [&str; 14] =
        ["", "..", ".", "../x", "a/../../b", "a/..", "/tmp/x", "//x", "a//b", "a/", "./a", "a\\..\\b", "a\0b", "..\\x"];

    #[test]
    fn joins_stay_under_their_root() {
        let root = Path::new("/srv/runs");
        for bad in ESCAPES {
            let e = safe_join(root, bad).unwrap_err();
            assert!(matches!(e, TrackingError::UnsafePath { .. }), "{bad:?}: {e}");
            assert!(e.to_string().contains("/srv/runs"), "{e}");
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
        assert_eq!(safe_join(root, "a/b.png").unwrap(), Path::new("/srv/runs/a/b.png"));
        assert_eq!(safe_join(root, "..a/b..").unwrap(), Path::new("/srv/runs/..a/b.."));
        assert!(join_component(root, "a/b").is_err());
        assert_eq!(join_component(root, "0123abcd").unwrap(), Path::new("/srv/runs/0123abcd"));
    }

    #[test]
    fn sanitized_components_are_always_safe() {
        for name in ESCAPES.iter().copied().chain(["a/b c", "fashion-mnist", "../../etc", "é"]) {
            let s = sanitize_component(name);
            assert!(join_component(Path::new("r"), &s).is_ok(), "{name:?} -> {s:?}");
        }
        assert_eq!(sanitize_component("fashion-mnist"), "fashion-mnist");
        assert_eq!(sanitize_component("a/b c"), "a_b_c");
        assert_eq!(sanitize_component(".."), "_.");
        assert_eq!(sanitize_component(""), "_");
    }
}
