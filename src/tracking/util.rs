//! Small helpers: ids, run names, clocks, system tags, text formatting.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, the unit MLflow uses for every timestamp.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// 64 random bits from the OS (through a uuid4), for names and jitter.
pub(crate) fn random_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// A new run id in MLflow's form: a uuid4 as 32 lowercase hex characters.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// True for ids of the form MLflow and the local store use: 32 lowercase hex characters.
pub fn is_run_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

const ADJECTIVES: &[&str] = &[
    "able",
    "agile",
    "amazing",
    "ambitious",
    "bald",
    "beautiful",
    "bedecked",
    "bemused",
    "bold",
    "brawny",
    "bright",
    "capable",
    "carefree",
    "caring",
    "casual",
    "charming",
    "clean",
    "clever",
    "colorful",
    "crawling",
    "dapper",
    "debonair",
    "delicate",
    "dashing",
    "enchanting",
    "fearless",
    "funny",
    "gaudy",
    "gentle",
    "glamorous",
    "gregarious",
    "handsome",
    "honorable",
    "industrious",
    "intelligent",
    "invincible",
    "judicious",
    "kindly",
    "languid",
    "learned",
    "legendary",
    "likeable",
    "loud",
    "luminous",
    "luxuriant",
    "magnificent",
    "marvelous",
    "mercurial",
    "merciful",
    "nebulous",
    "omniscient",
    "orderly",
    "peaceful",
    "polite",
    "popular",
    "powerful",
    "puzzled",
    "redolent",
    "resilient",
    "rogue",
    "rumbling",
    "salty",
    "sedate",
    "selective",
    "sincere",
    "skillful",
    "smiling",
    "spiffy",
    "stately",
    "suave",
    "sassy",
    "serious",
    "silent",
    "stylish",
    "tasteful",
    "thoughtful",
    "thundering",
    "traveling",
    "treasured",
    "trusting",
    "unequaled",
    "upbeat",
    "unique",
    "valuable",
    "vaunted",
    "victorious",
    "welcoming",
    "whimsical",
    "wise",
    "worried",
    "youthful",
    "zealous",
];

const NOUNS: &[&str] = &[
    "ant", "ape", "asp", "auk", "bass", "bat", "bear", "bee", "bird", "boar", "bug", "calf", "carp", "cat", "chimp",
    "cod", "colt", "conch", "cow", "crab", "crane", "croc", "crow", "cub", "deer", "doe", "dog", "dolphin", "donkey",
    "dove", "duck", "eel", "elk", "fawn", "finch", "fish", "flea", "fly", "foal", "fowl", "fox", "frog", "gnat", "gnu",
    "goat", "goose", "grouse", "grub", "gull", "hare", "hawk", "hen", "hog", "horse", "hound", "jay", "kit", "kite",
    "koi", "lamb", "lark", "loon", "lynx", "mare", "midge", "mink", "mole", "moose", "moth", "mouse", "mule", "newt",
    "owl", "ox", "panda", "penguin", "perch", "pig", "pug", "quail", "ram", "rat", "ray", "robin", "roo", "rook",
    "seal", "shad", "shark", "sheep", "shoat", "shrew", "shrike", "shrimp", "skink", "skunk", "sloth", "slug", "smelt",
    "snail", "snake", "snipe", "sow", "sponge", "squid", "squirrel", "stag", "steed", "stoat", "stork", "swan", "tern",
    "toad", "trout", "turtle", "vole", "wasp", "whale", "wolf", "worm", "wren", "yak", "zebra",
];

/// A run name in the style MLflow generates when none is given: `adjective-noun-123`.
pub fn generate_run_name() -> String {
    let r = random_u64();
    let adj = ADJECTIVES[(r % ADJECTIVES.len() as u64) as usize];
    let noun = NOUNS[((r >> 20) % NOUNS.len() as u64) as usize];
    let num = (r >> 40) % 1000;
    format!("{adj}-{noun}-{num}")
}

/// The OS user, as MLflow's client reports it in `mlflow.user` and `user_id`.
pub fn current_user() -> String {
    use std::sync::OnceLock;
    static USER: OnceLock<String> = OnceLock::new();
    USER.get_or_init(|| {
        // the order of Python's getpass.getuser(), then the password database via `id -un`
        for var in ["LOGNAME", "USER", "LNAME", "USERNAME"] {
            if let Ok(v) = std::env::var(var) {
                let v = v.trim().to_string();
                if !v.is_empty() {
                    return v;
                }
            }
        }
        std::process::Command::new("id")
            .arg("-un")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_string())
    })
    .clone()
}

/// The program that records the run (`mlflow.source.name`).
pub fn source_name() -> String {
    std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .or_else(|| std::env::args().next())
        .unwrap_or_else(|| "engine".to_string())
}

/// The commit the engine was built from, when it was built in a git checkout.
pub fn build_commit() -> Option<&'static str> {
    Some(env!("ENGINE_BUILD_COMMIT")).filter(|c| !c.is_empty())
}

/// Who and what recorded a run or model, as MLflow's Python client tags them: the user, the
/// program, and the commit of its code (here the engine's build), plus the engine's version.
pub fn source_tags() -> Vec<(String, String)> {
    let mut tags = vec![
        ("mlflow.user".to_string(), current_user()),
        ("mlflow.source.name".to_string(), source_name()),
        ("mlflow.source.type".to_string(), "LOCAL".to_string()),
        ("engine.version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ];
    if let Some(commit) = build_commit() {
        tags.push(("mlflow.source.git.commit".to_string(), commit.to_string()));
        tags.push(("engine.build.commit".to_string(), commit.to_string()));
    }
    tags
}

/// The system tags MLflow's Python client sets on a new run.
pub fn system_tags(run_name: &str) -> Vec<(String, String)> {
    let mut tags = source_tags();
    tags.push(("mlflow.runName".to_string(), run_name.to_string()));
    tags
}

/// `YYYY-MM-DD HH:MM:SS` in UTC for an epoch-milliseconds timestamp.
pub fn format_utc(ms: i64) -> String {
    crate::utc::date_time(ms.div_euclid(1000))
}

/// A short human duration: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn format_duration_ms(ms: i64) -> String {
    if ms < 0 {
        return "-".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms as f64 / 1000.0;
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    let total = ms / 1000;
    if total < 3600 {
        return format!("{}m{:02}s", total / 60, total % 60);
    }
    format!("{}h{:02}m", total / 3600, (total % 3600) / 60)
}

/// A metric value as a short string (`0.8712`, `1.234e-5`, `NaN`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let a = v.abs();
    if (1e-4..1e6).contains(&a) {
        let s = format!("{v:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.4e}")
    }
}

/// Truncates to at most `max` characters (not bytes), on a char boundary.
pub fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Percent-encodes a string for a URL query or path; `/` is kept when `keep_slash`.
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    const PATH: &AsciiSet = &UNRESERVED.remove(b'/');
    utf8_percent_encode(s, if keep_slash { PATH } else { UNRESERVED }).to_string()
}

/// A directory name for an experiment: its name with anything outside
/// `[A-Za-z0-9._-]` (and a leading dot) replaced by `_`, and a long name cut to a prefix and a
/// hash of the whole, so any name fits in a file name. The real name is kept in each run's meta.
pub fn experiment_dir_name(name: &str) -> String {
    super::paths::sanitize_component(name)
}

/// `uri` safe to print: the user-info part (`user:password@`) is replaced by `***`, so no error
/// or log line ever shows credentials. Everything that prints a URI goes through here.
pub fn redact_uri(uri: &str) -> String {
    let start = uri.find("://").map_or(0, |i| i + 3);
    // The last `@` counts, even past a `/`: a password may hold a stray `/` or `@`.
    match uri[start..].rfind('@') {
        Some(at) => format!("{}***{}", &uri[..start], &uri[start + at..]),
        None => uri.to_string(),
    }
}

/// A metric value as MLflow's JSON writes it: a number, or `"NaN"`, `"Infinity"`,
/// `"-Infinity"` where it is not finite.
pub fn metric_value_json(value: f64) -> serde_json::Value {
    if value.is_finite() {
        serde_json::json!(value)
    } else if value.is_nan() {
        serde_json::json!("NaN")
    } else if value > 0.0 {
        serde_json::json!("Infinity")
    } else {
        serde_json::json!("-Infinity")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_32_lowercase_hex_and_distinct() {
        let ids: Vec<String> = (0..200).map(|_| new_run_id()).collect();
        for id in &ids {
            assert!(is_run_id(id), "{id}");
        }
        let set: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        assert!(!is_run_id("ABCDEF0123456789abcdef0123456789"));
        assert!(!is_run_id("abc"));
    }

    #[test]
    fn run_names_look_like_mlflow_ones() {
        for _ in 0..100 {
            let name = generate_run_name();
            let parts: Vec<&str> = name.split('-').collect();
            assert_eq!(parts.len(), 3, "{name}");
            assert!(ADJECTIVES.contains(&parts[0]));
            assert!(NOUNS.contains(&parts[1]));
            let n: u32 = parts[2].parse().unwrap();
            assert!(n < 1000);
        }
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_795_674_917_972), "2026-11-26 06:35:17");
        assert_eq!(format_duration_ms(850), "850ms");
        assert_eq!(format_duration_ms(12_340), "12.3s");
        assert_eq!(format_duration_ms(245_000), "4m05s");
        assert_eq!(format_duration_ms(7_380_000), "2h03m");
    }

    #[test]
    fn values_and_strings() {
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1.5e-7), "1.5000e-7");
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("abc", 10), "abc");
        assert_eq!(percent_encode("a b/c&d", true), "a%20b/c%26d");
        assert_eq!(percent_encode("a/b", false), "a%2Fb");
        assert_eq!(experiment_dir_name("fashion-mnist"), "fashion-mnist");
        assert_eq!(experiment_dir_name("a/b c"), "a_b_c");
        assert_eq!(experiment_dir_name(".."), "_.");
        assert_eq!(experiment_dir_name(""), "_");
        // long names fit in a file name and stay distinct
        let (a, b) = ("x".repeat(300), format!("{}y", "x".repeat(299)));
        assert_eq!(experiment_dir_name(&a).len(), 64);
        assert_ne!(experiment_dir_name(&a), experiment_dir_name(&b));
    }

    #[test]
    fn uris_are_printed_without_credentials() {
        assert_eq!(redact_uri("ftp://user:SECRET@host/x"), "ftp://***@host/x");
        assert_eq!(redact_uri("http://u:p@ss/w@rd@host:5000"), "http://***@host:5000");
        assert_eq!(redact_uri("user:SECRET@host:5000"), "***@host:5000");
        assert_eq!(redact_uri("http://127.0.0.1:5000/base"), "http://127.0.0.1:5000/base");
        assert_eq!(redact_uri(""), "");
    }
}
