//! The decoded image folder on disk, so a second run starts as fast as the IDX path. The key is
//! a SHA-256 of the decode options and, for every file, its relative path, set, label, length
//! and modification time: any change to a file or an option is another key. One file per key:
//! a magic, a JSON header (contract, counts, skipped files), the labels and pixels of each set,
//! and a SHA-256 of all that as a trailer. A file that does not check out is ignored (and
//! rebuilt by the caller); a new one is written atomically, so readers never see half of it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::listing::Listing;
use super::{Dataset, InputContract, Skipped};

const MAGIC: &[u8; 8] = b"ENGDSET1";
const FILE_NAME: &str = "decoded.bin";

/// The decoded sets as the cache keeps them.
#[derive(Debug, Clone)]
pub struct Cached {
    pub train: Dataset,
    pub test: Dataset,
    pub contract: InputContract,
    pub skipped: Vec<Skipped>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    contract: InputContract,
    train: usize,
    test: usize,
    skipped: Vec<Skipped>,
}

/// `<root>/<key>/decoded.bin`, where the key digests `options` (any serialisable value that
/// changes the decoded bytes) and every listed file.
pub(crate) fn path(root: &Path, dir: &Path, listing: &Listing, options: &impl Serialize) -> PathBuf {
    let mut hash = Sha256::new();
    hash.update(b"engine image folder v1\n");
    hash.update(serde_json::to_vec(options).unwrap_or_default());
    for (set, entries) in [("train", &listing.train), ("test", &listing.test)] {
        for e in entries {
            let relative = e.path.strip_prefix(dir).unwrap_or(&e.path);
            let line = format!("\n{set}\t{}\t{}\t{}\t{}", e.label, e.len, e.modified, relative.display());
            hash.update(line.as_bytes());
        }
    }
    hash.update(listing.classes.join("\n").as_bytes());
    let key = crate::hex::lower_hex(&hash.finalize());
    root.join(key).join(FILE_NAME)
}

/// The cached sets at `path`, or `None` when the file is missing, truncated, corrupt or
/// inconsistent.
pub fn read(path: &Path) -> Option<Cached> {
    let bytes = std::fs::read(path).ok()?;
    let body_len = bytes.len().checked_sub(32)?;
    let (body, trailer) = bytes.split_at(body_len);
    if !body.starts_with(MAGIC) || Sha256::digest(body).as_slice() != trailer {
        return None;
    }
    let header_len = usize::try_from(u64::from_le_bytes(body.get(8..16)?.try_into().ok()?)).ok()?;
    let header: Header = serde_json::from_slice(body.get(16..16usize.checked_add(header_len)?)?).ok()?;
    header.contract.validate().ok()?;
    let mut rest = &body[16 + header_len..];
    let mut take = |n: usize| -> Option<Vec<u8>> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head.to_vec())
    };
    let pixels = header.contract.pixels();
    let train = Dataset { labels: take(header.train)?, pixels: take(header.train.checked_mul(pixels)?)? };
    let test = Dataset { labels: take(header.test)?, pixels: take(header.test.checked_mul(pixels)?)? };
    let classes = header.contract.classes();
    let labels_fit = train.labels.iter().chain(&test.labels).all(|&l| usize::from(l) < classes);
    (rest.is_empty() && labels_fit).then_some(Cached {
        train,
        test,
        contract: header.contract,
        skipped: header.skipped,
    })
}

/// Writes `cached` to `path` (creating its folder) through a temporary file and a rename.
pub fn write(path: &Path, cached: &Cached) -> std::io::Result<()> {
    let header = Header {
        contract: cached.contract.clone(),
        train: cached.train.len(),
        test: cached.test.len(),
        skipped: cached.skipped.clone(),
    };
    let header = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    let sets = [&cached.train, &cached.test];
    let data_len: usize = sets.iter().map(|s| s.labels.len() + s.pixels.len()).sum();
    let mut bytes = Vec::with_capacity(16 + header.len() + data_len + 32);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    for set in sets {
        bytes.extend_from_slice(&set.labels);
        bytes.extend_from_slice(&set.pixels);
    }
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::files::write_atomic(path, &bytes)
}
