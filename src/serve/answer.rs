//! The answer to a scoring request: probabilities become
//! `{"predictions": {"probabilities": [[p0, ..., p9], ...]}}`, byte for byte as `mlflow models
//! serve` writes it, and `"classes": [...]` follows when the request asked for the names.

use crate::model::onnx::OUTPUT_NAME;

/// The answer for `probabilities` (`[rows, class_names.len()]`), with the class names beside
/// MLflow's predictions when `with_classes`.
pub fn write_answer(probabilities: &[f32], class_names: &[String], with_classes: bool) -> Vec<u8> {
    let rows = probabilities.len() / class_names.len().max(1);
    let mut out = Vec::with_capacity(40 + rows * class_names.len() * 24);
    write_predictions(probabilities, class_names.len(), &mut out);
    if with_classes {
        // `{"predictions": ..., "classes": [...]}`: the names beside MLflow's answer.
        out.pop();
        out.extend_from_slice(b", \"classes\": ");
        let names: Vec<String> = class_names.iter().map(|c| serde_json::Value::from(c.as_str()).to_string()).collect();
        out.extend_from_slice(format!("[{}]}}", names.join(", ")).as_bytes());
    }
    out
}

/// Writes MLflow's answer for a model with the one output `probabilities`, with Python's
/// separators and float formatting: byte for byte the layout `mlflow models serve` writes.
pub fn write_predictions(probabilities: &[f32], classes: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"predictions\": {\"");
    out.extend_from_slice(OUTPUT_NAME.as_bytes());
    out.extend_from_slice(b"\": [");
    for (i, row) in probabilities.chunks(classes.max(1)).enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.push(b'[');
        for (j, &p) in row.iter().enumerate() {
            if j > 0 {
                out.extend_from_slice(b", ");
            }
            write_python_float(f64::from(p), out);
        }
        out.push(b']');
    }
    out.extend_from_slice(b"]}}");
}

/// `repr(float)` as Python writes it: the shortest digits that read back to the same value, in
/// positional notation from 1e-4 up to 1e16 (`0.0001`, `5.0`) and scientific notation outside it
/// (`1e-05`, `2.5e+16`). Non-finite values are written as Python does (`NaN`, `Infinity`).
pub fn write_python_float(value: f64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    if !value.is_finite() {
        let word: &[u8] = if value.is_nan() {
            b"NaN"
        } else if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        };
        out.extend_from_slice(word);
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "7.542462646961212e-2", "5e-8", "0e0".
    let mut buffer = [0u8; 40];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    if write!(cursor, "{value:e}").is_err() {
        return;
    }
    let length = cursor.position() as usize;
    let text = &buffer[..length];
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (&text[..e], std::str::from_utf8(&text[e + 1..]).ok().and_then(|s| s.parse::<i32>().ok())),
        None => (text, Some(0)),
    };
    let exponent = exponent.unwrap_or(0);
    let (sign, mantissa) = match mantissa.split_first() {
        Some((b'-', rest)) => (&b"-"[..], rest),
        _ => (&b""[..], mantissa),
    };
    let digits: Vec<u8> = mantissa.iter().copied().filter(|&b| b != b'.').collect();
    out.extend_from_slice(sign);
    if (-4..16).contains(&exponent) {
        if exponent < 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exponent - 1) as usize));
            out.extend_from_slice(&digits);
        } else {
            let integer = exponent as usize + 1;
            if digits.len() <= integer {
                out.extend_from_slice(&digits);
                out.extend(std::iter::repeat_n(b'0', integer - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits[..integer]);
                out.push(b'.');
                out.extend_from_slice(&digits[integer..]);
            }
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_are_written_as_mlflow_writes_them() {
        let mut out = Vec::new();
        write_predictions(&[0.25, 0.75, 1.0, 0.0], 2, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"predictions": {"probabilities": [[0.25, 0.75], [1.0, 0.0]]}}"#
        );
    }

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        let cases: [(f64, &str); 14] = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (f64::from(0.075_424_63_f32), "0.07542462646961212"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (3.2e-8, "3.2e-08"),
            (123.25, "123.25"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (2.5e17, "2.5e+17"),
            (1.5e-300, "1.5e-300"),
            (f64::NAN, "NaN"),
        ];
        for (value, python) in cases {
            let mut out = Vec::new();
            write_python_float(value, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), python, "{value:e}");
        }
    }

    #[test]
    fn class_names_follow_the_predictions_when_asked() {
        let names = ["a".to_string(), "b\"c".to_string()];
        let answer = String::from_utf8(write_answer(&[0.25, 0.75], &names, true)).unwrap();
        assert_eq!(answer, r#"{"predictions": {"probabilities": [[0.25, 0.75]]}, "classes": ["a", "b\"c"]}"#);
        let plain = String::from_utf8(write_answer(&[0.25, 0.75], &names, false)).unwrap();
        assert_eq!(plain, r#"{"predictions": {"probabilities": [[0.25, 0.75]]}}"#);
    }
}
