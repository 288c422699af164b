//! The driver's compiled pipelines kept on disk between runs, so that only the first run on a
//! machine pays each kernel's driver compile (seconds on some GPUs; lavapipe compiles quickly).
//!
//! wgpu's `PipelineCache` (Vulkan only) hands out the driver's cache as bytes and takes them
//! back at the next start. They are stored under the user's cache directory
//! (`$XDG_CACHE_HOME/engine/pipelines`, else `~/.cache/engine/pipelines`), one file per adapter,
//! driver and shader build, written whole or not at all. wgpu checks the adapter, driver and
//! version in its header but not the bytes after it, so the file carries its own checksum: a
//! truncated, corrupt or foreign file is ignored with a note and replaced, never an error.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What a cache file starts with: the format's name and version, then the payload's SHA-256.
const MAGIC: &[u8; 8] = b"ENGPLC01";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// Files past this size are not read: no driver's cache of our few dozen kernels comes close.
const MAX_FILE_BYTES: u64 = 256 << 20;

/// The directory the cache files go to by default: `pipelines` in the user's cache directory.
pub(crate) fn default_dir() -> Option<PathBuf> {
    Some(crate::files::user_cache_dir()?.join("pipelines"))
}

/// The pipeline cache of one opened device and the file it was loaded from and is saved to.
pub(crate) struct DiskCache {
    path: PathBuf,
    /// The driver's bytes as loaded (empty when there was no usable file).
    loaded: Vec<u8>,
    cache: wgpu::PipelineCache,
}

impl DiskCache {
    /// The cache for `device` (which must have `Features::PIPELINE_CACHE`), seeded from its file
    /// in `dir` where there is a usable one. None where the backend keeps no cache (not Vulkan).
    pub(crate) fn open(device: &wgpu::Device, info: &wgpu::AdapterInfo, checked: bool, dir: &Path) -> Option<Self> {
        let key = wgpu::util::pipeline_cache_key(info)?;
        let driver = Sha256::digest(format!("{}\n{}", info.driver, info.driver_info).as_bytes());
        let build = if checked { "checked" } else { "unchecked" };
        let path = dir.join(format!("{key}_{}_{build}.bin", crate::hex::lower_hex(&driver[..6])));
        let loaded = read(&path).unwrap_or_else(|why| {
            eprintln!("note: ignoring the GPU pipeline cache {}: {why}; it will be rebuilt", path.display());
            Vec::new()
        });
        let cache = Self::create(device, (!loaded.is_empty()).then_some(&loaded[..])).or_else(|why| {
            eprintln!("note: ignoring the GPU pipeline cache {}: {why}; it will be rebuilt", path.display());
            Self::create(device, None)
        });
        let cache = cache.ok()?;
        Some(Self { path, loaded, cache })
    }

    fn create(device: &wgpu::Device, data: Option<&[u8]>) -> Result<wgpu::PipelineCache, String> {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let descriptor = wgpu::PipelineCacheDescriptor { label: Some("engine pipelines"), data, fallback: true };
        // SAFETY: `data` is what `PipelineCache::get_data` returned in an earlier run, checked
        // against the checksum it was saved with; wgpu checks the adapter, driver and version.
        let cache = unsafe { device.create_pipeline_cache(&descriptor) };
        match pollster::block_on(scope.pop()) {
            Some(error) => Err(error.to_string()),
            None => Ok(cache),
        }
    }

    /// The cache to build pipelines with.
    pub(crate) fn cache(&self) -> &wgpu::PipelineCache {
        &self.cache
    }

    /// Writes the driver's cache back to the file when it has changed since it was loaded.
    /// A failure is a note: the next run compiles again.
    pub(crate) fn save(&self) {
        let Some(data) = self.cache.get_data() else { return };
        if data.is_empty() || data == self.loaded {
            return;
        }
        let mut bytes = Vec::with_capacity(HEADER_LEN + data.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&Sha256::digest(&data));
        bytes.extend_from_slice(&data);
        let written = self.path.parent().map_or(Ok(()), std::fs::create_dir_all);
        if let Err(e) = written.and_then(|()| crate::files::write_atomic(&self.path, &bytes)) {
            eprintln!("note: could not save the GPU pipeline cache {}: {e}", self.path.display());
        }
    }
}

/// The driver's bytes in a cache file (none when there is no file), or why it cannot be used.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    let size = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    if size > MAX_FILE_BYTES {
        return Err(format!("{size} bytes, more than a pipeline cache holds"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (header, data) = bytes.split_at_checked(HEADER_LEN).ok_or("truncated")?;
    if &header[..MAGIC.len()] != MAGIC {
        return Err("not a pipeline cache of this engine".into());
    }
    if header[MAGIC.len()..] != Sha256::digest(data)[..] {
        return Err("its checksum does not match (a partial or corrupt file)".into());
    }
    Ok(data.to_vec())
}
