//! Severity of a service: how urgently its owner must act.
//!
//! Rules (v1, before inventory and classification exist; later issues raise open stores with
//! sensitive data to `critical`):
//! - `open` or `default_credentials` data store → `high`: anyone who reaches it reads it.
//! - `auth_required` data store → `low`: exposed to the network, protected by a credential.
//! - `unknown` access on an identified data store → `medium`: it answers, and nothing proved it
//!   is protected.
//! - `http` and `unknown` protocols → `info`.

use crate::model::{Access, Service, Severity};

/// Severity of one service from its protocol and access verdict.
pub fn severity(s: &Service) -> Severity {
    if s.protocol == "http" || s.protocol == "unknown" {
        return Severity::Info;
    }
    match s.access {
        Access::Open | Access::DefaultCredentials => Severity::High,
        Access::Unknown => Severity::Medium,
        Access::AuthRequired => Severity::Low,
    }
}
