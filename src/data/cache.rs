//! The decoded image folder on disk, so a second run starts as fast as the IDX path. The key is
//! a SHA-256 of the decode options and, for every file, its relative path, set, label, length
//! and modification time: any change to a file or an option is another key. One file per key:
//! a magic, a JSON header (contract, counts, skipped files), the labels and pixels of each set,
//! and a digest of all that as a trailer: the SHA-256 of the SHA-256s of its 1 MiB pieces, so
//! that every core hashes. A file that does not check out is ignored (and rebuilt by the
//! caller); a new one appears by a rename, so readers never see half of it.

use std::fmt::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::listing::Listing;
use super::{Dataset, InputContract, Skipped};

const MAGIC: &[u8; 8] = b"ENGDSET2";
const PIECE: usize = 1 << 20;
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
    let mut line = String::new();
    for (set, entries) in [("train", &listing.train), ("test", &listing.test)] {
        for e in entries {
            let relative = e.path.strip_prefix(dir).unwrap_or(&e.path);
            line.clear();
            let _ = write!(line, "\n{set}\t{}\t{}\t{}\t{}", e.label, e.len, e.modified, relative.display());
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
    if !body.starts_with(MAGIC) || digest(&[body]) != trailer {
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
/// The pieces are written and hashed in parallel. Unlike the engine's records the file is not
/// synced to disk: a cache that a crash tears fails its digest and is rebuilt, so the flush
/// would buy nothing.
pub fn write(path: &Path, cached: &Cached) -> std::io::Result<()> {
    let header = Header {
        contract: cached.contract.clone(),
        train: cached.train.len(),
        test: cached.test.len(),
        skipped: cached.skipped.clone(),
    };
    let header = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    let header_len = (header.len() as u64).to_le_bytes();
    let sets = [&cached.train, &cached.test];
    let mut body: Vec<&[u8]> = vec![MAGIC, &header_len, &header];
    body.extend(sets.iter().flat_map(|s| [&s.labels[..], &s.pixels[..]]));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = crate::files::temp_path(path);
    let written = std::fs::File::create(&tmp)
        .and_then(|file| {
            let pieces = pieces(&body);
            let digests = pieces
                .par_iter()
                .map(|(offset, piece)| {
                    let mut at = *offset;
                    for part in piece {
                        file.write_all_at(part, at)?;
                        at += part.len() as u64;
                    }
                    Ok(piece_digest(piece))
                })
                .collect::<std::io::Result<Vec<_>>>()?;
            let end = body.iter().map(|part| part.len() as u64).sum();
            file.write_all_at(&combine(&digests), end)
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The digest of `parts` read as one byte string: the SHA-256 of the SHA-256s of its
/// successive pieces, hashed in parallel.
fn digest(parts: &[&[u8]]) -> [u8; 32] {
    combine(&pieces(parts).par_iter().map(|(_, piece)| piece_digest(piece)).collect::<Vec<_>>())
}

/// `parts` read as one byte string, cut into `PIECE`-byte pieces, each with its offset.
fn pieces<'a>(parts: &[&'a [u8]]) -> Vec<(u64, Vec<&'a [u8]>)> {
    let mut pieces: Vec<(u64, Vec<&[u8]>)> = vec![(0, Vec::new())];
    let (mut offset, mut room) = (0u64, PIECE);
    for mut part in parts.iter().copied() {
        while !part.is_empty() {
            if room == 0 {
                pieces.push((offset, Vec::new()));
                room = PIECE;
            }
            let (head, tail) = part.split_at(part.len().min(room));
            if let Some((_, piece)) = pieces.last_mut() {
                piece.push(head);
            }
            room -= head.len();
            offset += head.len() as u64;
            part = tail;
        }
    }
    pieces
}

fn piece_digest(piece: &[&[u8]]) -> [u8; 32] {
    piece.iter().fold(Sha256::new(), |hash, part| hash.chain_update(part)).finalize().into()
}

fn combine(digests: &[[u8; 32]]) -> [u8; 32] {
    digests.iter().fold(Sha256::new(), |hash, d| hash.chain_update(d)).finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets of a few MiB, so pieces start inside parts and parts inside pieces.
    fn cached() -> Cached {
        let set = |n: usize, salt: usize| Dataset {
            labels: (0..n).map(|i| ((i + salt) % 10) as u8).collect(),
            pixels: (0..n * 784).map(|i| (i * 31 + salt) as u8).collect(),
        };
        Cached {
            train: set(3001, 1),
            test: set(1337, 2),
            contract: InputContract::fashion_mnist(),
            skipped: Vec::new(),
        }
    }

    #[test]
    fn the_digest_depends_on_the_bytes_not_on_how_they_are_cut() {
        let bytes: Vec<u8> = (0..PIECE * 5 / 2).map(|i| (i % 251) as u8).collect();
        let (a, b) = bytes.split_at(PIECE / 3);
        let (b, c) = b.split_at(PIECE + 17);
        assert_eq!(digest(&[a, b, c]), digest(&[&bytes]));
        assert_eq!(pieces(&[a, b, c]).iter().map(|(offset, _)| *offset).collect::<Vec<_>>(), [0, 1 << 20, 2 << 20]);
        let mut changed = bytes.clone();
        changed[PIECE * 2 + 5] ^= 1;
        assert_ne!(digest(&[&changed]), digest(&[&bytes]));
    }

    #[test]
    fn a_written_cache_reads_back_whole_and_a_flipped_byte_is_refused() {
        let dir = std::env::temp_dir().join(format!("engine-cache-{}", std::process::id()));
        let path = dir.join("key").join(FILE_NAME);
        let cached = cached();
        write(&path, &cached).unwrap();
        let read_back = read(&path).unwrap();
        let sets = |c: Cached| (c.train.labels, c.train.pixels, c.test.labels, c.test.pixels, c.contract);
        assert_eq!(sets(read_back), sets(cached));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[PIECE + 3] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read(&path).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
