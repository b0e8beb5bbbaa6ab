//! Distinct people per table (`subjects_estimate`): the MySQL or MariaDB server's own count,
//! read-only.
//!
//! [`crate::subjects`] asks this module about tables whose person key (a column chosen by the
//! classifier) the sample could not settle. One session, logged in and made read-only as the
//! inventory's is, takes the tables in order; each gets, cheapest exact method first:
//! 1. the table's indexes ([`super::wire::SHOW_INDEX`]: the data of `information_schema.STATISTICS`);
//! 2. a unique index whose only column is the key means one row per person: the count is the
//!    table's exact row count (the inventory's, when it was exact: MyISAM/Aria/MEMORY or
//!    `--full`), else `COUNT(col)` (NULLs are not people, and a unique index admits many).
//!    InnoDB's `TABLE_ROWS` is an estimate from index dives and is never taken as exact;
//! 3. otherwise `COUNT(DISTINCT col)`, exact; on a table estimated at more than
//!    [`EXACT_ROWS`] rows first the same count over a sample of the *values* (those whose CRC32
//!    is 0 modulo a power of two), times the modulus: unbiased, with a stated error (±1–2 % on
//!    the 2.4 M-user lab), in about the time of one scan (5.6 s where the exact count of the
//!    lab's 3.8 M-row devices takes MariaDB 34 s); the exact count follows when the sample held
//!    too few values to be precise;
//! 4. when a count runs out of time, the index statistic: `CARDINALITY` of an index that starts
//!    with the key (InnoDB's estimate from sampled pages), said so in the method.
//!
//! Each count carries its own server-side time limit, chosen by the server version from the
//! handshake: MariaDB 10.1.2+ `SET STATEMENT max_statement_time = s FOR SELECT …`, MySQL
//! 5.7.8+ the `MAX_EXECUTION_TIME(ms)` optimizer hint. The server then abandons a slow count
//! itself (ER_STATEMENT_TIMEOUT 1969, ER_QUERY_TIMEOUT 3024), the session stays in step, and the
//! fallback follows at once; our own deadline comes a little later. Servers without either are
//! only asked to count tables whose row estimate is small.
//!
//! Only plain columns are counted: a person key inside a JSON text column (`prefs.email`)
//! would need a JSON path literal in SQL, and no index or statistic describes it.

use std::sync::Arc;
use std::time::Duration;

use super::inventory::{Failure, Session};
use super::wire::{
    product_version, Arg, ResultSet, ServerError, COUNT_DISTINCT, COUNT_DISTINCT_HASHED_MARIADB,
    COUNT_DISTINCT_HASHED_MYSQL, COUNT_DISTINCT_MARIADB, COUNT_DISTINCT_MYSQL, COUNT_VALUES,
    COUNT_VALUES_MARIADB, COUNT_VALUES_MYSQL, SHOW_INDEX,
};
use crate::driver::{
    self, exact_or, from_hashed, outer_column, value_modulus, Budget, Counting, Slot, Subjects,
    SubjectsQuery, EXACT_ROWS,
};

/// Servers without a statement time limit count only tables estimated at most this big.
const UNLIMITED_ROWS: u64 = 1_000_000;
/// Index columns read from one table's listing (MySQL allows 64 indexes of 16 columns).
const MAX_INDEX_ROWS: usize = 64 * 16;
/// Times a connection left out of step is reopened before the rest get no answer.
const MAX_REOPEN: usize = 2;
/// Errors of a statement stopped by a time limit: ER_STATEMENT_TIMEOUT (MariaDB),
/// ER_QUERY_TIMEOUT (MySQL), ER_QUERY_INTERRUPTED, ER_LOCK_WAIT_TIMEOUT.
const OUT_OF_TIME: &[u16] = &[1969, 3024, 1317, 1205];
/// ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR: this split of a dotted name is not the table.
const NOT_THIS_SPLIT: &[u16] = &[1146, 1049];

/// The server's own statement time limit, by version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLimit {
    /// `SET STATEMENT max_statement_time = s FOR …` (MariaDB 10.1.2+).
    MariaDb,
    /// `SELECT /*+ MAX_EXECUTION_TIME(ms) */ …` (MySQL 5.7.8+).
    MySql,
    /// Neither: only the client's deadline.
    None,
}

/// The limit a server of this handshake version understands.
pub fn time_limit(server_version: &str) -> TimeLimit {
    let (product, version) = product_version(server_version);
    let mut parts = version
        .as_deref()
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    match product {
        "MariaDB" if v >= (10, 1, 2) => TimeLimit::MariaDb,
        "MySQL" if v >= (5, 7, 8) => TimeLimit::MySql,
        _ => TimeLimit::None,
    }
}

/// The template and time argument of a count: `distinct` values, or non-NULL values.
fn count_template(limit: TimeLimit, distinct: bool, ms: u64) -> (&'static str, Option<i128>) {
    let secs = i128::from(ms.div_ceil(1000).max(1));
    match (limit, distinct) {
        (TimeLimit::MariaDb, true) => (COUNT_DISTINCT_MARIADB, Some(secs)),
        (TimeLimit::MariaDb, false) => (COUNT_VALUES_MARIADB, Some(secs)),
        (TimeLimit::MySql, true) => (COUNT_DISTINCT_MYSQL, Some(i128::from(ms.max(1)))),
        (TimeLimit::MySql, false) => (COUNT_VALUES_MYSQL, Some(i128::from(ms.max(1)))),
        (TimeLimit::None, true) => (COUNT_DISTINCT, None),
        (TimeLimit::None, false) => (COUNT_VALUES, None),
    }
}

/// One row of the index listing: one column of one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPart {
    pub index: String,
    pub unique: bool,
    /// Position of the column in the index, from 1.
    pub seq: u32,
    /// None for an expression (MySQL 8 functional index part).
    pub column: Option<String>,
    /// The server's estimate of distinct values of the index prefix ending here.
    pub cardinality: Option<u64>,
    pub nullable: bool,
}

/// Index parts from a [`SHOW_INDEX`] answer, by column label (their number and order differ
/// between MySQL and MariaDB versions).
pub fn parse_indexes(set: &ResultSet) -> Result<Vec<IndexPart>, String> {
    let at = |label: &str| set.names.iter().position(|n| n.eq_ignore_ascii_case(label));
    let (Some(name), Some(non_unique), Some(seq), Some(column)) = (
        at("Key_name"),
        at("Non_unique"),
        at("Seq_in_index"),
        at("Column_name"),
    ) else {
        return Err(format!("index listing not understood: {:?}", set.names));
    };
    let (cardinality, nullable) = (at("Cardinality"), at("Null"));
    let get = |row: &[Option<String>], i: Option<usize>| -> Option<String> {
        row.get(i?).cloned().flatten()
    };
    Ok(set
        .rows
        .iter()
        .filter_map(|row| {
            Some(IndexPart {
                index: get(row, Some(name))?,
                unique: get(row, Some(non_unique))?.trim() == "0",
                seq: get(row, Some(seq))?.trim().parse().ok()?,
                column: get(row, Some(column)),
                cardinality: get(row, cardinality).and_then(|c| c.trim().parse().ok()),
                nullable: get(row, nullable).is_some_and(|n| n.trim() == "YES"),
            })
        })
        .collect())
}

/// What the indexes say about one column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFacts {
    /// A unique index whose only column is this one (PRIMARY first), and whether the column
    /// admits NULL.
    pub unique: Option<(String, bool)>,
    /// The cardinality of the best index that starts with the column.
    pub leading: Option<(String, u64)>,
}

/// Column names compare without case in MySQL.
fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

pub fn key_facts(parts: &[IndexPart], column: &str) -> KeyFacts {
    let width = |index: &str| parts.iter().filter(|p| p.index == index).count();
    let on_column = |p: &&IndexPart| p.column.as_deref().is_some_and(|c| same(c, column));
    let mut unique: Vec<&IndexPart> = parts
        .iter()
        .filter(on_column)
        .filter(|p| p.unique && p.seq == 1 && width(&p.index) == 1)
        .collect();
    unique.sort_by_key(|p| p.index != "PRIMARY");
    // A single-column index counts this column alone; a wider one that starts with it
    // reports the distinct values of its first column at seq 1 too (per-prefix statistics).
    let mut leading: Vec<&IndexPart> = parts
        .iter()
        .filter(on_column)
        .filter(|p| p.seq == 1 && p.cardinality.is_some())
        .collect();
    leading.sort_by_key(|p| (width(&p.index), std::cmp::Reverse(p.cardinality)));
    KeyFacts {
        unique: unique.first().map(|p| (p.index.clone(), p.nullable)),
        leading: leading
            .first()
            .and_then(|p| Some((p.index.clone(), p.cardinality?))),
    }
}

/// The column a flattened field path names, given the table's declared columns.
pub fn column<'a>(field: &'a str, columns: &[(String, String)]) -> Result<&'a str, String> {
    if columns.iter().any(|(c, _)| same(c, field))
        || (columns.is_empty() && !field.contains('.') && !field.contains("[]"))
    {
        return Ok(field);
    }
    let outer = outer_column(field, columns);
    Err(match outer {
        Some((c, ty)) => format!(
            "{field} is a path inside column {c} ({ty}), not a column: JSON values are not counted"
        ),
        None => format!("{field} is not a column of the table"),
    })
}

/// The (database, table) readings of a `database.table` name, first dot first: either part
/// may contain dots itself, and the server tells which reading exists.
fn splits(name: &str) -> Vec<(&str, &str)> {
    name.match_indices('.')
        .map(|(i, _)| (&name[..i], &name[i + 1..]))
        .filter(|(d, t)| !d.is_empty() && !t.is_empty())
        .collect()
}

/// How one statement ended, short of a broken connection.
type Got = driver::Got<ResultSet, ServerError>;

/// Runs one statement of `slot`, with our deadline a little after the server's.
async fn within(
    s: &mut Session,
    slot: &Slot,
    template: &'static str,
    args: &[Arg<'_>],
) -> Result<Got, Failure> {
    // A count answers one row; an index listing one row per index column.
    let rows = if template == SHOW_INDEX {
        MAX_INDEX_ROWS
    } else {
        1
    };
    s.set_deadline(Some(slot.wait_until()));
    let r = s.query(template, args, rows).await;
    s.set_deadline(None);
    match r {
        Ok(set) => Ok(Got::Answer(set)),
        Err(Failure::Server(e)) if OUT_OF_TIME.contains(&e.code) => {
            Ok(Got::OutOfTime(format!("{} ({e})", slot.exceeded())))
        }
        Err(Failure::Server(e)) => Ok(Got::Refused(e)),
        Err(e) => Err(e),
    }
}

fn number(set: &ResultSet) -> Result<u64, String> {
    set.rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "the count answered no number".to_string())
}

/// Counts one table's people. The outer `Err` leaves the session unusable; the inner one is
/// why this table has no count.
async fn count(
    s: &mut Session,
    total: &Budget,
    limit: TimeLimit,
    q: &SubjectsQuery<'_>,
    share: Duration,
) -> Result<Result<Subjects, String>, Failure> {
    let h = q.holding;
    // The inventory lists views with neither rows nor bytes; counting one would run its
    // query, whose cost is unknown.
    if h.records.is_none() && h.bytes.is_none() {
        return Ok(Err(format!(
            "{} is a view (or has no catalogue figures): not counted",
            h.name
        )));
    }
    let col = match column(&q.field, &h.schema) {
        Ok(c) => c,
        Err(why) => return Ok(Err(why)),
    };
    let slot = Slot::new(share, total);
    let mut found = None;
    for (db, table) in splits(&h.name) {
        let args = [Arg::Ident(db), Arg::Ident(table)];
        match within(s, &slot, SHOW_INDEX, &args).await? {
            Got::Answer(set) => {
                found = Some((db, table, set));
                break;
            }
            Got::Refused(e) if NOT_THIS_SPLIT.contains(&e.code) => continue,
            Got::Refused(e) => return Ok(Err(format!("the index listing was refused: {e}"))),
            Got::OutOfTime(why) => return Ok(Err(format!("the index listing {why}"))),
        }
    }
    let Some((db, table, set)) = found else {
        return Ok(Err(format!("no table {} on the server", h.name)));
    };
    let facts = match parse_indexes(&set) {
        Ok(parts) => key_facts(&parts, col),
        Err(why) => return Ok(Err(why)),
    };

    // What a count costs where the server cannot stop it: only small tables are counted.
    let unaffordable = limit == TimeLimit::None && h.records.is_none_or(|r| r > UNLIMITED_ROWS);
    let ms = slot.millis_left();
    let run = |distinct: bool| {
        let (template, time) = count_template(limit, distinct, ms);
        let mut args: Vec<Arg> = time.map(Arg::Int).into_iter().collect();
        args.extend([Arg::Ident(col), Arg::Ident(db), Arg::Ident(table)]);
        (template, args)
    };
    let skipped = || {
        if ms == 0 {
            slot.exceeded()
        } else {
            format!(
                "was not run: this server has no statement time limit and the table may hold \
                 more than {UNLIMITED_ROWS} rows"
            )
        }
    };

    if let Some((index, nullable)) = &facts.unique {
        let one_per_row = format!("unique index {index} on {col}: one person per row");
        if !nullable && h.records_exact {
            if let Some(n) = h.records {
                return Ok(Ok(Subjects {
                    count: n,
                    method: format!("{one_per_row}; the table's exact row count (inventory)"),
                    interval: None,
                }));
            }
        }
        let got = if unaffordable || ms == 0 {
            Got::OutOfTime(skipped())
        } else {
            let (template, args) = run(false);
            within(s, &slot, template, &args).await?
        };
        return Ok(match got {
            Got::Answer(set) => number(&set).map(|n| Subjects {
                count: n,
                method: format!("{one_per_row}; the table's exact COUNT({col})"),
                interval: None,
            }),
            Got::OutOfTime(why) => match &facts.leading {
                Some((ix, n)) => Ok(Subjects {
                    count: *n,
                    method: format!(
                        "{one_per_row}; CARDINALITY of index {ix}, the server's row estimate \
                         (InnoDB samples it), since the exact COUNT({col}) {why}"
                    ),
                    interval: None,
                }),
                None => Err(format!(
                    "COUNT({col}) {why}, and the index has no cardinality"
                )),
            },
            Got::Refused(e) => Err(format!("COUNT({col}) refused: {e}")),
        });
    }

    // Big tables: a sample of the values first; the exact count only when it saw too few.
    let counted = format!("COUNT(DISTINCT {col})");
    let mut sampled = None;
    let big = h.records.filter(|&r| r as f64 > EXACT_ROWS);
    if let (Some(r), false, false) = (big, unaffordable, ms == 0) {
        let m = value_modulus(r as f64);
        let (template, time) = match limit {
            TimeLimit::MariaDb => (COUNT_DISTINCT_HASHED_MARIADB, ms.div_ceil(1000).max(1)),
            _ => (COUNT_DISTINCT_HASHED_MYSQL, ms.max(1)),
        };
        let args = [
            Arg::Int(i128::from(time)),
            Arg::Ident(col),
            Arg::Ident(db),
            Arg::Ident(table),
            Arg::Ident(col),
            Arg::Int(i128::from(m)),
        ];
        match within(s, &slot, template, &args).await?.number(number) {
            Ok(driver::Got::Answer(k)) => match from_hashed(&counted, "CRC32", k, m) {
                Ok(estimate) => return Ok(Ok(estimate)),
                Err(loose) => sampled = Some(loose),
            },
            Ok(driver::Got::OutOfTime(why)) => {
                return Ok(from_cardinality(col, &facts, "COUNT(DISTINCT)", &why))
            }
            Ok(driver::Got::Refused(_)) => {}
            Err(why) => return Ok(Err(why)),
        }
    }
    let ms = slot.millis_left();
    let got = if unaffordable || ms == 0 {
        Got::OutOfTime(skipped())
    } else {
        let (template, time) = count_template(limit, true, ms);
        let mut args: Vec<Arg> = time.map(Arg::Int).into_iter().collect();
        args.extend([Arg::Ident(col), Arg::Ident(db), Arg::Ident(table)]);
        within(s, &slot, template, &args).await?
    };
    Ok(got.number(number).and_then(|got| {
        exact_or(got, &counted, sampled, |why| {
            from_cardinality(col, &facts, "COUNT(DISTINCT)", why)
        })
    }))
}

/// The index statistic, after a count (`what`) ran out of time (`why`).
fn from_cardinality(
    col: &str,
    facts: &KeyFacts,
    what: &str,
    why: &str,
) -> Result<Subjects, String> {
    match &facts.leading {
        Some((ix, n)) => Ok(Subjects {
            count: *n,
            method: format!(
                "CARDINALITY of index {ix} on {col}: the server's index statistic (InnoDB \
                 estimates it from sampled pages), since {what} {why}"
            ),
            interval: None,
        }),
        None => Err(format!(
            "{what} of {col} {why}, and no index statistic covers {col}"
        )),
    }
}

/// The registered [`crate::driver::SubjectsFn`].
pub(super) async fn subjects(c: Counting<'_>) -> Vec<Result<Subjects, String>> {
    let (ctx, finding, opts, budget, queries) = (c.ctx, c.finding, c.opts, c.budget, c.queries);
    let all = |why: String| queries.iter().map(|_| Err(why.clone())).collect();
    let user = match finding.credential {
        Some(c) if c.password.is_empty() => c.user,
        _ => return all("no credential this client can log in with".into()),
    };
    let total = Arc::new(budget.budget(queries.len(), opts.byte_budget));
    let maria = finding.product.as_deref() == Some("MariaDB");
    let mut notes = Vec::new();
    let mut session: Option<Session> = None;
    let mut reopened = 0;
    let mut login_failed: Option<String> = None;
    let mut out = Vec::with_capacity(queries.len());
    for q in queries {
        if let Some(why) = &login_failed {
            out.push(Err(why.clone()));
            continue;
        }
        if let Some(spent) = total.spent() {
            out.push(Err(format!(
                "the {} of the counts was spent",
                spent.budget()
            )));
            continue;
        }
        if session.as_ref().is_some_and(|s| s.broken()) {
            if reopened >= MAX_REOPEN {
                out.push(Err("the connection broke too often".into()));
                continue;
            }
            reopened += 1;
            session = None;
        }
        let s = match &mut session {
            Some(s) => s,
            None => match Session::open(ctx, user, maria, &total, &mut notes).await {
                Ok(s) => session.insert(s),
                Err(e) => {
                    let why = format!("login failed: {e}");
                    out.push(Err(why.clone()));
                    login_failed = Some(why);
                    continue;
                }
            },
        };
        let limit = time_limit(&s.server_version);
        match count(s, &total, limit, q, budget.per_container).await {
            Ok(answer) => out.push(answer),
            Err(e) => out.push(Err(e.to_string())),
        }
    }
    if let Some(s) = session {
        s.quit().await;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::driver::ProbeOptions;
    use crate::driver::{Finding, SubjectsBudget};
    use crate::inventory::Holding;
    use crate::inventory::InventoryOptions;
    use crate::protocols::mysql::probe::ROOT_EMPTY;
    use crate::protocols::mysql::wire::tests::{matches_template, packets};
    use crate::protocols::mysql::wire::{QueryReply, ResultReader, ALLOWED_QUERIES};

    // Answers of the lab's MariaDB 10.11.19 (`mariadb-root-nopass`, 10 000 users), recorded
    // with `fixtures/mysql/capture_inventory.py 127.0.12.2 'NAME.bin=SQL' …` inside a
    // read-only transaction; the statements are in each constant's comment.
    const SET_OK: &[u8] = fixture!("mysql/inv_set_ok.bin");
    /// SHOW INDEX FROM `smarthome`.`users`: PRIMARY (user_id).
    const INDEX_USERS: &[u8] = fixture!("mysql/subj_show_index_users.bin");
    /// SHOW INDEX FROM `smarthome`.`devices`: PRIMARY (device_id), nothing on user_id.
    const INDEX_DEVICES: &[u8] = fixture!("mysql/subj_show_index_devices.bin");
    /// SHOW INDEX FROM `smarthome`.`orders`: PRIMARY (order_id).
    const INDEX_ORDERS: &[u8] = fixture!("mysql/subj_show_index_orders.bin");
    /// SHOW INDEX FROM `mysql`.`help_relation` (Aria, never analysed): PRIMARY
    /// (help_keyword_id, help_topic_id) and help_topic_id, cardinality NULL at seq 1.
    const INDEX_RELATION: &[u8] = fixture!("mysql/subj_show_index_help_relation.bin");
    /// SHOW INDEX FROM `mysql`.`help_topic`: PRIMARY (help_topic_id), UNIQUE name.
    const INDEX_TOPIC: &[u8] = fixture!("mysql/subj_show_index_help_topic.bin");
    /// SHOW INDEX FROM `mysql`.`innodb_table_stats` (InnoDB): PRIMARY (database_name,
    /// table_name), cardinality 6 at seq 1 (the table holds 3 distinct database names).
    const INDEX_TABLE_STATS: &[u8] = fixture!("mysql/subj_show_index_table_stats.bin");
    /// SHOW INDEX FROM `smarthome`.`nope`: ERR 1146.
    const NO_TABLE: &[u8] = fixture!("mysql/subj_no_such_table.bin");
    /// SET STATEMENT max_statement_time = 10 FOR SELECT COUNT(`user_id`) FROM `smarthome`.`users`
    const COUNT_USERS: &[u8] = fixture!("mysql/subj_count_values.bin");
    /// … COUNT(DISTINCT `user_id`) FROM `smarthome`.`devices`: 10 000.
    const DISTINCT_DEVICES: &[u8] = fixture!("mysql/subj_count_distinct.bin");
    /// … COUNT(DISTINCT `user_id`) FROM `smarthome`.`devices` WHERE CRC32(`user_id`) % 128 = 0
    /// on the 2.4 M-user lab's MariaDB (127.1.12.2): 18 627.
    const HASHED_BIG: &[u8] = fixture!("mysql/subj_count_hashed_big.bin");
    /// The same of `orders` on the 10 000-user lab: 60 values.
    const HASHED_SMALL: &[u8] = fixture!("mysql/subj_count_hashed_small.bin");
    /// The same with max_statement_time = 0.001: ERR 1969 after the column definitions.
    const TIMED_OUT: &[u8] = fixture!("mysql/subj_count_distinct_timeout.bin");

    fn rows(bytes: &[u8]) -> ResultSet {
        let mut r = ResultReader::with_rows(1 << 20, 1000);
        for (_, p) in packets(bytes) {
            match r.feed(&p).unwrap() {
                Some(QueryReply::Rows(set)) => return set,
                Some(other) => panic!("{other:?}"),
                None => {}
            }
        }
        panic!("answer did not end")
    }

    #[test]
    fn the_time_limit_follows_the_handshake_version() {
        for (v, want) in [
            ("5.5.5-10.11.19-MariaDB-0+deb12u1", TimeLimit::MariaDb),
            ("11.4.2-MariaDB", TimeLimit::MariaDb),
            ("5.5.5-10.1.2-MariaDB", TimeLimit::MariaDb),
            ("5.5.5-10.1.1-MariaDB", TimeLimit::None),
            ("5.5.5-10.0.38-MariaDB", TimeLimit::None),
            ("8.0.36", TimeLimit::MySql),
            ("5.7.8-log", TimeLimit::MySql),
            ("5.7.7-rc", TimeLimit::None),
            ("5.6.51", TimeLimit::None),
            ("garbage", TimeLimit::None),
        ] {
            assert_eq!(time_limit(v), want, "{v}");
        }
        // MariaDB counts whole seconds (rounded up, so never below the budget), MySQL ms.
        assert_eq!(
            count_template(TimeLimit::MariaDb, true, 9_001),
            (COUNT_DISTINCT_MARIADB, Some(10))
        );
        assert_eq!(
            count_template(TimeLimit::MariaDb, false, 1),
            (COUNT_VALUES_MARIADB, Some(1))
        );
        assert_eq!(
            count_template(TimeLimit::MySql, true, 9_001),
            (COUNT_DISTINCT_MYSQL, Some(9_001))
        );
        assert_eq!(
            count_template(TimeLimit::None, true, 9_001),
            (COUNT_DISTINCT, None)
        );
    }

    #[test]
    fn real_index_listings() {
        let users = parse_indexes(&rows(INDEX_USERS)).unwrap();
        assert_eq!(
            key_facts(&users, "user_id"),
            KeyFacts {
                unique: Some(("PRIMARY".into(), false)),
                leading: Some(("PRIMARY".into(), 9532)),
            }
        );
        // Column names compare without case; another column has no index.
        assert!(key_facts(&users, "USER_ID").unique.is_some());
        assert_eq!(key_facts(&users, "email"), KeyFacts::default());
        let devices = parse_indexes(&rows(INDEX_DEVICES)).unwrap();
        assert_eq!(key_facts(&devices, "user_id"), KeyFacts::default());
        assert!(key_facts(&devices, "device_id").unique.is_some());
        // A two-column primary key: not unique on its first column, but InnoDB's statistic
        // for that column (seq 1) is an estimate of its distinct values.
        let stats = parse_indexes(&rows(INDEX_TABLE_STATS)).unwrap();
        assert_eq!(
            key_facts(&stats, "database_name"),
            KeyFacts {
                unique: None,
                leading: Some(("PRIMARY".into(), 6)),
            }
        );
        assert_eq!(key_facts(&stats, "table_name"), KeyFacts::default());
        // Never analysed (Aria): no statistic at all, and none invented.
        let relation = parse_indexes(&rows(INDEX_RELATION)).unwrap();
        assert_eq!(relation.len(), 3);
        assert_eq!(key_facts(&relation, "help_keyword_id"), KeyFacts::default());
        assert_eq!(key_facts(&relation, "help_topic_id"), KeyFacts::default());
        // A unique secondary index.
        let topic = parse_indexes(&rows(INDEX_TOPIC)).unwrap();
        assert_eq!(
            key_facts(&topic, "name").unique,
            Some(("name".into(), false))
        );
        assert!(parse_indexes(&ResultSet::default()).is_err());
    }

    #[test]
    fn synthetic_index_shapes() {
        let part =
            |index: &str, unique: bool, seq: u32, column: &str, card: u64, null: bool| IndexPart {
                index: index.into(),
                unique,
                seq,
                column: (!column.is_empty()).then(|| column.into()),
                cardinality: Some(card),
                nullable: null,
            };
        let parts = [
            part("u_email", true, 1, "email", 90, true),
            part("by_mail_day", false, 1, "email", 80, true),
            part("by_mail_day", false, 2, "day", 95, false),
            part("expr", true, 1, "", 50, false),
            part("PRIMARY", true, 1, "id", 100, false),
        ];
        // A nullable unique column: its NULLs are counted out, not taken as people.
        let f = key_facts(&parts, "email");
        assert_eq!(f.unique, Some(("u_email".into(), true)));
        // The single-column index's statistic before a wider one's.
        assert_eq!(f.leading, Some(("u_email".into(), 90)));
        assert_eq!(key_facts(&parts, "day"), KeyFacts::default());
    }

    #[test]
    fn only_plain_columns_are_counted() {
        let cols: Vec<(String, String)> = [("user_id", "char(36)"), ("prefs", "longtext")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(column("user_id", &cols), Ok("user_id"));
        assert!(column("prefs.email", &cols)
            .unwrap_err()
            .contains("inside column prefs"));
        assert!(column("devices[].owner", &cols)
            .unwrap_err()
            .contains("not a column"));
        assert_eq!(column("uid", &[]), Ok("uid"));
        assert!(column("a.b", &[]).is_err());
        assert_eq!(
            splits("odd.db.t"),
            [("odd", "db.t"), ("odd.db", "t")],
            "every reading, first dot first"
        );
        assert!(splits("nodot").is_empty() && splits(".x").is_empty());
    }

    // ---- end to end against a fake MariaDB that answers with the recorded replies ----

    use super::super::inventory::tests::sql_sent;
    use crate::testkit::{fixture, FakeServer};

    fn answer(sql: &str) -> &'static [u8] {
        if sql.starts_with("SET SESSION") || sql.starts_with("START ") {
            SET_OK
        } else if sql == "SHOW INDEX FROM `smarthome`.`users`" {
            INDEX_USERS
        } else if sql == "SHOW INDEX FROM `smarthome`.`devices`" {
            INDEX_DEVICES
        } else if sql == "SHOW INDEX FROM `smarthome`.`orders`" {
            INDEX_ORDERS
        } else if sql == "SHOW INDEX FROM `mysql`.`help_relation`" {
            INDEX_RELATION
        } else if sql == "SHOW INDEX FROM `mysql`.`innodb_table_stats`" {
            INDEX_TABLE_STATS
        } else if sql.starts_with("SHOW INDEX") {
            NO_TABLE
        } else if sql.ends_with("FROM `smarthome`.`devices` WHERE CRC32(`user_id`) % 128 = 0") {
            HASHED_BIG
        } else if sql.ends_with("FROM `smarthome`.`orders` WHERE CRC32(`user_id`) % 128 = 0") {
            HASHED_SMALL
        } else if sql.contains("COUNT(`user_id`) FROM `smarthome`.`users`") {
            COUNT_USERS
        } else if sql.contains("COUNT(DISTINCT `user_id`) FROM `smarthome`.`devices`") {
            DISTINCT_DEVICES
        } else {
            TIMED_OUT
        }
    }

    async fn fake_mariadb(stall: Option<&'static str>) -> FakeServer {
        super::super::inventory::tests::fake_mariadb_answering(answer, stall).await
    }

    use crate::testkit::table as holding;

    fn finding() -> Finding {
        let mut f = Finding::new("mysql");
        f.product = Some("MariaDB".into());
        f.access = crate::model::Access::DefaultCredentials;
        f.credential = Some(ROOT_EMPTY);
        f
    }

    async fn ask(
        addr: SocketAddr,
        holdings: &[Holding],
        fields: &[&str],
        per_container: Duration,
    ) -> Vec<Result<Subjects, String>> {
        let ctx = crate::driver::test_ctx(addr, ProbeOptions::default());
        let queries: Vec<SubjectsQuery> = holdings
            .iter()
            .zip(fields)
            .map(|(h, f)| SubjectsQuery {
                holding: h,
                field: f.to_string(),
                field_type: None,
            })
            .collect();
        let budget = SubjectsBudget {
            per_container,
            until: None,
        };
        subjects(Counting {
            ctx: &ctx,
            finding: &finding(),
            opts: &InventoryOptions::default(),
            budget,
            queries: &queries,
        })
        .await
    }

    #[tokio::test]
    async fn every_method_against_recorded_answers() {
        let server = fake_mariadb(None).await;
        let addr = server.addr();
        let uid = [("user_id", "char(36)")];
        let holdings = [
            // InnoDB's TABLE_ROWS (9532) is an estimate: the unique key is counted.
            holding("smarthome.users", 9532, false, &uid),
            // An exact row count (MyISAM, or --full) needs no further statement.
            holding("smarthome.users", 10000, true, &uid),
            holding("smarthome.devices", 15179, false, &uid),
            holding(
                "mysql.innodb_table_stats",
                3,
                false,
                &[("database_name", "varchar(64)")],
            ),
            holding(
                "mysql.help_relation",
                1684,
                true,
                &[("help_keyword_id", "int(10) unsigned")],
            ),
            holding("smarthome.devices", 15179, false, &[("prefs", "longtext")]),
            holding("odd.db.t", 1, false, &uid),
            Holding {
                records: None,
                ..holding("smarthome.v_users", 0, false, &uid)
            },
            // Big tables: a sample of the values (the 2.4 M lab's answer) ...
            holding("smarthome.devices", 3_840_437, false, &uid),
            // ... and where it holds too few values, the exact count, here cut by the server.
            holding("smarthome.orders", 2_639_728, false, &uid),
        ];
        let fields = [
            "user_id",
            "user_id",
            "user_id",
            "database_name",
            "help_keyword_id",
            "prefs.email",
            "user_id",
            "user_id",
            "user_id",
            "user_id",
        ];
        let out = ask(addr, &holdings, &fields, Duration::from_secs(10)).await;
        let ok = |i: usize| out[i].as_ref().unwrap();
        assert_eq!(ok(0).count, 10000);
        assert_eq!(
            ok(0).method,
            "unique index PRIMARY on user_id: one person per row; the table's exact COUNT(user_id)"
        );
        assert_eq!(ok(1).count, 10000);
        assert!(
            ok(1).method.ends_with("exact row count (inventory)"),
            "{}",
            ok(1).method
        );
        assert_eq!(
            (ok(2).count, ok(2).method.as_str()),
            (10000, "COUNT(DISTINCT user_id), exact")
        );
        // The server stopped the count at its limit: the index statistic, said so.
        assert_eq!(ok(3).count, 6);
        assert!(
            ok(3).method.starts_with(
                "CARDINALITY of index PRIMARY on database_name: the server's index statistic"
            ) && ok(3).method.contains("max_statement_time exceeded"),
            "{}",
            ok(3).method
        );
        // … and where there is none, no number.
        let e = out[4].as_ref().unwrap_err();
        assert!(
            e.contains("no index statistic covers help_keyword_id"),
            "{e}"
        );
        assert!(out[5].as_ref().unwrap_err().contains("inside column prefs"));
        assert!(out[6].as_ref().unwrap_err().contains("no table odd.db.t"));
        assert!(out[7].as_ref().unwrap_err().contains("is a view"));
        assert_eq!(
            ok(8),
            &Subjects {
                count: 18627 * 128,
                method: "COUNT(DISTINCT user_id) over the values whose CRC32 is 0 modulo 128 \
                         (18627 values), × 128: an estimate within ±1.4 % (95 %)"
                    .into(),
                interval: Some([2350150, 2418362]),
            }
        );
        assert_eq!(ok(9).count, 60 * 128);
        assert!(
            ok(9).method.contains(
                "(60 values), × 128: an estimate within ±25.2 % (95 %), \
                                   since the exact count exceeded the 10 s budget"
            ),
            "{}",
            ok(9).method
        );

        let sent = sql_sent(&server);
        for sql in &sent {
            assert!(
                ALLOWED_QUERIES.iter().any(|t| matches_template(sql, t)),
                "not allowlisted: {sql}"
            );
        }
        // The session's limit: what is left of the counts' 105 s (ten tables, 10 s each, plus
        // 5 s) less the driver's margin of 2 s, in whole seconds.
        assert_eq!(
            sent[..3],
            [
                "SET SESSION TRANSACTION READ ONLY",
                "SET SESSION max_statement_time = 102",
                "START TRANSACTION READ ONLY"
            ]
        );
        // MariaDB's own limit on every count, from the greeting's version.
        let counts: Vec<&String> = sent.iter().filter(|s| s.contains("COUNT(")).collect();
        assert_eq!(counts.len(), 7, "{sent:?}");
        assert!(counts
            .iter()
            .all(|s| s.starts_with("SET STATEMENT max_statement_time = 10 FOR SELECT COUNT(")));
        // Both readings of the dotted name were tried; one session did everything.
        assert!(sent.contains(&"SHOW INDEX FROM `odd`.`db.t`".to_string()));
        assert!(sent.contains(&"SHOW INDEX FROM `odd.db`.`t`".to_string()));
        assert_eq!(sent.iter().filter(|s| s.starts_with("START")).count(), 1);
        assert!(!sent.iter().any(|s| s.contains("v_users")));
    }

    #[tokio::test]
    async fn a_silent_server_costs_one_slot_and_the_next_table_gets_a_new_session() {
        let server = fake_mariadb(Some("FROM `smarthome`.`devices`")).await;
        let addr = server.addr();
        let uid = [("user_id", "char(36)")];
        let holdings = [
            holding("smarthome.devices", 15179, false, &uid),
            holding("smarthome.users", 9532, false, &uid),
        ];
        let t = std::time::Instant::now();
        let out = ask(
            addr,
            &holdings,
            &["user_id", "user_id"],
            Duration::from_millis(500),
        )
        .await;
        // The slot (0.5 s) plus the grace for the server's own error, not the 30 s stall.
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        assert!(out[0].is_err(), "{out:?}");
        assert_eq!(out[1].as_ref().unwrap().count, 10000);
        let sent = sql_sent(&server);
        assert_eq!(sent.iter().filter(|s| s.starts_with("START")).count(), 2);
    }

    #[tokio::test]
    async fn without_a_usable_credential_nothing_is_sent() {
        let server = fake_mariadb(None).await;
        let addr = server.addr();
        let h = [holding("smarthome.users", 1, false, &[])];
        let ctx = crate::driver::test_ctx(addr, ProbeOptions::default());
        let q = [SubjectsQuery {
            holding: &h[0],
            field: "user_id".into(),
            field_type: None,
        }];
        let mut f = finding();
        f.credential = None;
        let out = subjects(Counting {
            ctx: &ctx,
            finding: &f,
            opts: &InventoryOptions::default(),
            budget: SubjectsBudget::default(),
            queries: &q,
        })
        .await;
        assert!(out[0].is_err());
        assert!(sql_sent(&server).is_empty());
    }
}
