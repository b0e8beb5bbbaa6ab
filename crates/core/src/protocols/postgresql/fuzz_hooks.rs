//! Fuzzing hooks: this module's private parsers of peer bytes, for `crate::fuzzing`.

use super::{Msg, PgError, Startup, Step};

/// Splits a frame accepted by `check_message` into type and body.
pub fn to_msg(frame: &[u8]) -> Option<Msg> {
    super::to_msg(frame)
}

/// What one post-authentication message did to the session.
#[derive(Debug)]
pub enum StartupStep {
    More,
    Ready,
    Failed(PgError),
}

pub fn startup_step(session: &mut Startup, msg: &Msg) -> Result<StartupStep, String> {
    super::startup_step(session, msg).map(|s| match s {
        Step::More => StartupStep::More,
        Step::Ready => StartupStep::Ready,
        Step::Failed(e) => StartupStep::Failed(e),
    })
}

/// The answer reader of the probe's one query, fed one message at a time.
#[derive(Debug, Default)]
pub struct Rows(super::Rows);

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
