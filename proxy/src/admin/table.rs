//! Result tables of the console: typed columns and cells, built by the
//! SHOW commands as plain data (testable without a socket) and turned into
//! pgwire rows at the edge.

use std::sync::Arc;
use std::time::SystemTime;

use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response};
use pgwire::error::PgWireResult;

/// The wire type of a column. psql only displays them; numbers are
/// right-aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// `text`.
    Text,
    /// `int8`.
    Int,
    /// `numeric`, sent as pre-formatted text (fixed decimals).
    Num,
    /// `bool`.
    Bool,
}

/// One value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// A string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A formatted decimal number.
    Num(String),
    /// A boolean.
    Bool(bool),
}

impl Cell {
    /// A text cell.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// An integer cell from any unsigned count (saturating at `i64::MAX`).
    pub fn count(v: impl TryInto<i64>) -> Cell {
        Cell::Int(v.try_into().unwrap_or(i64::MAX))
    }

    /// Milliseconds with microsecond precision (3 decimals) from µs.
    pub fn ms_from_us(us: f64) -> Cell {
        Cell::Num(format!("{:.3}", us / 1000.0))
    }

    /// A decimal with 3 places.
    pub fn num3(v: f64) -> Cell {
        Cell::Num(format!("{v:.3}"))
    }

    /// A text cell, NULL when `None`.
    pub fn opt_text(s: Option<impl Into<String>>) -> Cell {
        s.map(|s| Cell::Text(s.into())).unwrap_or(Cell::Null)
    }
}

/// A result set: column names with types, then rows.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column names and types, in order.
    pub columns: Vec<(String, ColType)>,
    /// Rows; each has one cell per column.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(columns: &[(&str, ColType)]) -> Table {
        Table {
            columns: columns.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    ///
    /// # Panics
    ///
    /// In debug builds, when the row length differs from the column count.
    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row width");
        self.rows.push(row);
    }

    /// Column names in order.
    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The pgwire response: RowDescription, DataRows, tag `tag`.
    pub fn into_response(self, tag: &str) -> PgWireResult<Response> {
        let fields: Vec<FieldInfo> = self
            .columns
            .iter()
            .map(|(name, t)| {
                let ty = match t {
                    ColType::Text => Type::TEXT,
                    ColType::Int => Type::INT8,
                    ColType::Num => Type::NUMERIC,
                    ColType::Bool => Type::BOOL,
                };
                FieldInfo::new(name.clone(), None, None, ty, FieldFormat::Text)
            })
            .collect();
        let schema = Arc::new(fields);
        let mut enc = DataRowEncoder::new(schema.clone());
        let mut rows = Vec::with_capacity(self.rows.len());
        for row in self.rows {
            for cell in row {
                match cell {
                    Cell::Null => enc.encode_field(&None::<String>)?,
                    Cell::Text(s) | Cell::Num(s) => enc.encode_field(&s)?,
                    Cell::Int(v) => enc.encode_field(&v)?,
                    Cell::Bool(b) => enc.encode_field(&b)?,
                }
            }
            rows.push(Ok(enc.take_row()));
        }
        let mut resp = QueryResponse::new(schema, futures::stream::iter(rows));
        resp.set_command_tag(tag);
        Ok(Response::Query(resp))
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`, PgBouncer's time format (in UTC).
pub fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format_unix(secs)
}

/// [`format_time`] for Unix microseconds.
pub fn format_unix_us(us: i64) -> String {
    format_unix(us.div_euclid(1_000_000))
}

fn format_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_format_like_pgbouncer_in_utc() {
        assert_eq!(
            format_time(SystemTime::UNIX_EPOCH),
            "1970-01-01 00:00:00 UTC"
        );
        // 2024-02-29 12:34:56 UTC (a leap day).
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(format_time(t), "2024-02-29 12:34:56 UTC");
        assert_eq!(
            format_unix_us(1_709_210_096_999_999),
            "2024-02-29 12:34:56 UTC"
        );
        // 2100-03-01 (not a leap year).
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(4_107_542_400);
        assert_eq!(format_time(t), "2100-03-01 00:00:00 UTC");
    }

    #[test]
    fn ms_cells_have_three_decimals() {
        assert_eq!(Cell::ms_from_us(1234.0), Cell::Num("1.234".into()));
        assert_eq!(Cell::ms_from_us(0.4), Cell::Num("0.000".into()));
        assert_eq!(Cell::count(5u64), Cell::Int(5));
        assert_eq!(Cell::count(u64::MAX), Cell::Int(i64::MAX));
    }
}
