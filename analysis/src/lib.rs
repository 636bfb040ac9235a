//! groundtruth's unprivileged side: reading trails. `events` prints them; verification
//! and the comparison with audit logs build on this crate.

pub mod analyze;
pub mod events;
pub mod handoffs;
pub mod verify;
