//! What every protocol is built on.

pub mod http;
