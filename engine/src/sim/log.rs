//! The append-only simulation log (`log.jsonl`): one JSON object per line, the serde form of a
//! [`SimEvent`] plus `t_us` and the node it concerns (`server`). A record's sequence number is
//! its line number counted from 0. Everything that happened is in it; replay rebuilds the
//! servers from its input records and compares their outputs with the rest.
//!
//! [`LogMode`]: `full` writes and hashes every line, `digest` only hashes (for sweeps: the
//! digest still proves two runs equal), `none` does neither.
//!
//! [`LogCompression`]: a full log is written as `log.jsonl.zst` (zstd, level 1 with long-distance
//! matching over a 16 MiB window, compressed on a zstd worker thread so the simulation does not
//! wait for it) or as plain `log.jsonl`. Event IDs recur many times (PDU record, every send and
//! decision naming it), megabytes apart, which is what the long window finds: `large.toml`'s log
//! shrinks about 9×. The digest is always over the uncompressed lines, so both forms of one run
//! have the same `log_digest`; [`open_log`] reads either.

use super::event::{LogLine, Seq, SimEvent};
use super::time::SimTime;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogMode {
    #[default]
    Full,
    Digest,
    None,
}

impl LogMode {
    pub fn parse(s: &str) -> Option<LogMode> {
        match s {
            "full" => Some(LogMode::Full),
            "digest" => Some(LogMode::Digest),
            "none" => Some(LogMode::None),
            _ => None,
        }
    }
}

/// How a full log is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogCompression {
    /// `log.jsonl.zst`.
    #[default]
    Zstd,
    /// `log.jsonl`.
    None,
}

impl LogCompression {
    pub fn parse(s: &str) -> Option<LogCompression> {
        match s {
            "zstd" => Some(LogCompression::Zstd),
            "none" => Some(LogCompression::None),
            _ => None,
        }
    }
    /// The log's file name in a run directory.
    pub fn file_name(self) -> &'static str {
        match self {
            LogCompression::Zstd => "log.jsonl.zst",
            LogCompression::None => "log.jsonl",
        }
    }
}

/// The log file of a run directory (`log.jsonl.zst` or `log.jsonl`), opened for streaming.
/// `Ok(None)` when the directory holds neither.
pub fn open_log(dir: &std::path::Path) -> Result<Option<(std::path::PathBuf, Box<dyn BufRead>)>, String> {
    for c in [LogCompression::Zstd, LogCompression::None] {
        let path = dir.join(c.file_name());
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let reader: Box<dyn BufRead> = match c {
            LogCompression::Zstd => Box::new(std::io::BufReader::with_capacity(
                1 << 20,
                zstd::stream::read::Decoder::new(file).map_err(|e| format!("{}: {e}", path.display()))?,
            )),
            LogCompression::None => Box::new(std::io::BufReader::with_capacity(1 << 20, file)),
        };
        return Ok(Some((path, reader)));
    }
    Ok(None)
}

enum Sink {
    Plain(Box<dyn Write + Send>),
    /// `None` once finished.
    Zstd(Option<zstd::stream::write::Encoder<'static, Box<dyn Write + Send>>>),
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(bytes),
            Sink::Zstd(Some(w)) => w.write_all(bytes),
            Sink::Zstd(None) => Err(std::io::Error::other("the log was already finished")),
        }
    }
    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Zstd(enc) => match enc.take() {
                Some(e) => e.finish()?.flush(),
                None => Ok(()),
            },
        }
    }
}

/// A log kept in memory (tests, library users who read the records back): a clonable
/// [`Write`] whose clones share one buffer; give one to [`LogWriter::new`], read the other.
#[derive(Clone, Default)]
pub struct MemorySink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl MemorySink {
    /// Everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().expect("a log writer panicked").clone()
    }
}

impl Write for MemorySink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("a log writer panicked").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct LogWriter {
    out: Sink,
    mode: LogMode,
    hasher: Sha256,
    seq: Seq,
    line: Vec<u8>,
    error: Option<String>,
}

impl LogWriter {
    pub fn new(out: Box<dyn Write + Send>) -> LogWriter {
        LogWriter::with_mode(out, LogMode::Full)
    }

    pub fn with_mode(out: Box<dyn Write + Send>, mode: LogMode) -> LogWriter {
        LogWriter::with_sink(Sink::Plain(out), mode)
    }

    fn with_sink(out: Sink, mode: LogMode) -> LogWriter {
        LogWriter { out, mode, hasher: Sha256::new(), seq: 0, line: Vec::with_capacity(512), error: None }
    }

    /// A log written through `compression` into `out` (see [`LogCompression`]).
    pub fn compressed(
        out: Box<dyn Write + Send>,
        mode: LogMode,
        compression: LogCompression,
    ) -> std::io::Result<LogWriter> {
        let sink = match compression {
            LogCompression::None => Sink::Plain(out),
            LogCompression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, 1)?;
                enc.long_distance_matching(true)?;
                enc.window_log(24)?;
                // One worker: compression runs beside the simulation instead of inside it.
                enc.multithread(1)?;
                Sink::Zstd(Some(enc))
            }
        };
        Ok(LogWriter::with_sink(sink, mode))
    }

    /// A log that is only hashed (for sweeps and tests that do not keep the log).
    pub fn sink() -> LogWriter {
        LogWriter::with_mode(Box::new(std::io::sink()), LogMode::Digest)
    }

    /// A log that is neither written nor hashed.
    pub fn none() -> LogWriter {
        LogWriter::with_mode(Box::new(std::io::sink()), LogMode::None)
    }

    pub fn mode(&self) -> LogMode {
        self.mode
    }

    /// Appends one event; returns its sequence number.
    pub fn append(&mut self, t: SimTime, server: Option<&str>, event: &SimEvent) -> Seq {
        self.append_any(t, server, event)
    }

    /// Appends any value whose serde form is a map tagged with `kind` (a borrowed view of a
    /// [`SimEvent`], written without cloning what it refers to).
    pub fn append_any<T: Serialize>(&mut self, t: SimTime, server: Option<&str>, event: &T) -> Seq {
        let seq = self.seq;
        self.seq += 1;
        if self.mode == LogMode::None {
            return seq;
        }
        self.line.clear();
        let _ = write!(self.line, "{{\"t_us\":{t},");
        if let Some(s) = server {
            self.line.extend_from_slice(b"\"server\":");
            serde_json::to_writer(&mut self.line, s).expect("a string serialises");
            self.line.push(b',');
        }
        let start = self.line.len();
        serde_json::to_writer(&mut self.line, event).expect("simulation events serialise");
        debug_assert_eq!(self.line.get(start), Some(&b'{'), "events serialise as maps");
        // Splice the event's map into the line's: drop its opening brace.
        self.line.remove(start);
        self.line.push(b'\n');
        self.hasher.update(&self.line);
        if self.mode == LogMode::Full && self.error.is_none() {
            if let Err(e) = self.out.write_all(&self.line) {
                self.error = Some(e.to_string());
            }
        }
        seq
    }

    pub fn records(&self) -> u64 {
        self.seq
    }

    /// Flushes and returns the sha256 of everything written (hex), `None` when not hashed.
    pub fn finish(&mut self) -> Result<Option<String>, String> {
        if let Err(e) = self.out.finish() {
            self.error.get_or_insert(e.to_string());
        }
        if let Some(e) = &self.error {
            return Err(format!("writing the log failed: {e}"));
        }
        if self.mode == LogMode::None {
            return Ok(None);
        }
        Ok(Some(self.hasher.clone().finalize().iter().map(|b| format!("{b:02x}")).collect()))
    }
}

/// Reads a log line by line without holding it in memory. Each item is `(seq, line)`; a line
/// that does not parse is an error naming its line number. PDU references in messages resolve
/// against the PDU records read so far on this thread (see [`super::event::pdu_ref`]).
pub struct LogReader<R: BufRead> {
    input: R,
    seq: Seq,
    buf: String,
}

impl<R: BufRead> LogReader<R> {
    pub fn new(input: R) -> LogReader<R> {
        super::event::pdu_ref::reset();
        LogReader { input, seq: 0, buf: String::new() }
    }
}

impl<R: BufRead> Iterator for LogReader<R> {
    type Item = Result<(Seq, LogLine), String>;

    fn next(&mut self) -> Option<Self::Item> {
        self.buf.clear();
        match self.input.read_line(&mut self.buf) {
            Ok(0) => None,
            Err(e) => Some(Err(format!("log line {}: {e}", self.seq + 1))),
            Ok(_) => {
                let seq = self.seq;
                self.seq += 1;
                let line: LogLine = match serde_json::from_str(self.buf.trim_end()) {
                    Ok(l) => l,
                    Err(e) => return Some(Err(format!("log line {} (record {seq}): {e}", seq + 1))),
                };
                if let SimEvent::Pdu { event_id, room_version, pdu } = &line.event {
                    if let Err(e) = register_pdu(event_id, room_version, pdu) {
                        return Some(Err(format!("log line {} (record {seq}): {e}", seq + 1)));
                    }
                }
                Some(Ok((seq, line)))
            }
        }
    }
}

fn register_pdu(event_id: &str, room_version: &str, pdu: &super::event::PduJson) -> Result<(), String> {
    use super::event::PduJson;
    let version = crate::protocol::room_version::RoomVersion::by_id(room_version)
        .ok_or_else(|| format!("PDU {event_id}: unknown room version {room_version:?}"))?;
    let parsed = match pdu {
        PduJson::Shared(p) => p.clone(),
        PduJson::Read(map) => std::sync::Arc::new(
            crate::protocol::pdu::Pdu::from_object(map.clone(), version).map_err(|e| format!("PDU {event_id}: {e}"))?,
        ),
    };
    if parsed.event_id != event_id {
        return Err(format!("PDU record {event_id} hashes to {}", parsed.event_id));
    }
    super::event::pdu_ref::register(parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn events() -> Vec<SimEvent> {
        vec![
            SimEvent::Fault { fault: 0, what: "partition".into(), start: true },
            SimEvent::LateResponse { id: 7 },
            SimEvent::Decision {
                event: "$e".into(),
                decision: super::super::event::Verdict::Rejected,
                stage: Some("auth".into()),
                reason: Some("rule 4.2".into()),
            },
        ]
    }

    #[test]
    fn modes_write_hash_or_do_nothing_and_digests_agree() {
        let (full_buf, digest_buf) = (Buf::default(), Buf::default());
        let mut full = LogWriter::with_mode(Box::new(full_buf.clone()), LogMode::Full);
        let mut digest = LogWriter::with_mode(Box::new(digest_buf.clone()), LogMode::Digest);
        let mut none = LogWriter::none();
        for (i, e) in events().iter().enumerate() {
            assert_eq!(full.append(i as u64 * 10, Some("hs1"), e), i as u64, "seq is the line number");
            digest.append(i as u64 * 10, Some("hs1"), e);
            none.append(i as u64 * 10, Some("hs1"), e);
        }
        let d_full = full.finish().unwrap().unwrap();
        assert_eq!(digest.finish().unwrap().as_deref(), Some(d_full.as_str()));
        assert_eq!(none.finish().unwrap(), None);
        assert!(digest_buf.0.lock().unwrap().is_empty(), "digest mode writes nothing");
        assert_eq!(none.records(), 3);
        let text = String::from_utf8(full_buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.starts_with(r#"{"t_us":0,"server":"hs1","kind":"fault","#), "{text}");
    }

    #[test]
    fn a_compressed_log_reads_back_as_the_plain_one_with_the_same_digest() {
        let dir = tempfile::tempdir().unwrap();
        let mut digests = Vec::new();
        for c in [LogCompression::Zstd, LogCompression::None] {
            let sub = dir.path().join(c.file_name().replace('.', "_"));
            std::fs::create_dir(&sub).unwrap();
            let file = std::fs::File::create(sub.join(c.file_name())).unwrap();
            let mut w = LogWriter::compressed(Box::new(file), LogMode::Full, c).unwrap();
            for _ in 0..200 {
                for (i, e) in events().iter().enumerate() {
                    w.append(i as u64, Some("hs1"), e);
                }
            }
            digests.push(w.finish().unwrap().unwrap());
            let (path, reader) = open_log(&sub).unwrap().expect("the log is found");
            assert!(path.ends_with(c.file_name()));
            let lines: Vec<_> = LogReader::new(reader).collect::<Result<_, _>>().unwrap();
            assert_eq!(lines.len(), 600);
            assert!(matches!(lines[1].1.event, SimEvent::LateResponse { id: 7 }));
        }
        assert_eq!(digests[0], digests[1], "the digest is over the uncompressed lines");
        let zst = std::fs::metadata(dir.path().join("log_jsonl_zst/log.jsonl.zst")).unwrap().len();
        let plain = std::fs::metadata(dir.path().join("log_jsonl/log.jsonl")).unwrap().len();
        assert!(zst * 10 < plain, "repetitive records compress: {zst} vs {plain} bytes");
        assert!(open_log(dir.path()).unwrap().is_none(), "no log in the parent directory");
    }

    #[test]
    fn the_reader_streams_records_back_and_names_a_bad_line() {
        let buf = Buf::default();
        let mut w = LogWriter::new(Box::new(buf.clone()));
        for e in events() {
            w.append(5, None, &e);
        }
        w.finish().unwrap();
        let mut bytes = buf.0.lock().unwrap().clone();
        let lines: Vec<_> = LogReader::new(&bytes[..]).collect::<Result<_, _>>().unwrap();
        assert_eq!(lines.len(), 3);
        assert!(matches!(lines[1].1.event, SimEvent::LateResponse { id: 7 }));
        assert_eq!(lines[2].0, 2);
        bytes.extend_from_slice(b"{\"t_us\":1,\"kind\":\"no_such_kind\"}\n");
        let err = LogReader::new(&bytes[..]).find_map(Result::err).expect("an error");
        assert!(err.starts_with("log line 4 (record 3)"), "{err}");
    }
}
