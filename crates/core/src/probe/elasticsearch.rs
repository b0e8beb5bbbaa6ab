//! Elasticsearch / OpenSearch. (Being written: recognises nothing yet.)

use futures::future::BoxFuture;

use super::{Handler, Outcome, ProbeCtx, Protocol, Seen};

pub const PROTOCOL: Protocol = Protocol {
    id: "elasticsearch",
    name: "Elasticsearch / OpenSearch",
    default_ports: &[9200, 9201],
    server_speaks_first: false,
    default_credentials: &[],
    method: "",
    handler: Handler::Http(probe),
};

fn probe<'a>(_ctx: &'a ProbeCtx, _root: &'a super::http::Response) -> BoxFuture<'a, Outcome> {
    Box::pin(async move { Outcome::NotMe(Seen::Silence) })
}
