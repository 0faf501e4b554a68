//! `metrics.csv`: `time_ms,server,room,measure,value`, one row per sample. The set of measures is
//! open: everything downstream is keyed by the measure names found in the file.
//!
//! Large runs write millions of rows, so names are interned: a row is 32 bytes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::error::format_error;
use crate::AnalysisError;

pub const COLUMNS: [&str; 5] = ["time_ms", "server", "room", "measure", "value"];

/// Name index meaning "column empty".
const NONE: u32 = u32::MAX;

/// One row of `metrics.csv`, borrowed from a [`MetricsTable`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    pub time_ms: f64,
    /// None for room-wide measures.
    pub server: Option<&'a str>,
    /// None for server-wide measures.
    pub room: Option<&'a str>,
    pub measure: &'a str,
    pub value: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Row {
    time_ms: f64,
    value: f64,
    server: u32,
    room: u32,
    measure: u32,
}

/// Which chart a sample belongs to: one per (room, measure); `room` None gathers server-wide
/// measures such as `deliveries`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    pub room: Option<String>,
    pub measure: String,
}

/// The samples of one (room, measure), split by server. Room-wide samples sit under the key `""`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeasureSeries {
    /// Server name (or `""`) → points `(time_ms, value)` sorted by time.
    pub lines: BTreeMap<String, Vec<(f64, f64)>>,
}

impl MeasureSeries {
    /// True when at least one sample names a server.
    pub fn is_per_server(&self) -> bool {
        self.lines.keys().any(|k| !k.is_empty())
    }
}

/// The parsed `metrics.csv`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsTable {
    names: Vec<String>,
    ids: BTreeMap<String, u32>,
    rows: Vec<Row>,
    /// Rows whose `value` cell was empty (skipped, counted so nothing vanishes silently).
    pub empty_values: u64,
}

impl MetricsTable {
    pub fn read(path: &Path) -> Result<Self, AnalysisError> {
        let file = std::fs::File::open(path).map_err(|source| AnalysisError::Io { path: path.to_owned(), source })?;
        Self::from_reader(std::io::BufReader::new(file), path)
    }

    /// Parses CSV from `reader`; `origin` names the file in errors. Columns are found by header
    /// name, so their order does not matter and extra columns are ignored.
    pub fn from_reader<R: Read>(reader: R, origin: &Path) -> Result<Self, AnalysisError> {
        let csv_err = |source| AnalysisError::Csv { path: origin.to_owned(), source };
        let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
        let headers = rdr.headers().map_err(csv_err)?.clone();
        let mut idx = [0usize; 5];
        for (slot, name) in idx.iter_mut().zip(COLUMNS) {
            *slot = headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
                format_error(origin, format!("missing column `{name}`; expected header {}", COLUMNS.join(",")))
            })?;
        }
        let mut table = MetricsTable::default();
        let mut record = csv::StringRecord::new();
        while rdr.read_record(&mut record).map_err(csv_err)? {
            let line = record.position().map_or(0, |p| p.line());
            let cell = |i: usize| record.get(idx[i]).unwrap_or("").trim();
            if cell(4).is_empty() {
                table.empty_values += 1;
                continue;
            }
            let number = |i: usize| {
                cell(i).parse::<f64>().map_err(|_| {
                    let (col, val) = (COLUMNS[i], cell(i));
                    format_error(origin, format!("line {line}: `{col}` is not a number: `{val}`"))
                })
            };
            if cell(3).is_empty() {
                return Err(format_error(origin, format!("line {line}: empty `measure`")));
            }
            let row = Row {
                time_ms: number(0)?,
                value: number(4)?,
                server: table.intern(cell(1)),
                room: table.intern(cell(2)),
                measure: table.intern(cell(3)),
            };
            table.rows.push(row);
        }
        Ok(table)
    }

    fn intern(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return NONE;
        }
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct names");
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    fn name(&self, id: u32) -> Option<&str> {
        (id != NONE).then(|| self.names[id as usize].as_str())
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows in file order.
    pub fn samples(&self) -> impl Iterator<Item = Sample<'_>> + '_ {
        self.rows.iter().map(|r| Sample {
            time_ms: r.time_ms,
            server: self.name(r.server),
            room: self.name(r.room),
            measure: self.name(r.measure).unwrap_or_default(),
            value: r.value,
        })
    }

    /// Groups the samples into one series per (room, measure). `room_name` maps the CSV's room
    /// column to the name used in the report (the engine may write a room ID or a name).
    pub fn series(&self, room_name: impl Fn(&str) -> String) -> BTreeMap<SeriesKey, MeasureSeries> {
        // group by interned ids first (cheap), name the groups once;
        // (room id, measure id) → server id → points
        type ByServer = BTreeMap<u32, Vec<(f64, f64)>>;
        let mut grouped: BTreeMap<(u32, u32), ByServer> = BTreeMap::new();
        for r in &self.rows {
            grouped.entry((r.room, r.measure)).or_default().entry(r.server).or_default().push((r.time_ms, r.value));
        }
        let mut out: BTreeMap<SeriesKey, MeasureSeries> = BTreeMap::new();
        for ((room, measure), by_server) in grouped {
            let key = SeriesKey {
                room: self.name(room).map(&room_name),
                measure: self.name(measure).unwrap_or_default().to_string(),
            };
            let series = out.entry(key).or_default();
            for (server, points) in by_server {
                let server = self.name(server).unwrap_or_default().to_string();
                series.lines.entry(server).or_default().extend(points);
            }
        }
        for series in out.values_mut() {
            for points in series.lines.values_mut() {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
        out
    }

    /// Room names as written in the CSV.
    pub fn rooms(&self) -> impl Iterator<Item = &str> + '_ {
        let mut ids: Vec<u32> = self.rows.iter().map(|r| r.room).filter(|r| *r != NONE).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().filter_map(|id| self.name(id))
    }

    /// The latest sample time, if any.
    pub fn last_time_ms(&self) -> Option<f64> {
        self.rows.iter().map(|s| s.time_ms).reduce(f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_room_and_measure_and_server() {
        let csv = "time_ms,server,room,measure,value\n\
                   1000,,main,distinct_states,2\n\
                   0,,main,distinct_states,1\n\
                   0,hs1,main,event_lag,3\n\
                   0,hs2,main,event_lag,0\n\
                   0,hs1,,deliveries,10\n\
                   5,hs1,,deliveries,\n";
        let t = MetricsTable::from_reader(csv.as_bytes(), Path::new("m.csv")).unwrap();
        assert_eq!((t.len(), t.empty_values), (5, 1));
        assert_eq!(t.rooms().collect::<Vec<_>>(), ["main"]);
        let first = t.samples().nth(2).unwrap();
        assert_eq!((first.server, first.room, first.measure), (Some("hs1"), Some("main"), "event_lag"));
        let series = t.series(|r| r.to_string());
        let keys: Vec<_> = series.keys().map(|k| (k.room.clone(), k.measure.as_str())).collect();
        assert_eq!(
            keys,
            [(None, "deliveries"), (Some("main".into()), "distinct_states"), (Some("main".into()), "event_lag")]
        );
        let ds = &series[&SeriesKey { room: Some("main".into()), measure: "distinct_states".into() }];
        assert!(!ds.is_per_server());
        assert_eq!(ds.lines[""], [(0.0, 1.0), (1000.0, 2.0)]);
    }

    #[test]
    fn room_ids_and_names_merge_into_one_series() {
        let csv = "time_ms,server,room,measure,value\n0,hs1,!a:hs1,event_lag,1\n1,hs1,main,event_lag,2\n";
        let t = MetricsTable::from_reader(csv.as_bytes(), Path::new("m.csv")).unwrap();
        let series = t.series(|r| if r == "!a:hs1" { "main".into() } else { r.to_string() });
        assert_eq!(series.len(), 1);
        assert_eq!(series.values().next().unwrap().lines["hs1"], [(0.0, 1.0), (1.0, 2.0)]);
    }

    #[test]
    fn bad_rows_name_line_and_column() {
        let csv = "time_ms,server,room,measure,value\n0,hs1,main,event_lag,lots\n";
        let err = MetricsTable::from_reader(csv.as_bytes(), Path::new("m.csv")).unwrap_err();
        assert!(err.to_string().contains("line 2: `value` is not a number: `lots`"), "{err}");
        let err = MetricsTable::from_reader("a,b\n".as_bytes(), Path::new("m.csv")).unwrap_err();
        assert!(err.to_string().contains("missing column `time_ms`"), "{err}");
    }
}
