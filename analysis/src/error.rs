//! The one error type of the crate, plus the file helpers that attach paths to I/O errors.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading run files or writing outputs. Every variant names
/// the file involved; the CLI renders these.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    /// The file parsed but does not have the documented shape (see `docs/outputs.md`).
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("drawing {what}: {message}")]
    Plot { what: String, message: String },
    /// Two shards hold the same sweep cell index with different contents.
    #[error(
        "sweep cell {index} appears in {} and in {} with different contents ({difference}); \
         shards of one sweep must agree on every cell they share",
        first.display(),
        second.display()
    )]
    ConflictingCell { index: u64, first: PathBuf, second: PathBuf, difference: String },
    #[error("no sweep cells found under {dirs}; expected <dir>/cells/<label>/summary.json and cell.json")]
    NoCells { dirs: String },
}

pub(crate) fn read_text(path: &Path) -> Result<String, AnalysisError> {
    std::fs::read_to_string(path).map_err(|source| AnalysisError::Io { path: path.to_owned(), source })
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, AnalysisError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|source| AnalysisError::Json { path: path.to_owned(), source })
}

/// Writes `bytes` to `path`, creating the parent directories.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), AnalysisError> {
    let io = |source| AnalysisError::Io { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
    }
    std::fs::write(path, bytes).map_err(io)
}

pub(crate) fn format_error(path: &Path, message: impl Into<String>) -> AnalysisError {
    AnalysisError::Format { path: path.to_owned(), message: message.into() }
}
