//! MySQL / MariaDB. (Being written: recognises nothing yet.)

use futures::future::BoxFuture;

use super::{Handler, Outcome, ProbeCtx, Protocol, Seen};

pub const PROTOCOL: Protocol = Protocol {
    id: "mysql",
    name: "MySQL / MariaDB",
    default_ports: &[3306],
    server_speaks_first: true,
    default_credentials: &[],
    method: "",
    handler: Handler::Raw(probe),
};

fn probe<'a>(_ctx: &'a ProbeCtx, _conn: crate::net::Conn) -> BoxFuture<'a, Outcome> {
    Box::pin(async move { Outcome::NotMe(Seen::Silence) })
}
