//! Distinct people per table (`subjects_estimate`): PostgreSQL's own count, read-only.
//!
//! [`crate::subjects`] asks this module about tables whose person key (a column chosen by the
//! classifier) the sample could not settle. Tables are taken database by database, one session
//! each (logged in as the inventory does), and each table gets, cheapest exact method first:
//! 1. one catalogue query ([`LOOKUP`]): the table's `reltuples`, whether the key column is
//!    NOT NULL and the only column of a unique index (or the primary key), and its `pg_stats`
//!    figures, read now so that a slow count below needs no further statement;
//! 2. with such an index, one row is one person: the count is the table's exact row count
//!    (the inventory's when it counted, else `count(*)`, or `count(col)` when NULLs are
//!    allowed, since a unique index admits many NULLs), or `reltuples` when that count runs
//!    out of time;
//! 3. otherwise `count(DISTINCT col)`, exact; on a table of more than [`EXACT_ROWS`] rows
//!    first the same count over a sample of the *values* (those whose hash is 0 modulo a power
//!    of two), times the modulus: unbiased, with a stated error (±1–2 % on the 2.4 M-user lab),
//!    in a fraction of the time, since the server then sorts only that fraction of the values;
//!    the exact count follows when the sample held too few values to be precise;
//! 4. when a count runs out of time, `pg_stats.n_distinct`: ANALYZE's estimate from its
//!    sample of rows (negative values are a fraction of the rows), said so in the method. It
//!    can be far off (45 % low for the lab's devices, whose values repeat one to three times).
//!
//! Every statement runs like the inventory's, inside `BEGIN READ ONLY` … `ROLLBACK`, with
//! `SET LOCAL statement_timeout` = what is left of the table's budget and our own deadline a
//! little later, so the server itself cancels a slow count (SQLSTATE 57014), the session stays
//! in step, and the fallback is taken at once. Names reach SQL as quoted identifiers or quoted
//! literals through [`super::wire::render`] only.
//!
//! A person key one level inside a json/jsonb column (`profile.email`) is counted with `->>`
//! (exact, or nothing: no index or statistics describe it); deeper paths and array elements
//! (`devices[].owner`) are refused with a reason rather than guessed.

use std::sync::Arc;

use super::inventory::{cell, usable, Answer, Fail, Pg, Run};
use super::wire::{
    Arg, COUNT_DISTINCT, COUNT_DISTINCT_HASHED, COUNT_DISTINCT_KEY, COUNT_ROWS, COUNT_VALUES,
    LOOKUP,
};
use crate::driver::{
    self, exact_or, from_hashed, outer_column, value_modulus, Budget, Counting, Failure, Slot,
    Subjects, SubjectsBudget, SubjectsQuery, EXACT_ROWS,
};
use crate::inventory::Holding;

// ---------------------------------------------------------------------------------------------
// Tunables

/// SQLSTATE of a statement cancelled by `statement_timeout`, and of a `lock_timeout`.
const QUERY_CANCELED: &str = "57014";
const LOCK_NOT_AVAILABLE: &str = "55P03";

// ---------------------------------------------------------------------------------------------
// What is counted

/// Where the person key lives in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A plain column.
    Column(String),
    /// One key of a json/jsonb column (`profile.email` → `"profile" ->> 'email'`).
    JsonKey { column: String, key: String },
}

impl Target {
    fn column(&self) -> &str {
        match self {
            Target::Column(c) | Target::JsonKey { column: c, .. } => c,
        }
    }
}

/// The column (or json key) a flattened field path names, given the table's declared
/// columns. Without declared columns (not read) a path without `.` or `[]` is taken as a
/// column name and the catalogue lookup confirms it.
pub fn target(field: &str, columns: &[(String, String)]) -> Result<Target, String> {
    if columns.iter().any(|(c, _)| c == field)
        || (columns.is_empty() && !field.contains('.') && !field.contains("[]"))
    {
        return Ok(Target::Column(field.to_string()));
    }
    // Column names may hold dots themselves: the longest column the path starts with wins.
    let outer = outer_column(field, columns);
    let Some((column, ty)) = outer else {
        return Err(format!("{field} is not a column of the table"));
    };
    let key = &field[column.len()..];
    match key.strip_prefix('.') {
        Some(key)
            if matches!(ty.as_str(), "json" | "jsonb")
                && !key.is_empty()
                && !key.contains('.')
                && !key.contains("[]") =>
        {
            Ok(Target::JsonKey {
                column: column.clone(),
                key: key.to_string(),
            })
        }
        _ => Err(format!(
            "{field} is a path inside column {column} ({ty}), not a column: only a key one \
             level inside a json/jsonb column is counted"
        )),
    }
}

/// One [`LOOKUP`] row.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub schema: String,
    pub table: String,
    pub kind: char,
    /// `reltuples`; None when never analysed (or a partitioned table, whose own is -1 or 0).
    pub reltuples: Option<f64>,
    /// The column exists.
    pub column: bool,
    pub not_null: bool,
    /// A unique index (or the primary key) whose only column is this one.
    pub unique_index: Option<String>,
    pub null_frac: Option<f64>,
    /// `pg_stats.n_distinct`: > 0 a count, < 0 minus the fraction of rows, 0 unknown.
    pub n_distinct: Option<f64>,
}

fn float(v: Option<&str>) -> Option<f64> {
    v?.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// The facts of a [`LOOKUP`] answer: exactly one table must match.
pub fn parse_facts(answer: &Answer) -> Result<Facts, String> {
    if answer.columns.len() != 9 {
        return Err(format!(
            "catalogue lookup has {} columns, not 9",
            answer.columns.len()
        ));
    }
    let row = match answer.rows.as_slice() {
        [row] if answer.row_count == 1 => row,
        // Views and foreign tables are left out on purpose: counting them would run their
        // query, or make the server contact another host outside the scan's scope.
        [] => {
            return Err(
                "no such table (views and foreign tables are not counted; or dropped since \
                 the inventory)"
                    .into(),
            )
        }
        _ => {
            return Err(format!(
                "{} tables match the name (dots inside schema or table names)",
                answer.row_count
            ))
        }
    };
    let text = |i: usize| cell(row, i).map(str::to_string).ok_or("NULL name");
    let kind = cell(row, 2).and_then(|k| k.chars().next()).unwrap_or('?');
    Ok(Facts {
        schema: text(0)?,
        table: text(1)?,
        kind,
        reltuples: float(cell(row, 3)).filter(|&t| t >= 0.0 && !(kind == 'p' && t == 0.0)),
        column: cell(row, 4).is_some(),
        not_null: cell(row, 5) == Some("t"),
        unique_index: cell(row, 6).map(str::to_string),
        null_frac: float(cell(row, 7)).filter(|f| (0.0..=1.0).contains(f)),
        n_distinct: float(cell(row, 8)),
    })
}

/// Rows to scale estimates by: the exact count when the inventory made one, else `reltuples`,
/// else the inventory's own estimate (a partitioned table's, summed over its partitions).
fn rows(h: &Holding, facts: &Facts) -> Option<f64> {
    match (h.records, h.records_exact, facts.reltuples) {
        (Some(n), true, _) => Some(n as f64),
        (_, _, Some(t)) if t > 0.0 => Some(t),
        (n, _, t) => n.map(|n| n as f64).or(t),
    }
}

/// Distinct values from `pg_stats.n_distinct` and the rows: None when it says nothing (0).
pub fn from_n_distinct(n_distinct: f64, rows: Option<f64>) -> Option<u64> {
    if n_distinct > 0.0 {
        Some(n_distinct.round() as u64)
    } else if n_distinct < 0.0 {
        // -1 × distinct / rows (NULLs included) of the analysed table.
        rows.map(|r| (-n_distinct.max(-1.0) * r).round() as u64)
    } else {
        None
    }
}

/// How one statement ended, short of a broken connection.
type Got = driver::Got<Answer, super::wire::PgError>;

/// Runs one statement of `slot`, with the server told to stop at its end.
async fn within(pg: &mut Pg, slot: &Slot, template: &str, args: &[Arg<'_>]) -> Result<Got, Fail> {
    let ms = slot.millis_left();
    if ms == 0 {
        return Ok(Got::OutOfTime(slot.exceeded()));
    }
    pg.set_deadline(slot.wait_until());
    match pg.read_only_within(template, args, 2, ms).await {
        Ok(a) => Ok(Got::Answer(a)),
        Err(Failure::Server(e)) if e.code == QUERY_CANCELED => Ok(Got::OutOfTime(slot.exceeded())),
        Err(Failure::Server(e)) if e.code == LOCK_NOT_AVAILABLE => {
            Ok(Got::OutOfTime("waited too long for a lock".into()))
        }
        Err(Failure::Server(e)) => Ok(Got::Refused(e)),
        Err(e) => Err(e),
    }
}

/// The single number of a count answer.
fn number(a: &Answer) -> Result<u64, String> {
    a.rows
        .first()
        .and_then(|r| cell(r, 0))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "the count answered no number".to_string())
}

/// Counts one table's people on `pg`. The outer `Err` is a connection out of step; the inner
/// one a reason this table has no count.
async fn count(
    pg: &mut Pg,
    run: &Budget,
    q: &SubjectsQuery<'_>,
    budget: SubjectsBudget,
) -> Result<Result<Subjects, String>, Fail> {
    let h = q.holding;
    let Some((_, relation)) = h.name.split_once('.') else {
        return Ok(Err(format!(
            "{} is not named database.schema.table",
            h.name
        )));
    };
    let target = match target(&q.field, &h.schema) {
        Ok(t) => t,
        Err(why) => return Ok(Err(why)),
    };
    let slot = Slot::new(budget.per_container, run);

    let lookup = [Arg::Text(target.column()), Arg::Text(relation)];
    let facts = match within(pg, &slot, LOOKUP, &lookup).await? {
        Got::Answer(a) => match parse_facts(&a) {
            Ok(f) => f,
            Err(why) => return Ok(Err(why)),
        },
        Got::OutOfTime(why) => return Ok(Err(format!("the catalogue lookup {why}"))),
        Got::Refused(e) => return Ok(Err(format!("the catalogue lookup was refused: {e}"))),
    };
    if !facts.column {
        return Ok(Err(format!(
            "{} is not a column of {}",
            target.column(),
            h.name
        )));
    }
    let table = [Arg::Ident(&facts.schema), Arg::Ident(&facts.table)];
    let rows = rows(h, &facts);

    let col = match &target {
        Target::Column(c) => c.as_str(),
        Target::JsonKey { column, key } => {
            let args = [Arg::Ident(column), Arg::Text(key), table[0], table[1]];
            let got = within(pg, &slot, COUNT_DISTINCT_KEY, &args).await?;
            let counted = format!("count(DISTINCT {column} ->> '{key}')");
            return Ok(match got {
                Got::Answer(a) => number(&a).map(|n| Subjects {
                    count: n,
                    method: format!("{counted}, exact"),
                    interval: None,
                }),
                Got::OutOfTime(why) => Err(format!(
                    "{counted} {why}; no statistics describe a json key"
                )),
                Got::Refused(e) => Err(format!("{counted} refused: {e}")),
            });
        }
    };

    if let Some(index) = &facts.unique_index {
        let one_per_row = format!("unique index {index} on {col}: one person per row");
        if facts.not_null && h.records_exact {
            if let Some(n) = h.records {
                return Ok(Ok(Subjects {
                    count: n,
                    method: format!("{one_per_row}; the table's exact count(*) (inventory)"),
                    interval: None,
                }));
            }
        }
        let (template, what, args) = if facts.not_null {
            (COUNT_ROWS, "count(*)".to_string(), table.to_vec())
        } else {
            (
                COUNT_VALUES,
                format!("count({col})"),
                vec![Arg::Ident(col), table[0], table[1]],
            )
        };
        return Ok(match within(pg, &slot, template, &args).await? {
            Got::Answer(a) => number(&a).map(|n| Subjects {
                count: n,
                method: format!("{one_per_row}; the table's exact {what}"),
                interval: None,
            }),
            Got::OutOfTime(why) => match rows {
                Some(r) => {
                    let values = if facts.not_null {
                        r
                    } else {
                        r * (1.0 - facts.null_frac.unwrap_or(0.0))
                    };
                    Ok(Subjects {
                        count: values.round() as u64,
                        method: format!(
                            "{one_per_row}; the catalogue's row estimate (reltuples), since the \
                             exact {what} {why}"
                        ),
                        interval: None,
                    })
                }
                None => Err(format!(
                    "{what} {why} and the table was never analysed (no row estimate)"
                )),
            },
            Got::Refused(e) => Err(format!("{what} refused: {e}")),
        });
    }

    // Big tables: a sample of the values first; the exact count only when it saw too few.
    let counted = format!("count(DISTINCT {col})");
    let mut sampled = None;
    if let Some(r) = rows.filter(|&r| r > EXACT_ROWS) {
        let m = value_modulus(r);
        let args = [
            Arg::Ident(col),
            table[0],
            table[1],
            Arg::Ident(col),
            Arg::Int(i128::from(m - 1)),
        ];
        match within(pg, &slot, COUNT_DISTINCT_HASHED, &args)
            .await?
            .number(number)
        {
            Ok(driver::Got::Answer(k)) => match from_hashed(&counted, "hash", k, m) {
                Ok(estimate) => return Ok(Ok(estimate)),
                Err(loose) => sampled = Some(loose),
            },
            // No time left for an exact count either: the statistics.
            Ok(driver::Got::OutOfTime(why)) => return Ok(from_stats(col, &facts, rows, &why)),
            // A server without hashtext (a fork): the exact count may still work.
            Ok(driver::Got::Refused(_)) => {}
            Err(why) => return Ok(Err(why)),
        }
    }
    let args = [Arg::Ident(col), table[0], table[1]];
    let got = within(pg, &slot, COUNT_DISTINCT, &args).await?;
    Ok(got.number(number).and_then(|got| {
        exact_or(got, &counted, sampled, |why| {
            from_stats(col, &facts, rows, why)
        })
    }))
}

/// The `pg_stats.n_distinct` fallback, after a count ran out of time (`why`).
fn from_stats(col: &str, facts: &Facts, rows: Option<f64>, why: &str) -> Result<Subjects, String> {
    let Some((d, n)) = facts
        .n_distinct
        .and_then(|d| Some((d, from_n_distinct(d, rows)?)))
    else {
        return Err(format!(
            "count(DISTINCT {col}) {why}, and {col} has no statistics (never analysed)"
        ));
    };
    let figure = if d < 0.0 {
        format!("{d:.4} × {} rows", rows.unwrap_or(0.0).round())
    } else {
        format!("{d}")
    };
    Ok(Subjects {
        count: n,
        method: format!(
            "pg_stats.n_distinct of {col} ({figure}): a statistics estimate from ANALYZE's \
             sample (often low when values repeat a few times each), since count(DISTINCT) {why}"
        ),
        interval: None,
    })
}

/// The database a holding's name starts with (`smarthome.public.users` → `smarthome`).
fn database(h: &Holding) -> Option<&str> {
    h.name.split_once('.').map(|(db, _)| db)
}

/// The registered [`crate::driver::SubjectsFn`].
pub(super) async fn subjects(c: Counting<'_>) -> Vec<Result<Subjects, String>> {
    let (ctx, finding, opts, budget, queries) = (c.ctx, c.finding, c.opts, c.budget, c.queries);
    let mut run = Run {
        ctx,
        opts,
        cred: finding.credential,
        ssl: None,
        budget: Arc::new(budget.budget(queries.len(), opts.byte_budget)),
        notes: Vec::new(),
    };
    let mut out: Vec<Option<Result<Subjects, String>>> = vec![None; queries.len()];
    let mut databases: Vec<&str> = Vec::new();
    for q in queries {
        if let Some(db) = database(q.holding) {
            if !databases.contains(&db) {
                databases.push(db);
            }
        }
    }
    for db in databases {
        let mut pg: Option<Pg> = None;
        let mut login_failed: Option<String> = None;
        for (i, q) in queries.iter().enumerate() {
            if database(q.holding) != Some(db) {
                continue;
            }
            if let Some(why) = &login_failed {
                out[i] = Some(Err(why.clone()));
                continue;
            }
            if !run.time_left() || !run.bytes_left() {
                let what = if run.time_left() { "byte" } else { "time" };
                out[i] = Some(Err(format!("the {what} budget of the counts was spent")));
                continue;
            }
            let mut session = match pg.take() {
                Some(p) => p,
                None => match run.connect(db).await {
                    Ok(p) => p,
                    Err(e) => {
                        let why = format!("could not log in to {db}: {e}");
                        out[i] = Some(Err(why.clone()));
                        login_failed = Some(why);
                        continue;
                    }
                },
            };
            match count(&mut session, &run.budget, q, budget).await {
                Ok(answer) => {
                    out[i] = Some(answer);
                    pg = Some(session);
                }
                Err(e) => {
                    out[i] = Some(Err(e.to_string()));
                    if usable(&e) {
                        pg = Some(session);
                    } else {
                        // Out of step: the next table gets a fresh connection.
                        run.drop_conn(session);
                    }
                }
            }
        }
        if let Some(p) = pg {
            run.close(p).await;
        }
    }
    out.into_iter()
        .zip(queries)
        .map(|(o, q)| {
            o.unwrap_or_else(|| {
                Err(format!(
                    "{} is not named database.schema.table",
                    q.holding.name
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::Duration;

    use base64::Engine;

    use super::super::inventory::tests::{args_for, instance_of, query_sql, WRITE_WORDS};
    use super::super::wire::{messages_for_tests, render, ALLOWED_QUERIES, QUERY_TYPES};
    use super::*;
    use crate::driver::Finding;
    use crate::driver::ProbeOptions;
    use crate::driver::{from_value_sample, PRECISE_SAMPLE};
    use crate::inventory::InventoryOptions;
    use crate::model::Access;
    use crate::testkit::{fixture, frames, FakeServer, Reply};

    /// The lab's trust-auth PostgreSQL 15.18 (10 000 users) answering this module, recorded
    /// with `fixtures/postgresql/record_inventory.py` in front of it during
    /// `leakscope scan --sample 5`, plus a few statements sent by psql through the same
    /// recorder (the lookups of `email`, of a missing table and of a missing column, a `->>`
    /// on a text column, the value-sampled count of orders, and that of devices on the
    /// 2.4 M-user lab at 127.1.10.6): one JSON line per answer, keyed by statement.
    const SESSION: &str = include_str!("../../../fixtures/postgresql/subjects_session.jsonl");
    /// `SELECT count(DISTINCT "user_id") FROM "public"."devices"` after
    /// `SET LOCAL statement_timeout = 1`, the same way: ErrorResponse 57014, ReadyForQuery E.
    const TIMEOUT: &[u8] = fixture!("postgresql/subj_timeout.bin");

    fn normalise(sql: &str) -> String {
        if sql.starts_with("SET LOCAL statement_timeout = ") {
            "SET LOCAL statement_timeout".into()
        } else {
            sql.to_string()
        }
    }

    /// Statement (None: the startup) → recorded answer.
    fn recorded() -> HashMap<Option<String>, Vec<u8>> {
        SESSION
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let answer = base64::engine::general_purpose::STANDARD
                    .decode(v["answer"].as_str().unwrap())
                    .unwrap();
                (v["query"].as_str().map(normalise), answer)
            })
            .collect()
    }

    fn lookup_sql(column: &str, relation: &str) -> String {
        render(LOOKUP, &[Arg::Text(column), Arg::Text(relation)]).unwrap()
    }

    fn answer(bytes: &[u8]) -> Answer {
        let mut a = Answer::default();
        for m in messages_for_tests(bytes, QUERY_TYPES) {
            a.step(&m, 10).unwrap();
        }
        a
    }

    fn facts(column: &str, relation: &str) -> Result<Facts, String> {
        parse_facts(&answer(&recorded()[&Some(lookup_sql(column, relation))]))
    }

    // -- Rendering and the allowlist ---------------------------------------------------------

    #[test]
    fn the_new_statements_are_allowlisted_and_read_only() {
        for t in [LOOKUP, COUNT_VALUES, COUNT_DISTINCT, COUNT_DISTINCT_KEY] {
            assert!(ALLOWED_QUERIES.contains(&t), "{t}");
            assert!(t.starts_with("SELECT ") && !t.contains(';'), "{t}");
            let sql = render(t, &args_for(t)).unwrap();
            assert!(instance_of(&sql, t), "{sql}");
            let upper = t.to_ascii_uppercase();
            for w in upper.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                assert!(!WRITE_WORDS.contains(&w), "{w} in {t}");
            }
        }
    }

    #[test]
    fn text_values_are_literals_and_never_sql() {
        let quote_literal = |t| crate::driver::sql::Dialect::PostgreSql.quote_text(t);
        assert_eq!(quote_literal("users").unwrap(), "'users'");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        // A backslash: the E'' form, whose meaning does not depend on
        // standard_conforming_strings (a plain '\' would end the literal when it is off).
        assert_eq!(quote_literal("a\\'b").unwrap(), "E'a\\\\''b'");
        assert_eq!(quote_literal(""), Some("''".into()));
        assert_eq!(quote_literal("a\0b"), None);
        for evil in [
            "x' OR '1'='1",
            "x'); DROP TABLE users; --",
            "\\'; DROP TABLE users; --",
            "$TEXT",
        ] {
            let sql = render(LOOKUP, &[Arg::Text(evil), Arg::Text("public.users")]).unwrap();
            assert!(instance_of(&sql, LOOKUP), "{sql}");
            assert!(sql.ends_with("= 'public.users' AND c.relkind IN ('r', 'p', 'm')"));
        }
        let sql = render(
            COUNT_DISTINCT_KEY,
            &[
                Arg::Ident("profile"),
                Arg::Text("e'mail"),
                Arg::Ident("public"),
                Arg::Ident("users"),
            ],
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT count(DISTINCT \"profile\" ->> 'e''mail') FROM \"public\".\"users\""
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let three = [Arg::Ident("c"), Arg::Ident("s"), Arg::Ident("t")];
        for (t, args) in [
            // Near misses of the new templates are not on the list.
            (
                "SELECT count(DISTINCT $IDENT) FROM $IDENT.$IDENT; DROP TABLE x",
                three.to_vec(),
            ),
            (
                "SELECT count(DISTINCT $IDENT) FROM $IDENT.$IDENT FOR UPDATE",
                three.to_vec(),
            ),
            (
                "SELECT count(DISTINCT $IDENT) FROM $IDENT",
                three[..2].to_vec(),
            ),
            ("SELECT count(DISTINCT $TEXT) FROM $IDENT.$IDENT", vec![]),
            (
                "SELECT n_distinct FROM pg_stats WHERE attname = $TEXT",
                vec![],
            ),
            // The right template with arguments of the wrong kinds or number.
            (COUNT_DISTINCT, vec![Arg::Text("c"), three[1], three[2]]),
            (COUNT_DISTINCT, three[..2].to_vec()),
            (LOOKUP, vec![Arg::Ident("c"), Arg::Text("s.t")]),
            (LOOKUP, vec![Arg::Text("c")]),
            (LOOKUP, vec![Arg::Text("c\0"), Arg::Text("s.t")]),
            (
                COUNT_DISTINCT_KEY,
                vec![Arg::Ident("c"), Arg::Ident("k"), three[1], three[2]],
            ),
            (COUNT_VALUES, vec![Arg::Int(1), three[1], three[2]]),
        ] {
            assert!(render(t, &args).is_err(), "{t} {args:?}");
        }
    }

    // -- What is counted, and the parsers on recorded answers ---------------------------------

    #[test]
    fn columns_and_json_keys() {
        let cols: Vec<(String, String)> = [
            ("user_id", "uuid"),
            ("profile", "jsonb"),
            ("meta", "json"),
            ("raw", "text"),
            ("a.b", "text"),
        ]
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect();
        let col = |c: &str| Ok(Target::Column(c.into()));
        assert_eq!(target("user_id", &cols), col("user_id"));
        assert_eq!(target("a.b", &cols), col("a.b"));
        assert_eq!(
            target("profile.email", &cols),
            Ok(Target::JsonKey {
                column: "profile".into(),
                key: "email".into()
            })
        );
        assert!(target("meta.owner", &cols).is_ok());
        for (path, why) in [
            ("profile.contact.email", "only a key one level"),
            ("profile[].email", "only a key one level"),
            ("raw.email", "inside column raw (text)"),
            ("nothing", "not a column"),
        ] {
            let e = target(path, &cols).unwrap_err();
            assert!(e.contains(why), "{path}: {e}");
        }
        // No declared columns: a plain name is tried, a path is not.
        assert_eq!(target("uid", &[]), col("uid"));
        assert!(target("a.b", &[]).is_err());
    }

    #[test]
    fn real_catalogue_facts() {
        let users = facts("user_id", "public.users").unwrap();
        assert_eq!(
            users,
            Facts {
                schema: "public".into(),
                table: "users".into(),
                kind: 'r',
                reltuples: Some(10000.0),
                column: true,
                not_null: true,
                unique_index: Some("users_pkey".into()),
                null_frac: Some(0.0),
                n_distinct: Some(-1.0),
            }
        );
        let devices = facts("user_id", "public.devices").unwrap();
        assert_eq!(devices.unique_index, None);
        assert_eq!(devices.reltuples, Some(15890.0));
        // ANALYZE saw the whole small table: its estimate is the truth.
        let nd = devices.n_distinct.unwrap();
        assert_eq!(from_n_distinct(nd, devices.reltuples), Some(10000));
        // NOT NULL but not unique: counted, not taken from the row count.
        let email = facts("email", "public.users").unwrap();
        assert!(email.not_null && email.unique_index.is_none());
        assert!(!facts("nope", "public.users").unwrap().column);
        assert!(facts("user_id", "public.nope")
            .unwrap_err()
            .contains("no such table"));
        assert_eq!(from_n_distinct(250.0, None), Some(250));
        assert_eq!(from_n_distinct(-0.5, Some(1001.0)), Some(501));
        assert_eq!(from_n_distinct(-0.5, None), None);
        assert_eq!(from_n_distinct(0.0, Some(10.0)), None);
    }

    #[test]
    fn value_samples() {
        // About 40 000 sampled values when every row is a value; powers of two, bounded.
        assert_eq!(value_modulus(3_840_437.0), 128);
        assert_eq!(value_modulus(1_000_001.0), 32);
        assert_eq!(value_modulus(10.0), 8);
        assert_eq!(value_modulus(1e12), 4096);
        let (n, err) = from_value_sample(37_500, 64);
        assert_eq!(n, 2_400_000);
        assert!((err - 0.01006).abs() < 1e-4, "{err}");
        // At the precision floor: ± 4.4 %.
        let (_, err) = from_value_sample(PRECISE_SAMPLE, 64);
        assert!(err < 0.045, "{err}");
        assert_eq!(from_value_sample(0, 64).0, 0);
    }

    // -- Whole runs against a replaying server ----------------------------------------------

    #[derive(Default)]
    struct Seen {
        statements: Vec<String>,
        /// Statements outside a `BEGIN READ ONLY` … `ROLLBACK` block.
        outside: Vec<String>,
        connections: usize,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Replay,
        /// `count(DISTINCT)` of devices is cancelled by the server's statement_timeout.
        DistinctTimesOut,
        /// `count(DISTINCT)` of devices is never answered.
        DistinctStalls,
    }

    async fn replay(mode: Mode) -> (FakeServer, Arc<Mutex<Seen>>) {
        let rec = recorded();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let log = seen.clone();
        // Per connection: whether a transaction block is open.
        let in_txn: Mutex<HashMap<usize, bool>> = Mutex::default();
        let server = FakeServer::start(Vec::new(), frames::pg_message, move |m| {
            if m.index == 0 {
                log.lock().unwrap().connections += 1;
                return Reply::Send(rec[&None].clone());
            }
            let Some(sql) = query_sql(m) else {
                return Reply::Close;
            };
            {
                let mut seen = log.lock().unwrap();
                let mut txn = in_txn.lock().unwrap();
                let open = txn.entry(m.conn).or_default();
                seen.statements.push(sql.clone());
                match sql.as_str() {
                    "BEGIN READ ONLY" => *open = true,
                    "ROLLBACK" => *open = false,
                    _ if *open => {}
                    _ => seen.outside.push(sql.clone()),
                }
            }
            let devices = sql == "SELECT count(DISTINCT \"user_id\") FROM \"public\".\"devices\"";
            match mode {
                Mode::DistinctTimesOut if devices => Reply::Send(TIMEOUT.to_vec()),
                Mode::DistinctStalls if devices => Reply::Stall(Duration::from_secs(30)),
                _ => Reply::Send(rec[&Some(normalise(&sql))].clone()),
            }
        })
        .await;
        (server, seen)
    }

    use crate::testkit::table as holding;

    async fn ask(
        addr: SocketAddr,
        asks: &[(Holding, &str)],
        per_container: Duration,
    ) -> Vec<Result<Subjects, String>> {
        let ctx = crate::driver::test_ctx(addr, ProbeOptions::default());
        let mut f = Finding::new("postgresql");
        f.access = Access::Open;
        let queries: Vec<SubjectsQuery> = asks
            .iter()
            .map(|(h, field)| SubjectsQuery {
                holding: h,
                field: field.to_string(),
                field_type: None,
            })
            .collect();
        let budget = SubjectsBudget {
            per_container,
            until: None,
        };
        subjects(Counting {
            ctx: &ctx,
            finding: &f,
            opts: &InventoryOptions::default(),
            budget,
            queries: &queries,
        })
        .await
    }

    const UID: &[(&str, &str)] = &[("user_id", "uuid"), ("email", "text")];

    #[tokio::test]
    async fn every_method_against_a_recorded_server() {
        let (server, seen) = replay(Mode::Replay).await;
        let addr = server.addr();
        let asks = [
            // Counted exactly by the inventory: the unique key needs no statement.
            (
                holding("smarthome.public.users", 10000, true, UID),
                "user_id",
            ),
            // Only an estimate: the unique key's table is counted.
            (
                holding("smarthome.public.users", 9000, false, UID),
                "user_id",
            ),
            (
                holding("smarthome.public.devices", 15890, true, UID),
                "user_id",
            ),
            (
                holding("smarthome.public.orders", 10933, true, UID),
                "user_id",
            ),
            (holding("smarthome.public.nope", 1, false, UID), "user_id"),
            (
                holding("smarthome.public.users", 10000, true, UID),
                "email.x",
            ),
            (
                holding("smarthome.public.users", 10000, true, &[("email", "jsonb")]),
                "email.x",
            ),
            (
                holding("smarthome.public.users", 10000, true, UID),
                "profile[].id",
            ),
            // Big tables: a sample of the values (the 2.4 M lab's answer) ...
            (
                holding("smarthome.public.devices", 3_840_437, true, UID),
                "user_id",
            ),
            // ... unless it holds too few values to be precise: then the exact count.
            (
                holding("smarthome.public.orders", 2_639_728, true, UID),
                "user_id",
            ),
        ];
        let out = ask(addr, &asks, Duration::from_secs(10)).await;
        let ok = |i: usize| out[i].clone().unwrap();
        assert_eq!(
            ok(0),
            Subjects {
                count: 10000,
                method: "unique index users_pkey on user_id: one person per row; the table's \
                         exact count(*) (inventory)"
                    .into(),
                interval: None,
            }
        );
        assert_eq!(ok(1).count, 10000);
        assert!(
            ok(1).method.ends_with("the table's exact count(*)"),
            "{}",
            ok(1).method
        );
        assert_eq!(
            ok(2),
            Subjects {
                count: 10000,
                method: "count(DISTINCT user_id), exact".into(),
                interval: None,
            }
        );
        assert_eq!(ok(3).count, 6980);
        assert!(out[4].as_ref().unwrap_err().contains("no such table"));
        assert!(out[5]
            .as_ref()
            .unwrap_err()
            .contains("inside column email (text)"));
        // A json key is counted with ->>; this server's column is text, so it refuses.
        assert!(
            out[6].as_ref().unwrap_err().contains("42883"),
            "{:?}",
            out[6]
        );
        assert!(out[7].as_ref().unwrap_err().contains("not a column"));
        assert_eq!(
            ok(8),
            Subjects {
                count: 18713 * 128,
                method: "count(DISTINCT user_id) over the values whose hash is 0 modulo 128 \
                         (18713 values), × 128: an estimate within ±1.4 % (95 %)"
                    .into(),
                interval: Some([2361079, 2429449]),
            }
        );
        assert_eq!(
            ok(9),
            Subjects {
                count: 6980,
                method: "count(DISTINCT user_id), exact".into(),
                interval: None,
            }
        );

        let seen = seen.lock().unwrap();
        assert!(seen.outside.is_empty(), "{:?}", seen.outside);
        for sql in &seen.statements {
            assert!(ALLOWED_QUERIES.iter().any(|t| instance_of(sql, t)), "{sql}");
        }
        // One session for the database; no statement for the paths refused up front.
        assert_eq!(seen.connections, 1);
        assert!(seen.statements.contains(
            &"SELECT count(DISTINCT \"email\" ->> 'x') FROM \"public\".\"users\"".into()
        ));
        assert_eq!(
            seen.statements
                .iter()
                .filter(|s| s.starts_with("SELECT count("))
                .count(),
            7
        );
    }

    #[tokio::test]
    async fn a_cancelled_count_falls_back_to_the_statistics() {
        let (server, seen) = replay(Mode::DistinctTimesOut).await;
        let addr = server.addr();
        let asks = [
            (
                holding("smarthome.public.devices", 15890, true, UID),
                "user_id",
            ),
            (
                holding("smarthome.public.orders", 10933, true, UID),
                "user_id",
            ),
        ];
        let out = ask(addr, &asks, Duration::from_secs(10)).await;
        let s = out[0].clone().unwrap();
        assert_eq!(s.count, 10000);
        assert!(
            s.method
                .starts_with("pg_stats.n_distinct of user_id (-0.629")
                && s.method.contains("× 15890 rows): a statistics estimate")
                && s.method
                    .ends_with("since count(DISTINCT) exceeded the 10 s budget"),
            "{}",
            s.method
        );
        // The session survived the cancellation and answered the next table.
        assert_eq!(out[1].clone().unwrap().count, 6980);
        assert_eq!(seen.lock().unwrap().connections, 1);
    }

    #[tokio::test]
    async fn a_silent_server_costs_one_slot_and_the_next_table_a_new_session() {
        let (server, seen) = replay(Mode::DistinctStalls).await;
        let addr = server.addr();
        let asks = [
            (
                holding("smarthome.public.devices", 15890, true, UID),
                "user_id",
            ),
            (
                holding("smarthome.public.orders", 10933, true, UID),
                "user_id",
            ),
        ];
        let t = std::time::Instant::now();
        let out = ask(addr, &asks, Duration::from_millis(400)).await;
        // The slot and the grace for the server's own cancellation, not the 30 s stall.
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        assert!(
            out[0].as_ref().unwrap_err().contains("time budget"),
            "{out:?}"
        );
        assert_eq!(out[1].clone().unwrap().count, 6980);
        assert_eq!(seen.lock().unwrap().connections, 2);
    }
}
