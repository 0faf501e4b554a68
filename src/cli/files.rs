//! File helpers: reading possibly gzip-compressed inputs, writing outputs atomically.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Reads a text file; `*.gz` files are decompressed (every member of a concatenated gzip file,
/// as `zcat` reads it).
pub fn read_text(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .map_err(|e| format!("{}: not valid gzip of UTF-8 text: {e}", path.display()))?;
        Ok(text)
    } else {
        String::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8: {e}", path.display()))
    }
}

/// Writes a file atomically: a temporary file beside it, then a rename, so a failure never
/// leaves a half-written output in place of a good one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A directory written whole or not at all. Its files are written into the sibling
/// `<name>.partial-<tag>` and the sibling takes the directory's place only in [`commit`]: a run
/// that fails or is interrupted before that leaves an earlier directory of that name untouched,
/// file for file. `tag` should be deterministic (e.g. a prefix of the scenario's hash), so a
/// leftover of an interrupted run is found and replaced by the next run.
///
/// [`commit`]: PartialDir::commit
pub struct PartialDir {
    target: PathBuf,
    partial: PathBuf,
}

impl PartialDir {
    /// Creates the empty partial directory beside `target`, removing a leftover one first.
    pub fn create(target: &Path, tag: &str) -> Result<Self, String> {
        let partial = sibling(target, &format!("partial-{tag}"))?;
        if partial.is_dir() {
            std::fs::remove_dir_all(&partial).map_err(|e| format!("{}: cannot remove: {e}", partial.display()))?;
        } else if partial.symlink_metadata().is_ok() {
            // Only ever remove what this scheme made: a file here is someone else's.
            return Err(format!(
                "{}: exists and is not a directory; the run needs this path for its outputs (remove it)",
                partial.display()
            ));
        }
        std::fs::create_dir_all(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
        Ok(PartialDir { target: target.to_owned(), partial })
    }

    /// Where the files go until [`PartialDir::commit`].
    pub fn path(&self) -> &Path {
        &self.partial
    }

    /// Puts the partial directory in the target's place. The earlier directory is first renamed
    /// aside (`<name>.old-<tag>`; a directory cannot be renamed over a non-empty one), then
    /// removed: at every moment either the old or the new outputs are complete on disk.
    pub fn commit(self) -> Result<(), String> {
        let tag = self.partial.file_name().and_then(|n| n.to_str()).and_then(|n| n.rsplit_once(".partial-"));
        let old = sibling(&self.target, &format!("old-{}", tag.map_or("", |t| t.1)))?;
        let had_old = self.target.symlink_metadata().is_ok();
        if had_old {
            if old.is_dir() {
                std::fs::remove_dir_all(&old).map_err(|e| format!("{}: cannot remove: {e}", old.display()))?;
            }
            std::fs::rename(&self.target, &old)
                .map_err(|e| format!("{}: cannot move aside: {e}", self.target.display()))?;
        }
        std::fs::rename(&self.partial, &self.target).map_err(|e| {
            format!(
                "{}: cannot move into place: {e} (the outputs are in {})",
                self.target.display(),
                self.partial.display()
            )
        })?;
        if had_old {
            let removed = if old.is_dir() { std::fs::remove_dir_all(&old) } else { std::fs::remove_file(&old) };
            removed.map_err(|e| format!("{}: cannot remove the earlier outputs: {e}", old.display()))?;
        }
        Ok(())
    }
}

/// `<parent>/<name>.<suffix>` for `<parent>/<name>`.
fn sibling(target: &Path, suffix: &str) -> Result<PathBuf, String> {
    let name = target.file_name().ok_or_else(|| format!("{}: not a directory name", target.display()))?;
    Ok(target.with_file_name(format!("{}.{suffix}", name.to_string_lossy())))
}
