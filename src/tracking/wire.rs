//! MLflow's REST types as the client reads and writes them, and the server's limits on one
//! `runs/log-batch` request.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::Metric;

/// Most metrics one `runs/log-batch` request may carry.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// Most params one `runs/log-batch` request may carry.
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// Most tags one `runs/log-batch` request may carry.
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// Most entities (metrics + params + tags) one `runs/log-batch` request may carry.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// Longest param value the server keeps (longer ones are truncated before sending).
pub const MAX_PARAM_VALUE_CHARS: usize = 6000;
/// Longest tag value the server keeps (longer ones are truncated before sending).
pub const MAX_TAG_VALUE_CHARS: usize = 8000;

/// A `{"key","value"}` pair (params, tags).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// An experiment as `experiments/get` returns it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub creation_time: Option<i64>,
    pub last_update_time: Option<i64>,
    pub tags: Vec<KeyValue>,
}

/// `run.info`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    pub run_name: String,
    pub user_id: String,
    pub status: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: String,
}

/// `run.data`: the latest value of each metric, the params and the tags.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RunData {
    pub metrics: Vec<Metric>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

/// A run as `runs/get` returns it. `inputs`/`outputs` are kept raw for later users
/// (logged models live in `outputs.model_outputs`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Run {
    pub info: RunInfo,
    pub data: RunData,
    pub inputs: Value,
    pub outputs: Value,
}

impl Run {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.data.params.iter().find(|p| p.key == key).map(|p| p.value.as_str())
    }
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data.tags.iter().find(|p| p.key == key).map(|p| p.value.as_str())
    }
}

/// One entry of an artifact listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    pub file_size: Option<i64>,
}

/// Reads a metric value that MLflow may send as a number or as `"NaN"`/`"Infinity"`/`"-Infinity"`.
pub(crate) fn de_lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(f64),
        Str(String),
        Null(()),
    }
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(v) => Ok(v),
        NumOrStr::Null(()) => Ok(f64::NAN),
        NumOrStr::Str(s) => match s.trim() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" | "+Infinity" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(|_| serde::de::Error::custom(format!("bad metric value {other:?}"))),
        },
    }
}

/// Writes a metric value as MLflow accepts it: a number, or `"NaN"`/`"Infinity"`/`"-Infinity"`.
pub(crate) fn ser_lenient_f64<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else if v.is_nan() {
        s.serialize_str("NaN")
    } else if *v > 0.0 {
        s.serialize_str("Infinity")
    } else {
        s.serialize_str("-Infinity")
    }
}

/// The JSON body of one `runs/log-batch` request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub metrics: Vec<Metric>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

/// Largest request body `log-batch` gets from us; the server refuses bodies over 1 MB.
pub const MAX_BATCH_BYTES: usize = 900_000;

/// Splits items into runs of at most `max` items and about `max_bytes` (by `size`), never empty.
fn chunk_by<T: Clone>(items: &[T], max: usize, max_bytes: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut cur: Vec<T> = Vec::new();
    let mut bytes = 0;
    for it in items {
        let b = size(it);
        if !cur.is_empty() && (cur.len() == max || bytes + b > max_bytes) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += b;
        cur.push(it.clone());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits metrics, params and tags into `log-batch` requests within the server's limits
/// (1000 metrics, 100 params, 100 tags, 1000 entities and 1 MB per request). Params are sent
/// first, then tags, then metrics, each kind in its own requests, in order.
pub fn chunk_batches(metrics: &[Metric], params: &[KeyValue], tags: &[KeyValue]) -> Vec<Batch> {
    // JSON size of a pair: quotes, escapes (at most 6 bytes per char for \uXXXX) and punctuation.
    let kv_bytes = |p: &KeyValue| {
        32 + p.key.len()
            + p.value.len()
            + p.value.chars().filter(|c| c.is_control() || *c == '"' || *c == '\\').count() * 5
    };
    let metric_bytes = |m: &Metric| 96 + m.key.len() * 6;
    let mut out = Vec::new();
    for c in chunk_by(params, MAX_PARAMS_PER_BATCH, MAX_BATCH_BYTES, kv_bytes) {
        out.push(Batch { params: c, ..Batch::default() });
    }
    for c in chunk_by(tags, MAX_TAGS_PER_BATCH, MAX_BATCH_BYTES, kv_bytes) {
        out.push(Batch { tags: c, ..Batch::default() });
    }
    let max_metrics = MAX_METRICS_PER_BATCH.min(MAX_ENTITIES_PER_BATCH);
    for c in chunk_by(metrics, max_metrics, MAX_BATCH_BYTES, metric_bytes) {
        out.push(Batch { metrics: c, ..Batch::default() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: usize) -> Metric {
        Metric { key: format!("k{}", i % 3), value: i as f64, step: i as i64, timestamp_ms: 1, about: None }
    }

    fn kv(n: usize) -> Vec<KeyValue> {
        (0..n).map(|i| KeyValue { key: format!("p{i}"), value: "v".into() }).collect()
    }
    #[test]
    fn batches_respect_server_limits() {
        let metrics: Vec<Metric> = (0..2501).map(m).collect();
        let b = chunk_batches(&metrics, &kv(250), &kv(101));
        let sizes: Vec<(usize, usize, usize)> =
            b.iter().map(|b| (b.params.len(), b.tags.len(), b.metrics.len())).collect();
        assert_eq!(
            sizes,
            vec![(100, 0, 0), (100, 0, 0), (50, 0, 0), (0, 100, 0), (0, 1, 0), (0, 0, 1000), (0, 0, 1000), (0, 0, 501)]
        );
        for x in &b {
            assert!(x.params.len() + x.tags.len() + x.metrics.len() <= MAX_ENTITIES_PER_BATCH);
        }
        let all: Vec<Metric> = b.iter().flat_map(|x| x.metrics.clone()).collect();
        assert_eq!(all, metrics);
        assert!(chunk_batches(&[], &[], &[]).is_empty());

        // 100 params of 6000 three-byte chars would make an 1.8 MB request: split by size.
        let big: Vec<KeyValue> =
            (0..100).map(|i| KeyValue { key: format!("p{i}"), value: "é€".repeat(3000) }).collect();
        let b = chunk_batches(&[], &big, &[]);
        assert!(b.len() >= 2, "{}", b.len());
        for x in &b {
            let body = serde_json::to_vec(&x.params).unwrap();
            assert!(body.len() <= MAX_BATCH_BYTES, "{}", body.len());
        }
        assert_eq!(b.iter().map(|x| x.params.len()).sum::<usize>(), 100);
    }
}
