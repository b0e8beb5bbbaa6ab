//! Distinct people per InfluxDB measurement: `COUNT(DISTINCT(field))` for a field, `SHOW TAG
//! VALUES EXACT CARDINALITY` for a tag (InfluxQL takes no `DISTINCT` of a tag), each exact and
//! within the container's time. Only measurements the inventory sampled are counted.

use tokio::time::Instant;

use super::wire::{Client, COUNT_DISTINCT, TAG_CARDINALITY};
use crate::driver::sql::Arg;
use crate::driver::{Budget, Counting, ProbeCtx, Subjects, SubjectsQuery, Wait};

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
    // Measurement names often hold dots, database names seldom: the first dot splits them.
    let (db, measurement) = h
        .name
        .split_once('.')
        .ok_or_else(|| format!("{}: not a database.measurement name", h.name))?;
    let (key, ty) = h
        .schema
        .iter()
        .find(|(c, _)| *c == q.field)
        .ok_or_else(|| format!("{}: {} is neither a field nor a tag", h.name, q.field))?;
    let c = Client::new(ctx, Budget::new(deadline, 1 << 20), Wait::Deadline);
    let (template, args, what) = if ty == "tag" {
        (
            TAG_CARDINALITY,
            [Arg::Ident(db), Arg::Ident(measurement), Arg::Ident(key)],
            format!("SHOW TAG VALUES EXACT CARDINALITY of tag {key}, exact"),
        )
    } else {
        (
            COUNT_DISTINCT,
            [Arg::Ident(key), Arg::Ident(db), Arg::Ident(measurement)],
            format!("InfluxDB COUNT(DISTINCT({key})), exact"),
        )
    };
    let series = c
        .query(template, &args, 64 * 1024)
        .await
        .map_err(|e| format!("{}: {what} failed: {e}", h.name))?;
    // One row: `[time, n]` for COUNT, `[n]` for the cardinality.
    let n = series
        .iter()
        .flat_map(|s| s.values.iter())
        .filter_map(|r| r.last().and_then(|v| v.as_u64()))
        .next()
        .unwrap_or(0);
    Ok(Subjects {
        count: n,
        method: what,
        interval: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Holding;
    use crate::testkit::{frames, FakeServer, Message, Reply};

    #[tokio::test]
    async fn fields_and_tags_are_counted_with_their_own_statement() {
        let s = FakeServer::start(Vec::new(), frames::http_request, |m: &Message| {
            let body = if m.text().contains("CARDINALITY") {
                r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["count"],"values":[[7]]}]}]}"#
            } else {
                r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","count"],"values":[["1970-01-01T00:00:00Z",42]]}]}]}"#
            };
            Reply::SendAndClose(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    .into_bytes(),
            )
        })
        .await;
        let h = Holding {
            name: "metrics.cpu.load".into(),
            kind: "table",
            schema: vec![
                ("user_email".into(), "string".into()),
                ("host".into(), "tag".into()),
            ],
            sample: vec![vec![("user_email".into(), "a@b.c".into())]],
            ..Holding::default()
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let q = |field: &str| SubjectsQuery {
            holding: &h,
            field: field.into(),
            field_type: None,
        };
        let field = count(&s.ctx(), &q("user_email"), deadline).await.unwrap();
        assert_eq!(field.count, 42);
        let tag = count(&s.ctx(), &q("host"), deadline).await.unwrap();
        assert_eq!(tag.count, 7);
        let texts = s.texts();
        assert!(texts[0].starts_with(
            "GET /query?q=SELECT%20COUNT%28DISTINCT%28%22user_email%22%29%29%20FROM%20%22metrics%22..%22cpu.load%22 "
        ), "{texts:?}");
        assert!(
            texts[1].contains("WITH%20KEY%20%3D%20%22host%22"),
            "{texts:?}"
        );
        assert!(count(&s.ctx(), &q("nope"), deadline).await.is_err());
        assert_eq!(s.texts().len(), 2);
    }
}
