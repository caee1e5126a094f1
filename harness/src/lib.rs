//! berth-harness: property-based state machines, model against the real runtime.
//!
//! Not built yet: issue 8 adds `reference.rs`, `sut.rs`, `transitions.rs`,
//! `strategies.rs`, `observe.rs` and `assertions.rs` here (shared/DESIGN.md, "The harness").
#![warn(missing_docs)]
