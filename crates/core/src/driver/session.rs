//! A session: one connection of a piece of work, spending its [`Budget`].
//!
//! Every exchange of a protocol's inventory, count or probe goes through [`Session::send`] and
//! [`Session::read_frame`]: each waits at most until the session's deadline (the budget's, or a
//! tighter one the protocol sets for one statement), charges the bytes it read to the budget,
//! and refuses to start once the budget is spent. An exchange that failed half way leaves the
//! connection out of step ([`Session::is_broken`]): the protocol logs in again on a fresh one
//! (or gives up) rather than read the rest of an old answer as a new one.
//!
//! A protocol's own session type (its login, its dialect, the cursors it may name) wraps one of
//! these; the allowlist check stays in the protocol's one sending function, above this.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::budget::{Budget, Spent};
use super::context::ProbeCtx;
use super::failure::Failure;
use crate::net::{Check, Conn, NetError};

/// How long one read of a session may wait for the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The probe context's read timeout.
    Probe,
    /// The probe's read timeout, or this, whichever is longer (one reply known to come late).
    AtLeast(Duration),
    /// Until the session's deadline: a long count is not a dead peer.
    Deadline,
}

/// See the module docs.
pub struct Session {
    ctx: ProbeCtx,
    conn: Option<Conn>,
    broken: bool,
    budget: Arc<Budget>,
    until: Option<Instant>,
    wait: Wait,
    /// Bytes of `conn` already charged to the budget.
    charged: usize,
}

impl Session {
    /// A session on `ctx`'s endpoint, not yet connected.
    pub fn new(ctx: &ProbeCtx, budget: Arc<Budget>) -> Session {
        Session {
            ctx: ctx.copy(),
            conn: None,
            broken: false,
            budget,
            until: None,
            wait: Wait::Probe,
            charged: 0,
        }
    }

    /// A session on a connection already open (a probe's).
    pub fn with_conn(ctx: &ProbeCtx, conn: Conn, budget: Arc<Budget>) -> Session {
        let mut s = Session::new(ctx, budget);
        s.attach(conn);
        s
    }

    pub fn ctx(&self) -> &ProbeCtx {
        &self.ctx
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// When exchanges stop: the deadline set for what runs now, else the budget's.
    pub fn deadline(&self) -> Instant {
        self.until.unwrap_or_else(|| self.budget.deadline())
    }

    /// Sets (or, with None, clears) the deadline of the exchanges that follow, in place of the
    /// budget's: one statement's slot, or the last moments kept for closing cursors.
    pub fn set_deadline(&mut self, until: Option<Instant>) {
        self.until = until;
    }

    pub fn set_wait(&mut self, wait: Wait) {
        self.wait = wait;
    }

    /// What has run out for the next exchange: the session's time, or the budget's bytes.
    pub fn spent(&self) -> Option<Spent> {
        if Instant::now() >= self.deadline() {
            Some(Spent::Time)
        } else if self.budget.bytes_left() == 0 {
            Some(Spent::Bytes)
        } else {
            None
        }
    }

    /// A connection is open and in step.
    pub fn is_open(&self) -> bool {
        self.conn.is_some() && !self.broken
    }

    /// An exchange failed half way: what is still on the connection is not the next answer.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// The connection, in step or not (for its buffered bytes and counters).
    pub fn conn(&self) -> Option<&Conn> {
        self.conn.as_ref()
    }

    /// Bytes the connection holds that were not returned as a frame.
    pub fn buffered(&self) -> &[u8] {
        self.conn.as_ref().map_or(&[], |c| c.buffered())
    }

    /// Bytes received on the current connection.
    pub fn received(&self) -> usize {
        self.conn.as_ref().map_or(0, |c| c.received)
    }

    /// Takes a connection its protocol opened (greeted, logged in), in place of any other.
    pub fn attach(&mut self, conn: Conn) {
        self.charge();
        self.charged = conn.received;
        self.budget.spend(conn.received);
        self.conn = Some(conn);
        self.broken = false;
    }

    /// Opens a plain connection to the endpoint within the deadline, in place of any other.
    pub async fn connect<E>(&mut self) -> Result<(), Failure<E>> {
        let conn = match tokio::time::timeout_at(self.deadline(), self.ctx.connect()).await {
            Err(_) => return Err(Failure::Budget(Spent::Time)),
            Ok(r) => r?,
        };
        self.attach(conn);
        Ok(())
    }

    /// Closes the connection (its bytes are booked) and hands it back for a goodbye.
    pub fn detach(&mut self) -> Option<Conn> {
        self.charge();
        self.charged = 0;
        self.broken = false;
        self.conn.take()
    }

    /// Sends a last message (a quit, a terminate) without a budget check, within the write
    /// timeout, and closes. Nothing is sent on a connection out of step.
    pub async fn goodbye(&mut self, bytes: &[u8]) {
        let broken = self.broken;
        if let Some(mut conn) = self.detach() {
            if !broken {
                let _ = conn.send(bytes).await;
            }
        }
    }

    /// A read cap of at most `cap` bytes, cut to what the budget has left.
    pub fn cap(&self, cap: usize) -> usize {
        cap.min(self.budget.bytes_left())
    }

    /// Sends `bytes` on the open connection.
    pub async fn send<E>(&mut self, bytes: &[u8]) -> Result<(), Failure<E>> {
        if let Some(spent) = self.spent() {
            return Err(Failure::Budget(spent));
        }
        let deadline = self.deadline();
        let conn = self.open_conn()?;
        let r = tokio::time::timeout_at(deadline, conn.send(bytes)).await;
        self.settle(r)
    }

    /// Reads one frame (see [`Conn::read_frame`]) of at most `cap` bytes.
    pub async fn read_frame<E, F>(&mut self, cap: usize, check: F) -> Result<Vec<u8>, Failure<E>>
    where
        F: FnMut(&[u8]) -> Check,
    {
        let deadline = self.deadline();
        let wait = match self.wait {
            Wait::Probe => self.ctx.opts.limits.read_timeout,
            Wait::AtLeast(d) => d.max(self.ctx.opts.limits.read_timeout),
            // A little past the deadline, so the deadline (a spent budget) is what ends it.
            Wait::Deadline => deadline.saturating_duration_since(Instant::now()) + SLACK,
        };
        let conn = self.open_conn()?;
        conn.set_read_timeout(wait);
        let r = tokio::time::timeout_at(deadline, conn.read_frame(cap, check)).await;
        self.settle(r)
    }

    /// [`Session::read_frame`] with the cap cut to the bytes the budget has left: a frame
    /// over the cut cap is the byte budget running out, not a peer over its cap.
    pub async fn read_frame_within<E, F>(
        &mut self,
        cap: usize,
        check: F,
    ) -> Result<Vec<u8>, Failure<E>>
    where
        F: FnMut(&[u8]) -> Check,
    {
        let here = self.cap(cap);
        if here == 0 {
            return Err(Failure::Budget(Spent::Bytes));
        }
        match self.read_frame(here, check).await {
            Err(Failure::Net(NetError::TooLarge { .. })) if here < cap => {
                Err(Failure::Budget(Spent::Bytes))
            }
            other => other,
        }
    }

    fn open_conn<E>(&mut self) -> Result<&mut Conn, Failure<E>> {
        match (&mut self.conn, self.broken) {
            (Some(conn), false) => Ok(conn),
            _ => Err(Failure::Net(NetError::Invalid(
                "connection out of step".into(),
            ))),
        }
    }

    /// Books what the connection received since the last booking.
    fn charge(&mut self) {
        if let Some(conn) = &self.conn {
            self.budget
                .spend(conn.received.saturating_sub(self.charged));
            self.charged = conn.received;
        }
    }

    /// Books the bytes and turns the outcome of one step into the session's answer: a
    /// deadline or an I/O failure leaves the connection out of step.
    fn settle<T, E>(
        &mut self,
        r: Result<Result<T, NetError>, tokio::time::error::Elapsed>,
    ) -> Result<T, Failure<E>> {
        self.charge();
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.broken = true;
                Err(Failure::Net(e))
            }
            Err(_) => {
                self.broken = true;
                Err(Failure::Budget(Spent::Time))
            }
        }
    }
}

/// How much longer than the deadline a read waiting for it may take (see [`Wait::Deadline`]).
const SLACK: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{FakeServer, Reply};

    fn line(buf: &[u8]) -> Check {
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => Check::Complete(i + 1),
            None => Check::Incomplete,
        }
    }

    #[tokio::test]
    async fn bytes_are_charged_and_a_spent_budget_stops_the_next_exchange() {
        let server = FakeServer::lines(|_| Reply::Send(b"0123456789\n".to_vec())).await;
        let ctx = server.ctx();
        let budget = Arc::new(Budget::new(Instant::now() + Duration::from_secs(5), 25));
        let mut s = Session::new(&ctx, budget.clone());
        s.connect::<()>().await.unwrap();
        for _ in 0..2 {
            s.send::<()>(b"x\n").await.unwrap();
            assert_eq!(s.read_frame::<(), _>(64, line).await.unwrap().len(), 11);
        }
        assert_eq!(budget.used(), 22);
        s.send::<()>(b"x\n").await.unwrap();
        // 3 bytes left: the answer does not fit, and that is the budget's doing.
        assert!(matches!(
            s.read_frame_within::<(), _>(64, line).await,
            Err(Failure::Budget(Spent::Bytes))
        ));
        assert!(s.is_broken());
        assert!(matches!(
            s.send::<()>(b"x\n").await,
            Err(Failure::Budget(Spent::Bytes))
        ));
    }

    #[tokio::test]
    async fn the_deadline_ends_a_silent_peer_and_leaves_the_session_out_of_step() {
        let server = FakeServer::lines(|_| Reply::Nothing).await;
        let ctx = server.ctx();
        let budget = Arc::new(Budget::new(Instant::now() + Duration::from_secs(60), 1000));
        let mut s = Session::new(&ctx, budget);
        s.connect::<()>().await.unwrap();
        s.set_deadline(Some(Instant::now() + Duration::from_millis(200)));
        s.set_wait(Wait::Deadline);
        s.send::<()>(b"x\n").await.unwrap();
        let t = std::time::Instant::now();
        assert!(matches!(
            s.read_frame::<(), _>(64, line).await,
            Err(Failure::Budget(Spent::Time))
        ));
        assert!(
            t.elapsed() < Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
        assert!(s.is_broken() && !s.is_open());
        assert!(matches!(
            s.send::<()>(b"x\n").await,
            Err(Failure::Budget(_))
        ));
        s.set_deadline(None);
        assert!(matches!(s.send::<()>(b"x\n").await, Err(Failure::Net(_))));
        s.connect::<()>().await.unwrap();
        assert!(s.is_open());
    }
}
