//! Distinct people per ClickHouse table: `uniqExact(column)` (exact, a hash set inside the
//! server) up to [`EXACT_ROWS`] rows, `uniq(column)` (an adaptive sketch, about 1.6 % off at
//! worst) beyond, each within the container's time, which the server is told as
//! `max_execution_time`. Only tables the inventory sampled are counted (local engines: a
//! remote table's count would make the server contact other hosts).

use tokio::time::Instant;

use super::wire::{cell_u64, transport_of, Client, Transport, DISTINCT, DISTINCT_EXACT};
use crate::driver::sql::Arg;
use crate::driver::{Budget, Counting, ProbeCtx, Subjects, SubjectsQuery, Wait, EXACT_ROWS};

pub(super) async fn subjects(c: Counting<'_>) -> Vec<Result<Subjects, String>> {
    let ctx = c.ctx;
    c.one_at_a_time(|q, deadline| count(ctx, q, deadline)).await
}

async fn count(
    ctx: &ProbeCtx,
    q: &SubjectsQuery<'_>,
    deadline: Instant,
) -> Result<Subjects, String> {
    let h = q.holding;
    if h.sample.is_empty() {
        return Err(format!("{}: not sampled, so not counted", h.name));
    }
    // Database names with a dot are not told apart here: such a table is not counted.
    let (db, table) = h
        .name
        .split_once('.')
        .ok_or_else(|| format!("{}: not a database.table name", h.name))?;
    let column = h
        .schema
        .iter()
        .find(|(c, _)| *c == q.field)
        .map(|(c, _)| c.as_str())
        .ok_or_else(|| format!("{}: {} is not a column", h.name, q.field))?;
    let mut c = Client::new(
        ctx,
        Transport::Http,
        Budget::new(deadline, 1 << 20),
        Wait::Deadline,
    );
    match c.ping().await.map(|r| transport_of(&r)) {
        Ok(Some(t)) => c.transport = t,
        Ok(None) => return Err("GET / no longer answers as ClickHouse".into()),
        Err(e) => return Err(format!("GET /: {e}")),
    }
    let exact = h.records.is_none_or(|r| r as f64 <= EXACT_ROWS);
    let (template, function) = if exact {
        (DISTINCT_EXACT, "uniqExact")
    } else {
        (DISTINCT, "uniq")
    };
    let args = [Arg::Ident(column), Arg::Ident(db), Arg::Ident(table)];
    let rows = c
        .query(template, &args, 64 * 1024)
        .await
        .map_err(|e| format!("{}: {function}({column}) failed: {e}", h.name))?;
    let n = rows
        .rows
        .first()
        .and_then(|r| r.first())
        .and_then(cell_u64)
        .ok_or_else(|| format!("{}: {function}({column}) answered no number", h.name))?;
    Ok(Subjects {
        count: n,
        method: if exact {
            format!("ClickHouse {function}({column}), exact")
        } else {
            format!("ClickHouse {function}({column}), an estimate (about 1.6 % at worst)")
        },
        interval: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Holding;
    use crate::testkit::{frames, FakeServer, Message, Reply};

    fn http(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn holding(records: u64) -> Holding {
        Holding {
            name: "shop.users".into(),
            kind: "table",
            records: Some(records),
            schema: vec![("email".into(), "Nullable(String)".into())],
            sample: vec![vec![("email".into(), "a@b.c".into())]],
            ..Holding::default()
        }
    }

    #[tokio::test]
    async fn exact_then_estimated_and_never_an_unsampled_table() {
        let s = FakeServer::start(Vec::new(), frames::http_request, |m: &Message| {
            Reply::SendAndClose(if m.text().starts_with("GET / ") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nOk.\n".to_vec()
            } else {
                http(r#"{"meta":[{"name":"n","type":"UInt64"}],"data":[["1234"]],"rows":1}"#)
            })
        })
        .await;
        let ctx = s.ctx();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let q = |h| SubjectsQuery {
            holding: h,
            field: "email".into(),
            field_type: None,
        };
        let small = holding(10);
        let got = count(&ctx, &q(&small), deadline).await.unwrap();
        assert_eq!(got.count, 1234);
        assert!(
            got.method.ends_with("uniqExact(email), exact"),
            "{}",
            got.method
        );
        let big = holding(EXACT_ROWS as u64 * 2);
        assert!(count(&ctx, &q(&big), deadline)
            .await
            .unwrap()
            .method
            .contains("uniq(email), an estimate"));
        let texts = s.texts();
        assert!(
            texts[1].ends_with("SELECT uniqExact(`email`) FROM `shop`.`users` FORMAT JSONCompact"),
            "{texts:?}"
        );
        assert!(texts[1].contains("&readonly=1 HTTP/1.1"));
        let mut unsampled = holding(10);
        unsampled.sample.clear();
        assert!(count(&ctx, &q(&unsampled), deadline).await.is_err());
        let other = SubjectsQuery {
            holding: &small,
            field: "phone".into(),
            field_type: None,
        };
        assert!(count(&ctx, &other, deadline).await.is_err());
        assert_eq!(s.texts().len(), 4, "nothing sent for what is not counted");
    }
}
