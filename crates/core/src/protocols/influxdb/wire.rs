//! InfluxDB 1.x as leakscope speaks it: the allowlisted InfluxQL statements (rendered by
//! `driver::sql` in the InfluxQL dialect, names its only variable part) and the one function
//! that sends them, each as `GET /query?q=…` on a fresh connection within a budget.
//!
//! InfluxDB 1.x runs whatever `/query` is given, even over GET (a write there is only
//! "deprecated"), so the allowlist is what keeps a scan read-only: `SHOW` and plain `SELECT`,
//! never `SELECT … INTO`, `CREATE`, `DROP`, `DELETE`, `ALTER`, `GRANT` or `KILL`.

use std::sync::Arc;

use serde_json::Value;

use crate::driver::http::{self, percent_encode, Request, Response};
use crate::driver::sql::{Allowlist, Arg, Dialect};
use crate::driver::{self, Budget, ProbeCtx, Session, Wait};

/// Database names (the probe's proof of a read).
pub const SHOW_DATABASES: &str = "SHOW DATABASES";
/// Measurements of one database.
pub const SHOW_MEASUREMENTS: &str = "SHOW MEASUREMENTS ON $IDENT LIMIT $INT";
/// Field names and types of every measurement of one database.
pub const SHOW_FIELD_KEYS: &str = "SHOW FIELD KEYS ON $IDENT";
/// Tag names of every measurement of one database.
pub const SHOW_TAG_KEYS: &str = "SHOW TAG KEYS ON $IDENT";
/// Points of one measurement (per field; the largest is the number of points).
pub const COUNT: &str = "SELECT COUNT(*) FROM $IDENT..$IDENT";
/// The first points of one measurement, with their tags and fields.
pub const SAMPLE: &str = "SELECT * FROM $IDENT..$IDENT LIMIT $INT";
/// Distinct values of one field of one measurement.
pub const COUNT_DISTINCT: &str = "SELECT COUNT(DISTINCT($IDENT)) FROM $IDENT..$IDENT";
/// Distinct values of one tag of one measurement.
pub const TAG_CARDINALITY: &str =
    "SHOW TAG VALUES EXACT CARDINALITY ON $IDENT FROM $IDENT WITH KEY = $IDENT";

/// Every statement leakscope may send to InfluxDB: `SHOW` and plain `SELECT` (no `INTO`).
pub const QUERIES: Allowlist = Allowlist {
    dialect: Dialect::InfluxQl,
    templates: &[
        SHOW_DATABASES,
        SHOW_MEASUREMENTS,
        SHOW_FIELD_KEYS,
        SHOW_TAG_KEYS,
        COUNT,
        SAMPLE,
        COUNT_DISTINCT,
        TAG_CARDINALITY,
    ],
};

/// The header every InfluxDB 1.x (and 2.x) response carries.
pub const VERSION_HEADER: &str = "x-influxdb-version";

/// Why a statement gave no series: an HTTP status with InfluxDB's `error`, or the statement's
/// own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.message)
    }
}

pub type Failure = driver::Failure<ServerError>;

/// One series of a result: its measurement name, columns and rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub name: String,
    pub columns: Vec<String>,
    pub values: Vec<Vec<Value>>,
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The `error` of a body (`{"error": "…"}` or the first statement's).
pub fn parse_error(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v
        .get("error")
        .or_else(|| v.get("results")?.get(0)?.get("error"))?;
    Some(short(e.as_str()?))
}

/// The series of the first statement's result: `{"results": [{"statement_id": 0, "series":
/// [{"name", "columns", "values"}…]}]}`. `Err` holds the statement's error; None when the body
/// is not a result.
pub fn parse_result(body: &[u8]) -> Option<Result<Vec<Series>, String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let first = v.get("results")?.as_array()?.first()?;
    if let Some(e) = first.get("error").and_then(Value::as_str) {
        return Some(Err(short(e)));
    }
    first.get("statement_id")?;
    let Some(series) = first.get("series") else {
        return Some(Ok(Vec::new()));
    };
    let series = series
        .as_array()?
        .iter()
        .map(|s| {
            let columns: Vec<String> = s
                .get("columns")?
                .as_array()?
                .iter()
                .map(|c| c.as_str().map(str::to_string))
                .collect::<Option<_>>()?;
            let values = match s.get("values") {
                None => Vec::new(),
                Some(v) => v
                    .as_array()?
                    .iter()
                    .map(|r| r.as_array().filter(|r| r.len() == columns.len()).cloned())
                    .collect::<Option<Vec<_>>>()?,
            };
            Some(Series {
                name: s
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                columns,
                values,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Ok(series))
}

pub use crate::inventory::flatten::json_cell as cell_text;

/// The server as a scan reads it: one budget for every statement.
pub struct Client {
    ctx: ProbeCtx,
    budget: Arc<Budget>,
    wait: Wait,
}

impl Client {
    pub fn new(ctx: &ProbeCtx, budget: Budget, wait: Wait) -> Client {
        Client {
            ctx: ctx.copy(),
            budget: Arc::new(budget),
            wait,
        }
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Runs an allowlisted statement; its series, within `cap` bytes of reply: the one
    /// function that sends.
    pub async fn query(
        &self,
        template: &str,
        args: &[Arg<'_>],
        cap: usize,
    ) -> Result<Vec<Series>, Failure> {
        let q = QUERIES.render(template, args).map_err(Failure::Refused)?;
        let mut s = Session::new(&self.ctx, self.budget.clone());
        s.set_wait(self.wait);
        s.connect().await?;
        let path = format!("/query?q={}", percent_encode(&q));
        let authority = self.ctx.authority();
        let req = Request {
            method: "GET",
            path: &path,
            host: &authority,
            basic_auth: None,
        };
        let cap = s.cap(cap);
        let r: Response = http::exchange(&mut s, &req, None, cap).await?;
        match (r.status, parse_result(&r.body)) {
            (200, Some(Ok(series))) => Ok(series),
            (status, Some(Err(message))) => Err(Failure::Server(ServerError { status, message })),
            (200, None) => Err(Failure::Unexpected {
                why: "a 200 that is no InfluxDB result".into(),
                head: r.body.iter().take(48).copied().collect(),
            }),
            (status, _) => Err(Failure::Server(ServerError {
                status,
                message: parse_error(&r.body).unwrap_or_default(),
            })),
        }
    }
}

/// A probe's read: within the probe's read timeout, a small byte allowance.
pub fn probe_budget() -> Budget {
    Budget::bytes_only(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_allowlisted() {
        for t in QUERIES.templates {
            assert!(t.starts_with("SHOW ") || t.starts_with("SELECT "), "{t}");
            let upper = t.to_ascii_uppercase();
            for word in [
                " INTO ", "CREATE", "DROP", "DELETE", "ALTER", "GRANT", "REVOKE", "KILL", "SET ",
            ] {
                assert!(!upper.contains(word), "{t}: {word}");
            }
            assert!(!t.contains(';'), "{t}");
        }
        assert!(QUERIES.render("DROP DATABASE x", &[]).is_err());
        assert_eq!(
            QUERIES
                .render(
                    SAMPLE,
                    &[Arg::Ident("db"), Arg::Ident("cpu \"load\""), Arg::Int(3)]
                )
                .unwrap(),
            "SELECT * FROM \"db\"..\"cpu \\\"load\\\"\" LIMIT 3"
        );
        // A name with a backslash is never sent (versions read it differently).
        assert!(QUERIES
            .render(COUNT, &[Arg::Ident("db"), Arg::Ident("a\\")])
            .is_err());
    }

    #[test]
    fn results_and_errors() {
        let body = br#"{"results":[{"statement_id":0,"series":[{"name":"users","columns":["time","email"],"values":[["2020-09-13T12:26:40Z","x@y.com"],["t",null]]}]}]}"#;
        let s = parse_result(body).unwrap().unwrap();
        assert_eq!(s[0].name, "users");
        assert_eq!(s[0].values[1][1], Value::Null);
        assert_eq!(
            parse_result(br#"{"results":[{"statement_id":0}]}"#),
            Some(Ok(Vec::new()))
        );
        assert_eq!(
            parse_result(br#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#),
            Some(Err("database not found: x".into()))
        );
        assert_eq!(
            parse_error(br#"{"error":"unable to parse authentication credentials"}"#).as_deref(),
            Some("unable to parse authentication credentials")
        );
        // Rows of the wrong width, a body that is no result.
        assert_eq!(
            parse_result(br#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["a"],"values":[[1,2]]}]}]}"#),
            None
        );
        assert_eq!(parse_result(b"404 page not found"), None);
    }
}
