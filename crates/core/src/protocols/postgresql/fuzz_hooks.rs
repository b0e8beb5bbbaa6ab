//! Fuzzing hooks: this module's private parsers of peer bytes, for `crate::fuzzing`.

use super::wire::{Msg, PgError, Startup, Step};
use crate::net::Check;

/// Splits a frame accepted by `check_message` into type and body.
pub fn to_msg(frame: &[u8]) -> Option<Msg> {
    super::wire::to_msg(frame)
}

/// What one post-authentication message did to the session.
#[derive(Debug)]
pub enum StartupStep {
    More,
    Ready,
    Failed(PgError),
}

pub fn startup_step(session: &mut Startup, msg: &Msg) -> Result<StartupStep, String> {
    super::wire::startup_step(session, msg).map(|s| match s {
        Step::More => StartupStep::More,
        Step::Ready => StartupStep::Ready,
        Step::Failed(e) => StartupStep::Failed(e),
    })
}

/// The answer reader of the probe's one query, fed one message at a time.
#[derive(Debug, Default)]
pub struct Rows(super::wire::Rows);

impl Rows {
    /// True at a ReadyForQuery that ended a well-formed result; Err for anything else that
    /// ends the answer.
    pub fn step(&mut self, msg: &Msg) -> Result<bool, String> {
        self.0.step(msg).map_err(|e| e.to_string())
    }

    pub fn count(&self) -> usize {
        self.0.count
    }
}

/// The inventory's message checker, which takes an oversized DataRow by its header alone.
pub fn check_result_message(buf: &[u8], cap: usize) -> Check {
    super::inventory::check_result_message(buf, cap)
}
