//! The reference fixtures (`tests/fixtures/dags/*.jsonl.gz` with `.meta.json.gz` key sidecars)
//! and the cache directory for generated DAGs.

use flate2::read::GzDecoder;
use roomsim_engine::protocol::pdu::Pdu;
use roomsim_engine::protocol::room_version::RoomVersion;
use roomsim_engine::protocol::verify::{self, ServerKeys};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The 10 000-event, 10-server room v11 fixture that the speed targets are stated on.
pub const FIXTURE_10K: &str = "v11-e10000-s10-seed103";

/// `tests/fixtures/dags/` of the workspace.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dags")
}

/// Where generated DAGs are cached: `$CARGO_TARGET_DIR` (or the workspace's `target/`) +
/// `roomsim-bench-dags/`.
pub fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("roomsim-bench-dags")
}

/// Reads a file, gunzipping it when its name ends in `.gz`.
pub fn read_text(path: &Path) -> io::Result<String> {
    let bytes = std::fs::read(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        GzDecoder::new(&bytes[..]).read_to_string(&mut text)?;
        Ok(text)
    } else {
        String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// A DAG file loaded for benchmarking: its text, the parsed PDUs (file order) and the keys.
pub struct Fixture {
    pub name: String,
    pub text: String,
    pub keys_text: String,
    pub version: &'static RoomVersion,
    pub pdus: Vec<Pdu>,
    pub keys: ServerKeys,
}

impl Fixture {
    /// The non-empty lines of the file.
    pub fn lines(&self) -> Vec<&str> {
        self.text.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
    }
}

/// Loads a DAG file and its keys file (either may be gzip'd).
pub fn load_files(name: &str, jsonl: &Path, keys: &Path) -> Fixture {
    let text = read_text(jsonl).unwrap_or_else(|e| panic!("{}: {e}", jsonl.display()));
    let keys_text = read_text(keys).unwrap_or_else(|e| panic!("{}: {e}", keys.display()));
    let (version, parsed) = verify::parse_lines(&text).unwrap_or_else(|e| panic!("{}: {e}", jsonl.display()));
    let keys = verify::parse_server_keys(&keys_text).unwrap_or_else(|e| panic!("{}: {e}", keys.display()));
    Fixture {
        name: name.to_owned(),
        text,
        keys_text,
        version,
        pdus: parsed.into_iter().map(|(_, p)| p).collect(),
        keys,
    }
}

/// Loads `tests/fixtures/dags/NAME.jsonl.gz` with `NAME.meta.json.gz`.
pub fn load(name: &str) -> Fixture {
    let dir = fixture_dir();
    load_files(name, &dir.join(format!("{name}.jsonl.gz")), &dir.join(format!("{name}.meta.json.gz")))
}
