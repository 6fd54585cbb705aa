//! The normalized model every connector produces and the ledger stores.
//!
//! Connectors (EHR exports today, CRMs later) translate their wire formats into these types and
//! nothing else; the `refbridge` crate stores them. This crate must stay free of I/O: no files, no
//! SQLite, no HTTP. Patient values never enter these types: a patient is a [`PatientToken`]
//! (HMAC of the MRN under the facility key) plus at most a ZIP3.

pub mod crm;
mod npi;
mod patient;
mod referral;

pub use npi::{Npi, NpiError};
pub use patient::{PatientKey, PatientToken, zip3};
pub use referral::{
    Direction, Disposition, DispositionReason, LevelOfCare, Location, PartnerRef, Problem, Referral,
};
