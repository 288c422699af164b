//! MLflow's scoring protocol for this engine's models, as `mlflow models serve` speaks it for the
//! model directory's `onnx` flavor: a `POST /invocations` body in one of MLflow's JSON formats
//! (`inputs`, `instances`, `dataframe_split`, `dataframe_records`, each optionally beside
//! `params`) or CSV becomes a batch of images, answered as [`super::answer`] writes it. A JSON
//! body whose `params` hold `"classes": true` (which MLflow ignores) asks for the class names
//! beside the predictions, as image bodies always do.
//!
//! Every value is checked: a row is one image of the model's input contract, its `C·H·W`
//! values in [0, 1] (`pixel / 255`, channel by channel, row by row; 784 for FashionMNIST). Where
//! MLflow answers a wrong value with NaN predictions (null, NaN, an overflowing
//! number) or silently predicts from raw 0-255 pixels, this answers 400 and says which value.

use std::collections::HashMap;

use super::json::{JsonError, Kind, Reader};
use crate::nn::ImageShape;

/// The JSON fields that hold a request's data; a body has exactly one of them.
pub const FORMATS: [&str; 4] = ["inputs", "instances", "dataframe_split", "dataframe_records"];

/// A request's images: `rows` rows of one image's values in [0, 1], row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Images {
    pub rows: usize,
    pub pixels: Vec<f32>,
    /// Whether the answer names the classes beside MLflow's predictions.
    pub with_classes: bool,
}

/// Why a request's body cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The body is not a valid request (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The Content-Type is neither JSON, CSV nor an image (HTTP 415).
    #[error("{0}")]
    UnsupportedMediaType(String),
}

impl From<JsonError> for InputError {
    fn from(error: JsonError) -> Self {
        InputError::BadRequest(format!(
            "Invalid input. Ensure that input is a valid JSON formatted string. Error: {error}"
        ))
    }
}

fn bad(message: impl Into<String>) -> InputError {
    InputError::BadRequest(message.into())
}

/// Reads a request body sent with `content_type`, whose rows are images of `image`'s shape.
pub fn parse(content_type: Option<&str>, body: &[u8], image: ImageShape) -> Result<Images, InputError> {
    let media = content_type.map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/json") => parse_json(body, image),
        Some("text/csv") => parse_csv(body, image),
        Some(other) => Err(InputError::UnsupportedMediaType(format!(
            "This predictor only supports the following content types: application/json, text/csv, \
             image/png, image/jpeg, multipart/form-data (of images). Got '{other}'."
        ))),
        None => Err(InputError::UnsupportedMediaType(
            "No Content-Type: send the body as application/json, text/csv, image/png, image/jpeg or \
             multipart/form-data."
                .into(),
        )),
    }
}

fn fields_message() -> String {
    let names: Vec<String> = FORMATS.iter().map(|f| format!("'{f}'")).collect();
    format!("The input must be a JSON dictionary with exactly one of the input fields {}", names.join(", "))
}

/// A JSON body: an object with one format field and optionally `params` (ignored: the model
/// takes none).
fn parse_json(body: &[u8], image: ImageShape) -> Result<Images, InputError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(format!("Invalid input: the body is empty. {}.", fields_message())));
    }
    let mut reader = Reader::new(body);
    let kind = reader.peek_kind()?;
    if kind != Kind::Object {
        return Err(bad(format!("Invalid input. {}. Received {}.", fields_message(), kind.described())));
    }
    let mut images: Option<(String, Images)> = None;
    let mut with_classes = false;
    reader.object(|r, key| {
        if key == "params" {
            with_classes = classes_asked(r)?;
            return Ok(());
        }
        if !FORMATS.contains(&key.as_ref()) {
            return Err(bad(format!("{} (and optionally 'params'). Received the field '{key}'.", fields_message())));
        }
        if let Some((first, _)) = &images {
            return Err(bad(format!("{}. Received both '{first}' and '{key}'.", fields_message())));
        }
        let parsed = match key.as_ref() {
            "dataframe_split" => dataframe_split(r, image)?,
            "dataframe_records" => dataframe_records(r, image)?,
            _ => tensor_rows(r, &key, image)?,
        };
        images = Some((key.into_owned(), parsed));
        Ok(())
    })?;
    reader.finish()?;
    let (field, images) = images.ok_or_else(|| bad(format!("{}. Received none.", fields_message())))?;
    nonempty(Images { with_classes, ..images }, &format!("'{field}'"), image)
}

/// Whether `params` asks for the class names (`"classes": true`). The model takes no other
/// parameter: the rest is read and ignored, as MLflow ignores parameters a model does not take.
fn classes_asked(r: &mut Reader) -> Result<bool, InputError> {
    if r.peek_kind()? != Kind::Object {
        r.skip_value()?;
        return Ok(false);
    }
    let mut asked = false;
    r.object(|r, key| {
        if key == "classes"
            && let Some(value) = r.boolean()?
        {
            asked = value;
            return Ok(());
        }
        r.skip_value()
    })?;
    Ok(asked)
}

fn nonempty(images: Images, what: &str, image: ImageShape) -> Result<Images, InputError> {
    if images.rows == 0 {
        let values = image.pixels();
        return Err(bad(format!("{what} has no rows: send at least one image of {values} values")));
    }
    Ok(images)
}

/// `inputs` or `instances`: a list of rows, `[N, C·H·W]`.
fn tensor_rows(r: &mut Reader, field: &str, image: ImageShape) -> Result<Images, InputError> {
    let values = image.pixels();
    let shape = format!("'{field}' must be a list of rows, one image of {values} values each ([N, {values}])");
    match r.peek_kind()? {
        Kind::Array => {}
        Kind::Object => {
            return Err(bad(format!("{shape}; got an object, but this model has a single unnamed input")));
        }
        kind => return Err(bad(format!("{shape}; got {}", kind.described()))),
    }
    let mut images = Images::default();
    r.array(|r, row| match r.peek_kind()? {
        Kind::Array => pixel_list(r, row, &mut images, image),
        Kind::Number => Err(bad(format!("{shape}; got a list of numbers (wrap one image in a list: [[...]])"))),
        kind => Err(bad(format!("{shape}; row {row} is {}", kind.described()))),
    })?;
    Ok(images)
}

/// One image: a list of exactly `image.pixels()` numbers in [0, 1], appended to `images`.
fn pixel_list(r: &mut Reader, row: usize, images: &mut Images, image: ImageShape) -> Result<(), InputError> {
    let values = image.pixels();
    let start = images.pixels.len();
    let mut count = 0;
    r.array(|r, column| {
        let value = pixel(r, row, column)?;
        count += 1;
        if count <= values {
            images.pixels.push(value);
        }
        Ok::<(), InputError>(())
    })?;
    if count != values {
        images.pixels.truncate(start);
        return Err(width_error(row, count, image));
    }
    images.rows += 1;
    Ok(())
}

fn width_error(row: usize, count: usize, image: ImageShape) -> InputError {
    let ImageShape { channels, height, width } = image;
    bad(format!(
        "row {row} has {count} values: the model takes {} per row, one {channels}x{height}x{width} image \
         (channel by channel, row by row, each pixel / 255)",
        image.pixels()
    ))
}

/// One pixel: a number in [0, 1], as `f32` (rounded from the nearest `f64`, as MLflow casts).
fn pixel(r: &mut Reader, row: usize, column: usize) -> Result<f32, InputError> {
    match r.number_or_kind()? {
        Ok(value) => checked_pixel(value as f32, row, column),
        Err(kind) => {
            Err(bad(format!("row {row}, column {column} is {}: pixels are numbers in [0, 1]", kind.described())))
        }
    }
}

fn checked_pixel(value: f32, row: usize, column: usize) -> Result<f32, InputError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(bad(format!(
            "row {row}, column {column} is {value}: pixels are in [0, 1] (the 0-255 value divided by 255)"
        )))
    }
}

/// A row of a table (`dataframe_split`, `dataframe_records`, CSV): one number per value, or
/// one cell holding the image as a list (pandas keeps an array-valued column that way).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cells {
    Numbers,
    OneList,
}

/// `dataframe_split`: pandas' `orient="split"`, `{"columns": [...], "data": [[...]], "index": [...]}`.
fn dataframe_split(r: &mut Reader, image: ImageShape) -> Result<Images, InputError> {
    let shape = "'dataframe_split' must be an object with 'data' (a list of rows) and optionally 'columns' and 'index'";
    if r.peek_kind()? != Kind::Object {
        return Err(bad(shape));
    }
    let (mut columns, mut index, mut data) = (None, None, None);
    r.object(|r, key| {
        match key.as_ref() {
            "columns" => columns = Some(list_length(r, "'dataframe_split' columns")?),
            "index" => index = Some(list_length(r, "'dataframe_split' index")?),
            "data" => data = Some(split_data(r, image)?),
            other => return Err(bad(format!("{shape}; got the field '{other}'"))),
        }
        Ok(())
    })?;
    let (images, cells) = data.ok_or_else(|| bad(format!("{shape}; it has no 'data'")))?;
    let width = match cells {
        Some(Cells::OneList) => 1,
        _ => image.pixels(),
    };
    if let Some(n) = columns.filter(|&n| n != width && images.rows > 0) {
        return Err(bad(format!("'dataframe_split' names {n} columns, but its rows have {width}")));
    }
    if let Some(n) = index.filter(|&n| n != images.rows) {
        return Err(bad(format!("'dataframe_split' has {n} index labels for {} rows", images.rows)));
    }
    Ok(images)
}

/// The length of a list of names or labels (strings or numbers).
fn list_length(r: &mut Reader, what: &str) -> Result<usize, InputError> {
    if r.peek_kind()? != Kind::Array {
        return Err(bad(format!("{what} must be a list")));
    }
    let mut n = 0;
    r.array(|r, _| {
        n += 1;
        match r.peek_kind()? {
            Kind::String | Kind::Number => r.skip_value().map_err(InputError::from),
            kind => Err(bad(format!("{what} must hold strings or numbers, not {}", kind.described()))),
        }
    })?;
    Ok(n)
}

/// The rows of `dataframe_split`, all laid out the same way.
fn split_data(r: &mut Reader, image: ImageShape) -> Result<(Images, Option<Cells>), InputError> {
    if r.peek_kind()? != Kind::Array {
        return Err(bad("'dataframe_split' data must be a list of rows"));
    }
    let mut images = Images::default();
    let mut layout = None;
    r.array(|r, row| {
        if r.peek_kind()? != Kind::Array {
            return Err(bad(format!("'dataframe_split' data: row {row} is not a list")));
        }
        let cells = table_row(r, row, &mut images, image)?;
        if layout.is_some_and(|l| l != cells) {
            return Err(bad(format!("'dataframe_split' data: row {row} is laid out unlike row 0")));
        }
        layout = Some(cells);
        Ok(())
    })?;
    Ok((images, layout))
}

/// A table row given as a JSON list: numbers, or one list of numbers.
fn table_row(r: &mut Reader, row: usize, images: &mut Images, image: ImageShape) -> Result<Cells, InputError> {
    let values = image.pixels();
    let start = images.pixels.len();
    let (mut count, mut nested) = (0, false);
    r.array(|r, cell| {
        if cell == 0 && r.peek_kind()? == Kind::Array {
            nested = true;
            return pixel_list(r, row, images, image);
        }
        if nested {
            return Err(bad(format!("row {row}: a cell holding an image must be the row's only cell")));
        }
        let value = pixel(r, row, cell)?;
        count += 1;
        if count <= values {
            images.pixels.push(value);
        }
        Ok(())
    })?;
    if nested {
        return Ok(Cells::OneList);
    }
    if count != values {
        images.pixels.truncate(start);
        return Err(width_error(row, count, image));
    }
    images.rows += 1;
    Ok(Cells::Numbers)
}

/// `dataframe_records`: pandas' `orient="records"`, one `{column: value}` object per row. Like
/// pandas, the first row's keys give the column order and later rows are matched by name.
fn dataframe_records(r: &mut Reader, image: ImageShape) -> Result<Images, InputError> {
    let shape = "'dataframe_records' must be a list of objects, one {column: value} per row";
    if r.peek_kind()? != Kind::Array {
        return Err(bad(shape));
    }
    let mut images = Images::default();
    let mut columns: HashMap<String, usize> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut layout = Cells::Numbers;
    r.array(|r, row| {
        if r.peek_kind()? != Kind::Object {
            return Err(bad(format!("{shape}; row {row} is not an object")));
        }
        match (row, layout) {
            (0, _) => layout = first_record(r, &mut images, &mut columns, &mut names, image)?,
            (_, Cells::OneList) => image_record(r, row, &names[0], &mut images, image)?,
            (_, Cells::Numbers) => number_record(r, row, &columns, &names, &mut images)?,
        }
        Ok(())
    })?;
    Ok(images)
}

/// The first record: its keys become the columns.
fn first_record(
    r: &mut Reader,
    images: &mut Images,
    columns: &mut HashMap<String, usize>,
    names: &mut Vec<String>,
    image: ImageShape,
) -> Result<Cells, InputError> {
    let values = image.pixels();
    let start = images.pixels.len();
    let mut nested = false;
    r.object(|r, key| {
        if columns.insert(key.to_string(), names.len()).is_some() {
            return Err(bad(format!("row 0 has the column '{key}' twice")));
        }
        names.push(key.into_owned());
        if names.len() == 1 && r.peek_kind()? == Kind::Array {
            nested = true;
            return image_cell(r, 0, images, image);
        }
        if nested {
            return Err(bad("row 0: a column holding an image must be the only column"));
        }
        let value = pixel(r, 0, names.len() - 1)?;
        if names.len() <= values {
            images.pixels.push(value);
        }
        Ok(())
    })?;
    if nested {
        return Ok(Cells::OneList);
    }
    if names.len() != values {
        images.pixels.truncate(start);
        return Err(width_error(0, names.len(), image));
    }
    images.rows += 1;
    Ok(Cells::Numbers)
}

/// A later record whose one column holds the image.
fn image_record(
    r: &mut Reader,
    row: usize,
    name: &str,
    images: &mut Images,
    image: ImageShape,
) -> Result<(), InputError> {
    let before = images.rows;
    r.object(|r, key| {
        if key != name {
            return Err(bad(format!("row {row} has the column '{key}', which row 0 lacks")));
        }
        if images.rows > before {
            return Err(bad(format!("row {row} has the column '{key}' twice")));
        }
        image_cell(r, row, images, image)
    })?;
    if images.rows == before {
        return Err(bad(format!("row {row} lacks the column '{name}'")));
    }
    Ok(())
}

/// A later record of one number per pixel, matched to the columns by name.
fn number_record(
    r: &mut Reader,
    row: usize,
    columns: &HashMap<String, usize>,
    names: &[String],
    images: &mut Images,
) -> Result<(), InputError> {
    let mut values: Vec<Option<f32>> = vec![None; names.len()];
    r.object(|r, key| {
        let Some(&column) = columns.get(key.as_ref()) else {
            return Err(bad(format!("row {row} has the column '{key}', which row 0 lacks")));
        };
        if values[column].is_some() {
            return Err(bad(format!("row {row} has the column '{key}' twice")));
        }
        values[column] = Some(pixel(r, row, column)?);
        Ok(())
    })?;
    if let Some(missing) = values.iter().position(Option::is_none) {
        return Err(bad(format!("row {row} lacks the column '{}'", names[missing])));
    }
    images.pixels.extend(values.into_iter().flatten());
    images.rows += 1;
    Ok(())
}

/// A cell that holds a whole image: a list of numbers.
fn image_cell(r: &mut Reader, row: usize, images: &mut Images, image: ImageShape) -> Result<(), InputError> {
    match r.peek_kind()? {
        Kind::Array => pixel_list(r, row, images, image),
        kind => Err(bad(format!("row {row}: the image column holds {}, not a list of pixels", kind.described()))),
    }
}

/// CSV as `pandas.DataFrame.to_csv(index=False)` writes it: a header line and one line of numbers
/// per image. A first line that is not pixel values is the header (pandas would
/// take any first line as one, and lose an image sent without a header).
fn parse_csv(body: &[u8], image: ImageShape) -> Result<Images, InputError> {
    let values = image.pixels();
    let text = std::str::from_utf8(body).map_err(|_| bad("the CSV body is not valid UTF-8"))?;
    let mut images = Images::default();
    let mut first = true;
    for (line_index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line_number = line_index + 1;
        let fields = || line.split(',').map(|f| f.trim().trim_matches('"'));
        // pandas' default column names, 0 to N-1, are numbers too, but not all of them pixels.
        let is_pixel = |f: &str| f.parse::<f64>().is_ok_and(|v| (0.0..=1.0).contains(&v));
        if std::mem::take(&mut first) && !fields().all(is_pixel) {
            let n = fields().count();
            if n != values {
                return Err(bad(format!("the CSV header names {n} columns: it needs {values}, one per pixel")));
            }
            continue;
        }
        let row = images.rows;
        let mut count = 0;
        for (column, field) in fields().enumerate() {
            let value = field.parse::<f64>().map_err(|_| {
                bad(format!("CSV line {line_number}, column {column} is '{field}': pixels are numbers in [0, 1]"))
            })?;
            let value = checked_pixel(value as f32, row, column)?;
            count += 1;
            if count <= values {
                images.pixels.push(value);
            }
        }
        if count != values {
            return Err(bad(format!(
                "CSV line {line_number} has {count} values: the model takes {values} per line, one image"
            )));
        }
        images.rows += 1;
    }
    nonempty(images, "the CSV body (after its header line)", image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_PIXELS;

    const FASHION: ImageShape = ImageShape::FASHION_MNIST;

    fn row(value: f32) -> Vec<f32> {
        vec![value; IMAGE_PIXELS]
    }

    fn json(value: serde_json::Value) -> Result<Images, InputError> {
        parse(Some("application/json"), value.to_string().as_bytes(), FASHION)
    }

    fn message(result: Result<Images, InputError>) -> String {
        match result {
            Err(InputError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn every_format_gives_the_same_images() {
        let (a, b) = (row(0.25), row(0.5));
        let expected = Images { rows: 2, pixels: [a.clone(), b.clone()].concat(), with_classes: false };
        let columns: Vec<String> = (0..IMAGE_PIXELS).map(|i| i.to_string()).collect();
        let record = |r: &[f32]| -> serde_json::Map<String, serde_json::Value> {
            columns.iter().zip(r).map(|(c, v)| (c.clone(), serde_json::json!(v))).collect()
        };
        let bodies = [
            serde_json::json!({"inputs": [a, b]}),
            serde_json::json!({"instances": [a, b], "params": {"ignored": true}}),
            serde_json::json!({"dataframe_split": {"columns": columns, "data": [a, b]}}),
            serde_json::json!({"dataframe_split": {"index": [3, 4], "data": [a, b]}}),
            serde_json::json!({"dataframe_split": {"columns": ["image"], "data": [[a], [b]]}}),
            serde_json::json!({"dataframe_records": [record(&a), record(&b)]}),
            serde_json::json!({"dataframe_records": [{"image": a}, {"image": b}]}),
        ];
        for body in bodies {
            assert_eq!(json(body.clone()).unwrap(), expected, "{}", &body.to_string()[..80]);
        }
        // Later records are matched by column name, as pandas does.
        let mut reversed: Vec<(String, serde_json::Value)> = record(&b).into_iter().collect();
        reversed.reverse();
        let reversed: serde_json::Map<_, _> = reversed.into_iter().collect();
        let body = serde_json::json!({"dataframe_records": [record(&a), reversed]});
        assert_eq!(json(body).unwrap(), expected);

        let line = |r: &[f32]| r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
        let csv = format!("{}\n{}\r\n{}\n\n", columns.join(","), line(&a), line(&b));
        assert_eq!(parse(Some("text/csv; charset=utf-8"), csv.as_bytes(), FASHION).unwrap(), expected);
        let headless = format!("{}\n{}\n", line(&a), line(&b));
        assert_eq!(parse(Some("text/csv"), headless.as_bytes(), FASHION).unwrap(), expected);
    }

    #[test]
    fn wrong_requests_say_what_is_wrong() {
        let a = row(0.5);
        let long = [&a[..], &[0.5]].concat();
        let raw = [&[37.0][..], &a[1..]].concat();
        let negative = [&a[..5], &[-0.1][..], &a[6..]].concat();
        let cases: Vec<(Result<Images, InputError>, &str)> = vec![
            (parse(Some("application/json"), b"", FASHION), "empty"),
            (parse(Some("application/json"), b"{\"inputs\": [[0.1, 0.2,", FASHION), "line 1 column 23"),
            (parse(Some("application/json"), b"{\"inputs\": [[NaN]]}", FASHION), "NaN and Infinity are not JSON"),
            (parse(Some("application/json"), b"{\"inputs\": [[1e999]]}", FASHION), "number out of range"),
            (parse(Some("application/json"), b"{\"inputs\": [[-]]}", FASHION), "invalid number"),
            (json(serde_json::json!({"inputs": [&a[..783]]})), "row 0 has 783 values"),
            (json(serde_json::json!({"inputs": [a, long]})), "row 1 has 785 values"),
            (json(serde_json::json!({"inputs": a})), "wrap one image"),
            (json(serde_json::json!({"inputs": []})), "no rows"),
            (json(serde_json::json!({"inputs": {"pixels": [a]}})), "single unnamed input"),
            (json(serde_json::json!({"inputs": [[a]]})), "is a list"),
            (json(serde_json::json!({"inputs": [[null]]})), "null"),
            (json(serde_json::json!({"inputs": [["a"]]})), "a string"),
            (json(serde_json::json!({"inputs": [[true]]})), "a boolean"),
            (
                parse(
                    Some("application/json"),
                    format!("{{\"inputs\": [[1e39{}]]}}", ",0".repeat(783)).as_bytes(),
                    FASHION,
                ),
                "is inf",
            ),
            (json(serde_json::json!({"inputs": [raw]})), "row 0, column 0 is 37"),
            (json(serde_json::json!({"inputs": [negative]})), "column 5 is -0.1"),
            (json(serde_json::json!({"foo": [a]})), "'foo'"),
            (json(serde_json::json!({"inputs": [a], "instances": [a]})), "both 'inputs' and 'instances'"),
            (json(serde_json::json!([a])), "Received a list"),
            (json(serde_json::json!({})), "Received none"),
            (json(serde_json::json!({"dataframe_split": {"columns": ["a"], "data": [a]}})), "names 1 columns"),
            (json(serde_json::json!({"dataframe_split": {"index": [1, 2], "data": [a]}})), "2 index labels"),
            (json(serde_json::json!({"dataframe_split": {"rows": [a]}})), "'rows'"),
            (json(serde_json::json!({"dataframe_records": [{"a": 0.5}]})), "row 0 has 1 values"),
            (parse(Some("application/json"), b"{\"inputs\": []} x", FASHION), "trailing"),
            (parse(Some("text/csv"), b"", FASHION), "no rows"),
            (parse(Some("text/csv"), b"0.5,0.5\n", FASHION), "2 values"),
            (parse(Some("text/csv"), format!("{}x", "0,".repeat(783)).as_bytes(), FASHION), "header"),
        ];
        for (result, expected) in cases {
            let text = message(result);
            assert!(text.contains(expected), "{text:?} should mention {expected:?}");
        }
        let ragged = serde_json::json!({"dataframe_records": [{"0": 0.5}, {"1": 0.5}]});
        assert!(message(json(ragged)).contains("row 0 has 1 values"));
        for content_type in [None, Some("text/plain")] {
            assert!(matches!(parse(content_type, b"{}", FASHION), Err(InputError::UnsupportedMediaType(_))));
        }
    }

    #[test]
    fn rows_follow_the_model_s_image_and_params_may_ask_for_the_classes() {
        let colour = ImageShape { channels: 3, height: 4, width: 5 };
        let body = |rows: serde_json::Value, params: serde_json::Value| {
            parse(
                Some("application/json"),
                serde_json::json!({"inputs": rows, "params": params}).to_string().as_bytes(),
                colour,
            )
        };
        let images =
            body(serde_json::json!([vec![0.5; 60], vec![0.25; 60]]), serde_json::json!({"classes": true})).unwrap();
        assert_eq!((images.rows, images.pixels.len(), images.with_classes), (2, 120, true));
        let images =
            body(serde_json::json!([vec![0.5; 60]]), serde_json::json!({"classes": "yes", "other": [1]})).unwrap();
        assert!(!images.with_classes, "only `true` asks for them");
        let text = message(body(serde_json::json!([vec![0.5; 784]]), serde_json::json!(null)));
        assert!(text.contains("row 0 has 784 values: the model takes 60 per row, one 3x4x5 image"), "{text}");
        let csv = parse(Some("text/csv"), format!("{}\n", ["0.5"; 59].join(",")).as_bytes(), colour);
        assert!(message(csv).contains("59 values: the model takes 60"));
    }
}
