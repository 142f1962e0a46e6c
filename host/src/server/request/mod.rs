//! Requests: one request from its first check to its response
//! ([`handler`]), where it goes ([`router`]), the mounts answered 503
//! while their app is quarantined ([`quarantine_list`]), and how many
//! requests a process serves before it retires ([`budget`]).

pub mod budget;
pub mod handler;
pub mod quarantine_list;
pub mod router;
