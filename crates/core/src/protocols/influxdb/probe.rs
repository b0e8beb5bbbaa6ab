//! Identifying InfluxDB 1.x and judging access: every response of its HTTP API carries
//! `X-Influxdb-Version`, the shared `GET /` included (a 404), so the probe asks nothing to
//! recognise it; `open` needs a read: `SHOW DATABASES` answered without credentials. With
//! `auth-enabled` the same query is a 401.

use super::wire::{probe_budget, Client, Failure, SHOW_DATABASES, VERSION_HEADER};
use crate::driver::http::Response;
use crate::driver::{Finding, Outcome, ProbeCtx, Wait};
use crate::model::Access;

/// The registry id.
pub(super) const ID: &str = "influxdb";

/// A version as InfluxDB prints it (`1.6.7~rc0`, `1.8.10`, `v2.7.1`).
fn plausible_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 32
        && v.trim_start_matches('v')
            .starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '~' | '+'))
}

pub(super) async fn probe(ctx: &ProbeCtx, root: &Response) -> Outcome {
    let Some(version) = root.header(VERSION_HEADER).map(str::trim) else {
        return Outcome::NotMe(root.seen());
    };
    let mut f = Finding::new(ID);
    f.product = Some("InfluxDB".into());
    if plausible_version(version) {
        f.version = Some(version.to_string());
    }
    f.evidence.push(format!(
        "GET / answered HTTP {} with X-Influxdb-Version: {}",
        root.status,
        f.version.as_deref().unwrap_or("(not a version)")
    ));
    let c = Client::new(ctx, probe_budget(), Wait::Probe);
    match c.query(SHOW_DATABASES, &[], 1 << 20).await {
        Ok(series) => {
            let n: usize = series.iter().map(|s| s.values.len()).sum();
            f.access = Access::Open;
            f.evidence.push(format!(
                "SHOW DATABASES answered {n} database(s) without credentials"
            ));
        }
        Err(Failure::Server(e)) if e.status == 401 || e.status == 403 => {
            f.access = Access::AuthRequired;
            f.evidence.push(format!(
                "SHOW DATABASES was refused without credentials ({e})"
            ));
        }
        Err(e) => f
            .evidence
            .push(format!("SHOW DATABASES gave no answer: {e}")),
    }
    Outcome::Found(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{frames, FakeServer, Message, Reply};

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Influxdb-Version: 1.6.7~rc0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn root(version: Option<&str>) -> Response {
        Response {
            status: 404,
            headers: version
                .map(|v| vec![("X-Influxdb-Version".to_string(), v.to_string())])
                .unwrap_or_default(),
            body: b"404 page not found\n".to_vec(),
        }
    }

    async fn server(status: &'static str, body: &'static str) -> FakeServer {
        FakeServer::start(Vec::new(), frames::http_request, move |_: &Message| {
            Reply::SendAndClose(http(status, body))
        })
        .await
    }

    fn found(out: Outcome) -> Finding {
        match out {
            Outcome::Found(f) => f,
            other => panic!("not found: {other:?}"),
        }
    }

    #[tokio::test]
    async fn open_and_protected() {
        let s = server(
            "200 OK",
            r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["_internal"],["telemetry"]]}]}]}"#,
        )
        .await;
        let f = found(probe(&s.ctx(), &root(Some("1.6.7~rc0"))).await);
        assert_eq!(f.access, Access::Open);
        assert_eq!(f.version.as_deref(), Some("1.6.7~rc0"));
        assert!(f.evidence[1].contains("2 database(s)"));
        assert!(s.texts()[0].starts_with("GET /query?q=SHOW%20DATABASES HTTP/1.1\r\n"));

        let s = server(
            "401 Unauthorized",
            r#"{"error":"unable to parse authentication credentials"}"#,
        )
        .await;
        let f = found(probe(&s.ctx(), &root(Some("1.8.10"))).await);
        assert_eq!(f.access, Access::AuthRequired);
        assert!(f.evidence[1].contains("unable to parse authentication credentials"));
    }

    #[tokio::test]
    async fn without_the_header_it_is_not_influxdb_and_nothing_is_sent() {
        let s = server("200 OK", "{}").await;
        assert!(matches!(
            probe(&s.ctx(), &root(None)).await,
            Outcome::NotMe(_)
        ));
        assert!(s.texts().is_empty());
        // The header with a honeypot's answer proves nothing.
        let f = found(probe(&s.ctx(), &root(Some("1.8.10"))).await);
        assert_eq!(f.access, Access::Unknown);
    }
}
