//! A synthetic behavioral-health facility, the same for every consumer that asks with the same seed.
//!
//! The CRM sandboxes (`refbridge-salesforce` and `refbridge-hubspot`, feature `sandbox`) load this
//! world into their object stores, and [`exports`] writes the EHR exports that describe the same
//! referrals (same inquiry ids) — with synthetic patient fields, because an EHR export has them.
//! Everything is derived from the seed, the scale and the `as_of` date with a fixed PRNG, so the same
//! inputs give byte-identical data. [`faults`] parses the fault plans both sandboxes inject;
//! [`journal`] records the requests they received, when asked.
//!
//! This crate does no I/O except [`exports`] writing files; it knows nothing of HTTP or SQLite.

pub mod exports;
pub mod faults;
mod generate;
pub mod journal;
mod random;
mod world;

pub use generate::generate;
pub use random::Random;
pub use world::*;
