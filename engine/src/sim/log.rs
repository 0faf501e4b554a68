//! The append-only simulation log (`log.jsonl`): one JSON object per line, keys sorted, with a
//! sequence number and the simulated time. Everything that happened is in it; replay rebuilds
//! the servers from its input records.

use super::time::SimTime;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::io::Write;

pub struct LogWriter {
    out: Box<dyn Write + Send>,
    hasher: Sha256,
    seq: u64,
    error: Option<String>,
}

impl LogWriter {
    pub fn new(out: Box<dyn Write + Send>) -> LogWriter {
        LogWriter { out, hasher: Sha256::new(), seq: 0, error: None }
    }

    /// A log that is only hashed (for sweeps and tests that do not keep the log).
    pub fn sink() -> LogWriter {
        LogWriter::new(Box::new(std::io::sink()))
    }

    /// Appends one record: `body` (an object) plus `seq`, `t_us` and `server`.
    pub fn append(&mut self, t: SimTime, server: Option<&str>, body: Value) {
        let mut map = match body {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        map.insert("seq".into(), Value::from(self.seq));
        map.insert("t_us".into(), Value::from(t));
        if let Some(s) = server {
            map.insert("server".into(), Value::from(s));
        }
        self.seq += 1;
        let mut line = serde_json::to_vec(&map).expect("serialising a JSON map cannot fail");
        line.push(b'\n');
        self.hasher.update(&line);
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(&line) {
                self.error = Some(e.to_string());
            }
        }
    }

    pub fn records(&self) -> u64 {
        self.seq
    }

    /// Flushes and returns the sha256 of everything written (hex).
    pub fn finish(&mut self) -> Result<String, String> {
        if let Err(e) = self.out.flush() {
            self.error.get_or_insert(e.to_string());
        }
        if let Some(e) = &self.error {
            return Err(format!("writing the log failed: {e}"));
        }
        Ok(self.hasher.clone().finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}
