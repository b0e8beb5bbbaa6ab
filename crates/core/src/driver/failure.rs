//! Why one exchange with a store gave no usable answer: the one failure type of every
//! protocol's session, so budgets, broken connections and refusals read the same everywhere.

use std::convert::Infallible;

use super::budget::Spent;
use super::context::Seen;
use crate::net::NetError;

/// A failed exchange. `E` is the protocol's own error answer (a MySQL ERR packet, a PostgreSQL
/// ErrorResponse, an HTTP error status); protocols whose errors arrive inside ordinary replies
/// (MongoDB's `ok: 0`) leave it at [`Infallible`].
#[derive(Debug)]
pub enum Failure<E = Infallible> {
    /// The store answered with an error of its protocol; the connection is still in step.
    Server(E),
    /// The connection failed (refused, reset, closed, a read deadline, a frame over its cap).
    Net(NetError),
    /// A complete answer, but not what was asked; `head` is its start, for evidence.
    Unexpected { why: String, head: Vec<u8> },
    /// Not sent: the allowlist or a rule of the session refused it.
    Refused(String),
    /// The budget ran out before the exchange could start or finish.
    Budget(Spent),
}

impl<E> Failure<E> {
    /// A complete answer that is not what was asked, without bytes worth showing.
    pub fn unexpected(why: impl Into<String>) -> Failure<E> {
        Failure::Unexpected {
            why: why.into(),
            head: Vec::new(),
        }
    }

    /// The connection is still usable after this failure: nothing was sent, or the answer
    /// was read whole.
    pub fn keeps_session(&self) -> bool {
        matches!(self, Failure::Server(_) | Failure::Refused(_))
    }

    pub fn is_budget(&self) -> bool {
        matches!(self, Failure::Budget(_))
    }

    /// What identification saw (`buffered`: the bytes the connection still held).
    pub fn seen(&self, buffered: &[u8]) -> Seen
    where
        E: std::fmt::Display,
    {
        match self {
            Failure::Net(e) => Seen::from_error(e, buffered),
            Failure::Unexpected { head, .. } if !head.is_empty() => Seen::Bytes(head.clone()),
            other => Seen::Error(other.to_string()),
        }
    }

    /// The same failure with the protocol's error mapped by `f`.
    pub fn map_server<F>(self, f: impl FnOnce(E) -> F) -> Failure<F> {
        match self {
            Failure::Server(e) => Failure::Server(f(e)),
            Failure::Net(e) => Failure::Net(e),
            Failure::Unexpected { why, head } => Failure::Unexpected { why, head },
            Failure::Refused(why) => Failure::Refused(why),
            Failure::Budget(s) => Failure::Budget(s),
        }
    }
}

impl<E> From<NetError> for Failure<E> {
    fn from(e: NetError) -> Failure<E> {
        Failure::Net(e)
    }
}

impl<E: std::fmt::Display> std::fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Server(e) => e.fmt(f),
            Failure::Net(e) => e.fmt(f),
            Failure::Unexpected { why, .. } => f.write_str(why),
            Failure::Refused(why) => f.write_str(why),
            Failure::Budget(spent) => spent.fmt(f),
        }
    }
}
