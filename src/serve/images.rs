//! Image request bodies: one encoded image (`image/png`, `image/jpeg`, also BMP and WebP) or a
//! `multipart/form-data` body whose every part is one. Each is decoded under limits and prepared
//! by the model's input contract with the functions training used (resized, made gray or RGB),
//! so a served image meets the network as its training images did.

use super::protocol::{Images, InputError};
use crate::data::InputContract;
use crate::data::decode::{DecodeLimits, decode_for_contract};

/// The media types read as one encoded image.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/bmp", "image/webp"];

/// Most images in one multipart body: each becomes a full-size row, whatever its encoded size.
pub const MAX_PARTS: usize = 1024;

/// Limits for a request's image: a side no photograph exceeds, and 64 MiB decoded, so that
/// concurrent requests cannot exhaust the machine.
const LIMITS: DecodeLimits = DecodeLimits { max_side: 10_000, max_alloc: 64 << 20 };

/// Whether a Content-Type names a body this module reads.
pub fn is_image_body(content_type: Option<&str>) -> bool {
    let media = media_type(content_type.unwrap_or_default());
    IMAGE_TYPES.contains(&media.as_str()) || media == "multipart/form-data"
}

fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The images of an image body, as rows of `contract`'s pixels in [0, 1], answered with the
/// class names.
pub fn parse(content_type: &str, body: &[u8], contract: &InputContract) -> Result<Images, InputError> {
    let mut images = Images { with_classes: true, ..Images::default() };
    if media_type(content_type) == "multipart/form-data" {
        let boundary = boundary(content_type)?;
        let parts = parts(body, &boundary)?;
        if parts.is_empty() {
            return Err(bad("the multipart body has no parts: send one image per part".into()));
        }
        if parts.len() > MAX_PARTS {
            return Err(bad(format!("the multipart body has {} parts; at most {MAX_PARTS} images", parts.len())));
        }
        for (i, part) in parts.iter().enumerate() {
            let name = part.name.as_deref().map_or_else(|| format!("part {}", i + 1), |n| format!("part {n:?}"));
            push(&mut images, part.data, contract, &name)?;
        }
    } else {
        push(&mut images, body, contract, "the image")?;
    }
    Ok(images)
}

fn push(images: &mut Images, bytes: &[u8], contract: &InputContract, name: &str) -> Result<(), InputError> {
    let pixels = decode_for_contract(bytes, contract, LIMITS).map_err(|problem| bad(format!("{name}: {problem}")))?;
    // `byte / 255`, as the JSON formats' pixels are: the same image gives the same bits.
    images.pixels.extend(pixels.iter().map(|&b| f32::from(b) / 255.0));
    images.rows += 1;
    Ok(())
}

fn bad(message: String) -> InputError {
    InputError::BadRequest(message)
}

/// The `boundary` parameter of a multipart Content-Type.
fn boundary(content_type: &str) -> Result<String, InputError> {
    let found = content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_string())
    });
    match found {
        Some(b) if (1..=70).contains(&b.len()) => Ok(b),
        _ => Err(bad("the multipart/form-data Content-Type has no boundary (1 to 70 characters)".into())),
    }
}

/// One part of a multipart body: its form field name, if any, and its bytes.
struct Part<'a> {
    name: Option<String>,
    data: &'a [u8],
}

/// The parts of a multipart body (RFC 7578): each between `--boundary` lines, headers first.
fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, InputError> {
    let delimiter = format!("--{boundary}").into_bytes();
    let truncated = || bad("the multipart body is truncated: it does not end with its closing boundary".into());
    let mut rest = match find(body, &delimiter) {
        Some(start) => &body[start + delimiter.len()..],
        None => return Err(bad("the multipart body does not contain its boundary".into())),
    };
    let next_delimiter = [b"\r\n".as_slice(), &delimiter].concat();
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest.strip_prefix(b"\r\n").ok_or_else(truncated)?;
        let end = find(rest, &next_delimiter).ok_or_else(truncated)?;
        let (part, after) = (&rest[..end], &rest[end + next_delimiter.len()..]);
        let split = find(part, b"\r\n\r\n")
            .ok_or_else(|| bad("a multipart part has no blank line after its headers".into()))?;
        let headers = String::from_utf8_lossy(&part[..split]);
        parts.push(Part { name: field_name(&headers), data: &part[split + 4..] });
        rest = after;
    }
}

/// The `name` of a part's Content-Disposition header.
fn field_name(headers: &str) -> Option<String> {
    let disposition = headers.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    disposition.split(';').find_map(|param| {
        let (key, value) = param.split_once('=')?;
        (key.trim() == "name").then(|| value.trim().trim_matches('"').to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parts_are_split_at_their_boundaries() {
        let body = b"preamble\r\n--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\r\nA\r\n\r\n--xyz\r\n\
                     Content-Disposition: form-data; name=\"b\"; filename=\"b.png\"\r\n\r\nB--x\r\n--xyz--\r\n";
        let parts = parts(body, "xyz").unwrap();
        let got: Vec<_> = parts.iter().map(|p| (p.name.clone(), p.data.to_vec())).collect();
        assert_eq!(got, [(Some("a".into()), b"\r\nA\r\n".to_vec()), (Some("b".into()), b"B--x".to_vec())]);
    }

    #[test]
    fn a_multipart_body_without_its_end_is_truncated() {
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nAB";
        let Err(InputError::BadRequest(message)) = parts(body, "xyz") else { panic!("accepted") };
        assert!(message.contains("truncated"), "{message}");
        assert!(boundary("multipart/form-data").is_err());
        assert_eq!(boundary("multipart/form-data; boundary=\"q r\"").unwrap(), "q r");
    }
}
