//! SQL allowlists: the one renderer of every SQL statement leakscope sends.
//!
//! A SQL protocol lists the statements it may ever send as constant templates in an
//! [`Allowlist`]; [`Allowlist::render`] is the only way from a template to SQL text, and each
//! protocol's one sending function takes only what it returns. A template's only variable parts
//! are its placeholders, each filled with one typed [`Arg`]:
//!
//! - `$IDENT`: an identifier (schema, table, column), quoted by the dialect (MySQL backticks,
//!   PostgreSQL double quotes, the quote character doubled inside), so any name is one
//!   identifier and never SQL;
//! - `$INT`: a decimal integer rendered from a Rust integer;
//! - `$PCT`: a percentage in (0, 100], six decimals (`TABLESAMPLE SYSTEM`);
//! - `$TEXT`: a string literal, quoted by the dialect; PostgreSQL and ClickHouse only (a MySQL
//!   literal's meaning depends on `sql_mode` and the connection's character set, so MySQL
//!   templates take none).
//!
//! The template is scanned once, left to right, and rendered values are never scanned again: a
//! name that reads `$INT` stays a name. Anything else is refused: a template not on the list, a
//! missing, extra or mistyped argument, an identifier that is empty, holds a NUL or is longer
//! than the dialect allows, text with a NUL, and an integer placed right after a `-` in the
//! template (a negative value would open a `--` comment).

/// How a SQL dialect writes identifiers and literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MySQL and MariaDB: `` `name` ``, no string literals.
    MySql,
    /// PostgreSQL: `"name"`, `'text'` (or `E'…'` when the text holds a backslash).
    PostgreSql,
    /// ClickHouse: `` `name` `` and `'text'`, where a backslash escapes the next character
    /// inside both (so `\` and the quote character are written with a backslash, never
    /// doubled: doubling is not understood by every version).
    ClickHouse,
    /// InfluxDB 1.x InfluxQL: `"name"` with `\"` for a quote. Whether a backslash escapes
    /// itself differs between versions, so names holding one (or a line break, which ends a
    /// quoted name) are refused; no string literals.
    InfluxQl,
}

/// Longest MySQL identifier rendered (they are at most 64 characters, 256 bytes in utf8mb4).
const MYSQL_MAX_IDENT: usize = 256;

impl Dialect {
    /// The identifier quoted: inner quote characters doubled in MySQL and PostgreSQL (the only
    /// character special inside their quotes), backslash-escaped in ClickHouse; None for names
    /// that cannot be identifiers.
    pub fn quote_ident(self, name: &str) -> Option<String> {
        if name.is_empty() || name.contains('\0') {
            return None;
        }
        match self {
            Dialect::MySql if name.len() > MYSQL_MAX_IDENT => None,
            Dialect::MySql => Some(format!("`{}`", name.replace('`', "``"))),
            Dialect::PostgreSql => Some(format!("\"{}\"", name.replace('"', "\"\""))),
            Dialect::ClickHouse => Some(format!("`{}`", backslash_escaped(name, '`'))),
            Dialect::InfluxQl if name.contains(['\\', '\n', '\r']) => None,
            Dialect::InfluxQl => Some(format!("\"{}\"", name.replace('"', "\\\""))),
        }
    }

    /// A string literal of `text`, or None where the dialect takes none or the text cannot be
    /// one. PostgreSQL: `'text'` with inner `'` doubled; when the text holds a backslash,
    /// `E'…'` with backslashes doubled as well, so the value is the same whatever
    /// `standard_conforming_strings` says (as PostgreSQL's own `quote_literal` does).
    pub fn quote_text(self, text: &str) -> Option<String> {
        match self {
            Dialect::MySql | Dialect::InfluxQl => None,
            Dialect::ClickHouse if text.contains('\0') => None,
            Dialect::ClickHouse => Some(format!("'{}'", backslash_escaped(text, '\''))),
            Dialect::PostgreSql => {
                if text.contains('\0') {
                    return None;
                }
                let quoted = text.replace('\'', "''");
                Some(if text.contains('\\') {
                    format!("E'{}'", quoted.replace('\\', "\\\\"))
                } else {
                    format!("'{quoted}'")
                })
            }
        }
    }
}

/// `s` with every backslash and `quote` escaped by a backslash (ClickHouse's quoting).
fn backslash_escaped(s: &str, quote: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if c == '\\' || c == quote {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A value for a template placeholder. Only these four kinds exist, so no caller can splice
/// arbitrary text into SQL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    /// For `$IDENT`.
    Ident(&'a str),
    /// For `$INT`.
    Int(i128),
    /// For `$PCT`.
    Percent(f64),
    /// For `$TEXT`.
    Text(&'a str),
}

/// A protocol's SQL: its dialect and every statement it may send.
#[derive(Debug, Clone, Copy)]
pub struct Allowlist {
    pub dialect: Dialect,
    pub templates: &'static [&'static str],
}

/// The placeholders, each with the kind of argument it takes.
const PLACEHOLDERS: &[&str] = &["$IDENT", "$INT", "$PCT", "$TEXT"];

impl Allowlist {
    /// Is `template` one of the allowlisted statements?
    pub fn allows(&self, template: &str) -> bool {
        self.templates.contains(&template)
    }

    /// The SQL text of an allowlisted template with its arguments (see the module docs).
    pub fn render(&self, template: &str, args: &[Arg]) -> Result<String, String> {
        if !self.allows(template) {
            return Err(format!("refusing to send non-allowlisted SQL {template:?}"));
        }
        let mut out = String::with_capacity(template.len() + 64);
        let mut args = args.iter();
        let mut rest = template;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            let token = PLACEHOLDERS
                .iter()
                .find(|p| {
                    rest.strip_prefix(**p).is_some_and(|after| {
                        !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                    })
                })
                .ok_or_else(|| format!("{template:?}: unknown placeholder"))?;
            rest = &rest[token.len()..];
            let arg = args.next();
            let value = match (*token, arg) {
                ("$IDENT", Some(Arg::Ident(name))) => self.dialect.quote_ident(name),
                ("$INT", Some(Arg::Int(n))) => {
                    if out.ends_with('-') {
                        return Err(format!("{template:?}: $INT right after '-'"));
                    }
                    Some(n.to_string())
                }
                ("$PCT", Some(&Arg::Percent(p))) if p.is_finite() && p > 0.0 && p <= 100.0 => {
                    Some(format!("{p:.6}"))
                }
                ("$TEXT", Some(Arg::Text(text))) => self.dialect.quote_text(text),
                _ => {
                    return Err(format!(
                        "{template:?}: {token} does not take {arg:?} (identifier, integer, \
                         percentage in (0, 100] or text, by placeholder)"
                    ))
                }
            };
            out.push_str(
                &value.ok_or_else(|| {
                    format!("{token}: not a valid value for {:?} SQL", self.dialect)
                })?,
            );
        }
        out.push_str(rest);
        if args.next().is_some() {
            return Err(format!("{template:?}: more arguments than placeholders"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MYSQL: Allowlist = Allowlist {
        dialect: Dialect::MySql,
        templates: &[
            "SELECT COUNT(*) FROM $IDENT.$IDENT",
            "SELECT * FROM $IDENT.$IDENT LIMIT $INT, $INT",
            "SELECT $TEXT",
            "SHOW DATABASES",
        ],
    };
    const CH: Allowlist = Allowlist {
        dialect: Dialect::ClickHouse,
        templates: &[
            "SELECT count() FROM $IDENT.$IDENT",
            "SELECT uniqExact($IDENT) FROM $IDENT.$IDENT WHERE database = $TEXT",
        ],
    };
    const INFLUX: Allowlist = Allowlist {
        dialect: Dialect::InfluxQl,
        templates: &["SELECT COUNT(*) FROM $IDENT..$IDENT"],
    };
    const PG: Allowlist = Allowlist {
        dialect: Dialect::PostgreSql,
        templates: &[
            "SELECT count(*) FROM $IDENT.$IDENT",
            "SELECT count(DISTINCT $IDENT ->> $TEXT) FROM $IDENT.$IDENT",
            "SELECT 1 FROM $IDENT TABLESAMPLE SYSTEM ($PCT) LIMIT $INT",
            "SELECT 2 - $INT",
            "SELECT $INTEGER",
        ],
    };

    /// Reads one quoted token at the start of `sql` the way the server's lexer does, and returns
    /// its value and the rest. The dialects' rules: inside `q…q` the quote character doubled is
    /// one quote character, nothing else is special; PostgreSQL's `E'…'` also takes `\\` as a
    /// backslash and `\'` as a quote.
    fn lex_quoted(sql: &str, q: char, escapes: bool) -> Option<(String, &str)> {
        let mut chars = sql.strip_prefix(q)?.char_indices().peekable();
        let body = sql.strip_prefix(q)?;
        let mut value = String::new();
        while let Some((i, c)) = chars.next() {
            if escapes && c == '\\' {
                value.push(chars.next()?.1);
            } else if c == q {
                if chars.peek().map(|&(_, n)| n) == Some(q) {
                    chars.next();
                    value.push(q);
                } else {
                    return Some((value, &body[i + 1..]));
                }
            } else {
                value.push(c);
            }
        }
        None
    }

    /// The values of the quoted tokens of `sql` and the text around them, as the server reads
    /// it: `before`, token, text, token, … Fails when a quote is left open.
    fn lex(dialect: Dialect, mut sql: &str) -> Option<Vec<String>> {
        let mut parts = vec![String::new()];
        while let Some(c) = sql.chars().next() {
            let quoted = match (dialect, c) {
                (Dialect::MySql, '`') => lex_quoted(sql, '`', false),
                (Dialect::PostgreSql, '"') => lex_quoted(sql, '"', false),
                (Dialect::PostgreSql, '\'') => lex_quoted(sql, '\'', false),
                (Dialect::PostgreSql, 'E') if sql.starts_with("E'") => {
                    lex_quoted(&sql[1..], '\'', true)
                }
                (Dialect::ClickHouse, '`' | '\'') => lex_quoted(sql, c, true),
                (Dialect::InfluxQl, '"') => lex_quoted(sql, c, true),
                _ => {
                    parts.last_mut()?.push(c);
                    sql = &sql[c.len_utf8()..];
                    continue;
                }
            };
            let (value, rest) = quoted?;
            parts.push(value);
            parts.push(String::new());
            sql = rest;
        }
        Some(parts)
    }

    /// Names and texts an attacker would try: quotes of every kind, comments, statement ends,
    /// backslash escapes, placeholders, non-ASCII and control characters.
    fn hostile() -> Vec<String> {
        let mut v: Vec<String> = [
            "users",
            "`",
            "``",
            "\"",
            "'",
            "''",
            "\\",
            "\\'",
            "\\\\'",
            "a`; DROP TABLE x; -- ",
            "x` UNION SELECT password FROM mysql.user #",
            "x\"; DROP TABLE users; --",
            "x'); DROP TABLE users; --",
            "\\'; DROP TABLE users; --",
            "x' OR '1'='1",
            "a`.`b",
            "a\".\"b",
            "/* comment */",
            "$IDENT",
            "$INT",
            "$TEXT",
            "名前 with spaces",
            "tab\tnew\nline\r",
            "\u{feff}bom",
            "\u{2019}curly\u{2018}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every pair of the interesting characters, and runs of them.
        let specials = ['`', '"', '\'', '\\', ';', '-', '/', '*', '#', '$', ' '];
        for a in specials {
            for b in specials {
                v.push(format!("x{a}{b}y"));
            }
            v.push(a.to_string().repeat(7));
        }
        v
    }

    #[test]
    fn hostile_identifiers_stay_one_identifier_in_each_dialect() {
        for (list, t) in [
            (MYSQL, "SELECT COUNT(*) FROM $IDENT.$IDENT"),
            (PG, "SELECT count(*) FROM $IDENT.$IDENT"),
            (CH, "SELECT count() FROM $IDENT.$IDENT"),
        ] {
            for h in hostile() {
                let sql = list.render(t, &[Arg::Ident(&h), Arg::Ident("t")]).unwrap();
                let parts = lex(list.dialect, &sql)
                    .unwrap_or_else(|| panic!("{:?}: an open quote in {sql}", list.dialect));
                // Exactly the template's text around exactly two identifiers: the hostile
                // name, whole, and `t`.
                let (head, _) = t.split_once('$').unwrap();
                assert_eq!(
                    parts,
                    [head, h.as_str(), ".", "t", ""],
                    "{:?}: {sql}",
                    list.dialect
                );
            }
        }
    }

    #[test]
    fn hostile_text_stays_one_literal() {
        let t = "SELECT count(DISTINCT $IDENT ->> $TEXT) FROM $IDENT.$IDENT";
        for h in hostile() {
            let sql = PG
                .render(
                    t,
                    &[
                        Arg::Ident("profile"),
                        Arg::Text(&h),
                        Arg::Ident("s"),
                        Arg::Ident("t"),
                    ],
                )
                .unwrap();
            let parts = lex(Dialect::PostgreSql, &sql).unwrap();
            assert_eq!(
                parts,
                [
                    "SELECT count(DISTINCT ",
                    "profile",
                    " ->> ",
                    h.as_str(),
                    ") FROM ",
                    "s",
                    ".",
                    "t",
                    ""
                ],
                "{sql}"
            );
            // A backslash switches to the escape form, whatever standard_conforming_strings is.
            assert_eq!(sql.contains("E'"), h.contains('\\'), "{sql}");
        }
    }

    /// ClickHouse reads a backslash as an escape inside both quotes, so both are escaped with
    /// one; a hostile name or text stays one token whatever it holds.
    #[test]
    fn clickhouse_escapes_with_backslashes() {
        let t = "SELECT uniqExact($IDENT) FROM $IDENT.$IDENT WHERE database = $TEXT";
        for h in hostile() {
            let sql = CH
                .render(
                    t,
                    &[
                        Arg::Ident(&h),
                        Arg::Ident("d"),
                        Arg::Ident(&h),
                        Arg::Text(&h),
                    ],
                )
                .unwrap();
            let parts = lex(Dialect::ClickHouse, &sql).unwrap_or_else(|| panic!("{sql}"));
            assert_eq!(
                parts,
                [
                    "SELECT uniqExact(",
                    h.as_str(),
                    ") FROM ",
                    "d",
                    ".",
                    h.as_str(),
                    " WHERE database = ",
                    h.as_str(),
                    ""
                ],
                "{sql}"
            );
        }
        let c = Dialect::ClickHouse;
        assert_eq!(c.quote_ident("a`b\\c").unwrap(), "`a\\`b\\\\c`");
        assert_eq!(c.quote_text("it's").unwrap(), "'it\\'s'");
        assert_eq!(c.quote_text("a\0b"), None);
        assert_eq!(c.quote_ident("a\0b"), None);
    }

    /// InfluxQL: a quote is escaped with a backslash; names whose backslashes or line breaks
    /// versions read differently are refused, and nothing else is.
    #[test]
    fn influxql_names_stay_one_identifier() {
        let t = "SELECT COUNT(*) FROM $IDENT..$IDENT";
        for h in hostile() {
            let sql = INFLUX.render(t, &[Arg::Ident("db"), Arg::Ident(&h)]);
            if h.contains(['\\', '\n', '\r']) {
                assert!(sql.is_err(), "{h:?}");
                continue;
            }
            let sql = sql.unwrap();
            let parts = lex(Dialect::InfluxQl, &sql).unwrap_or_else(|| panic!("{sql}"));
            assert_eq!(
                parts,
                ["SELECT COUNT(*) FROM ", "db", "..", h.as_str(), ""],
                "{sql}"
            );
        }
        assert_eq!(Dialect::InfluxQl.quote_ident("a\"b").unwrap(), "\"a\\\"b\"");
        assert_eq!(Dialect::InfluxQl.quote_text("x"), None);
    }

    #[test]
    fn quoting_is_exact() {
        let (m, p) = (Dialect::MySql, Dialect::PostgreSql);
        assert_eq!(m.quote_ident("t`x").unwrap(), "`t``x`");
        assert_eq!(p.quote_ident("We\"ird").unwrap(), "\"We\"\"ird\"");
        assert_eq!(p.quote_text("it's").unwrap(), "'it''s'");
        assert_eq!(p.quote_text("a\\'b").unwrap(), "E'a\\\\''b'");
        assert_eq!(p.quote_text("").unwrap(), "''");
        for d in [m, p] {
            assert_eq!(d.quote_ident(""), None);
            assert_eq!(d.quote_ident("a\0b"), None);
        }
        assert_eq!(p.quote_text("a\0b"), None);
        // MySQL takes no string literal at all.
        assert_eq!(m.quote_text("users"), None);
        assert!(MYSQL.render("SELECT $TEXT", &[Arg::Text("x")]).is_err());
        let long = "x".repeat(MYSQL_MAX_IDENT + 1);
        assert_eq!(m.quote_ident(&long), None);
        assert!(p.quote_ident(&long).is_some());
    }

    #[test]
    fn placeholders_take_only_their_kind_and_number_of_arguments() {
        let t = "SELECT * FROM $IDENT.$IDENT LIMIT $INT, $INT";
        let good = [Arg::Ident("d"), Arg::Ident("t"), Arg::Int(10), Arg::Int(3)];
        assert_eq!(
            MYSQL.render(t, &good).unwrap(),
            "SELECT * FROM `d`.`t` LIMIT 10, 3"
        );
        assert!(MYSQL.render(t, &good[..3]).is_err());
        let mut more = good.to_vec();
        more.push(Arg::Int(1));
        assert!(MYSQL.render(t, &more).is_err());
        for i in 0..good.len() {
            for wrong in [
                Arg::Ident("1"),
                Arg::Int(1),
                Arg::Percent(1.0),
                Arg::Text("1"),
            ] {
                if std::mem::discriminant(&wrong) == std::mem::discriminant(&good[i]) {
                    continue;
                }
                let mut args = good;
                args[i] = wrong;
                assert!(MYSQL.render(t, &args).is_err(), "{args:?}");
            }
        }
        // An argument cannot turn a number into text: a name where an integer belongs fails.
        assert!(MYSQL
            .render(
                t,
                &[
                    Arg::Ident("d"),
                    Arg::Ident("t"),
                    Arg::Ident("1; DROP TABLE x"),
                    Arg::Int(1)
                ]
            )
            .is_err());
    }

    #[test]
    fn only_allowlisted_templates_render() {
        for t in [
            "DROP DATABASE shop",
            "show databases",
            "SHOW DATABASES; DROP TABLE x",
            "SELECT COUNT(*) FROM $IDENT.$IDENT FOR UPDATE",
            "",
        ] {
            assert!(MYSQL.render(t, &[]).is_err(), "{t}");
            assert!(MYSQL.render(t, &[Arg::Ident("x")]).is_err(), "{t}");
        }
        assert_eq!(
            MYSQL.render("SHOW DATABASES", &[]).unwrap(),
            "SHOW DATABASES"
        );
        // The same text under the other dialect's list is refused too.
        assert!(PG
            .render(
                "SELECT COUNT(*) FROM $IDENT.$IDENT",
                &[Arg::Ident("a"), Arg::Ident("b")]
            )
            .is_err());
    }

    #[test]
    fn rendered_values_are_never_scanned_again() {
        let sql = PG
            .render(
                "SELECT count(*) FROM $IDENT.$IDENT",
                &[Arg::Ident("$INT"), Arg::Ident("$IDENT")],
            )
            .unwrap();
        assert_eq!(sql, "SELECT count(*) FROM \"$INT\".\"$IDENT\"");
    }

    #[test]
    fn percentages_integers_and_unknown_placeholders() {
        let t = "SELECT 1 FROM $IDENT TABLESAMPLE SYSTEM ($PCT) LIMIT $INT";
        let with = |p: f64| PG.render(t, &[Arg::Ident("t"), Arg::Percent(p), Arg::Int(5)]);
        for bad in [0.0, -1.0, 100.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(with(bad).is_err(), "{bad}");
        }
        assert!(with(0.0001).unwrap().contains("SYSTEM (0.000100)"));
        assert!(with(100.0).unwrap().contains("SYSTEM (100.000000)"));
        assert_eq!(
            PG.render(
                "SELECT count(*) FROM $IDENT.$IDENT",
                &[Arg::Ident("a"), Arg::Ident("b")]
            )
            .unwrap(),
            "SELECT count(*) FROM \"a\".\"b\""
        );
        // `-` then an integer could read `--` (a comment) with a negative value: refused
        // whatever the value.
        for n in [-5, 5] {
            assert!(PG.render("SELECT 2 - $INT", &[Arg::Int(n)]).is_ok());
        }
        let dash = Allowlist {
            dialect: Dialect::PostgreSql,
            templates: &["SELECT 2 -$INT"],
        };
        for n in [-5, 5] {
            assert!(dash.render("SELECT 2 -$INT", &[Arg::Int(n)]).is_err());
        }
        // A placeholder is a whole word: `$INTEGER` is no `$INT` followed by `EGER`.
        assert!(PG.render("SELECT $INTEGER", &[Arg::Int(1)]).is_err());
        assert!(PG.render("SELECT $INTEGER", &[]).is_err());
        assert_eq!(
            PG.render("SELECT 2 - $INT", &[Arg::Int(i128::MIN)])
                .unwrap(),
            format!("SELECT 2 - {}", i128::MIN)
        );
    }
}
