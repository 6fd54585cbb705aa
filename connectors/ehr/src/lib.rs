//! EHR referral exports → normalized [`Referral`]s.
//!
//! Reads the generic CSV layout (or a configured variant of it), FHIR R4 `ServiceRequest`s from a
//! `Bundle` JSON file, and FHIR Bulk Data NDJSON, streaming every format so memory stays flat
//! whatever the file size. Patient values are reduced to a [`refbridge_model::PatientToken`] and a
//! ZIP3 in the function that parses the row; names, birth dates, phones, addresses and notes are
//! never read into a value that outlives it.
//!
//! This crate must not touch the ledger: it hands each [`Record`] to a sink and the caller stores
//! it. Problems carry a [`Location`] and a reason that never repeats an input value.
//!
//! # Layout
//! - [`layout`]: the CSV column profile (`generic` plus config overrides) and value maps.
//! - `dates`: the date formats exports use.
//! - `csv_export`: the streaming CSV reader.
//! - `fhir`: `Bundle` and NDJSON readers for `ServiceRequest`.
//! - `detect`: which of the three a file is, and whether it is text at all.

mod csv_export;
mod dates;
mod detect;
mod fhir;
pub mod layout;

use std::fmt;
use std::path::Path;

use refbridge_model::{Location, PatientKey, Problem, Referral};

pub use detect::{DetectError, Format, detect_format};
pub use layout::{CsvLayout, FhirOptions};

/// One item read from an export.
// Records are handed to the sink one at a time and never collected, so the large variant costs
// nothing that boxing it would save.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Record {
    /// A referral to store, with warnings about values that were dropped or defaulted.
    Referral {
        location: Location,
        referral: Referral,
        warnings: Vec<Problem>,
    },
    /// A row or resource that cannot be a referral; it goes to quarantine.
    Rejected(Problem),
    /// Something that is valid but not a referral (a `Patient` resource in an NDJSON export, a
    /// `ServiceRequest` marked `entered-in-error`); counted, never stored.
    Skipped { location: Location, what: String },
}

/// Why reading a file stopped early. Records handed to the sink before the error stay valid.
#[derive(Debug)]
pub enum ReadError<E> {
    /// The file could not be read.
    Io(std::io::Error),
    /// The file is not usable as an export from this point on (not text, not CSV/JSON, malformed
    /// JSON, missing required columns…). The problem's location says where.
    Unusable(Problem),
    /// The sink refused a record; its error is passed through.
    Sink(E),
}

impl<E: fmt::Display> fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(error) => write!(f, "cannot read the file: {error}"),
            ReadError::Unusable(problem) => write!(f, "unusable export: {problem}"),
            ReadError::Sink(error) => write!(f, "{error}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ReadError<E> {}

impl<E> From<std::io::Error> for ReadError<E> {
    fn from(error: std::io::Error) -> Self {
        ReadError::Io(error)
    }
}

/// Everything needed to read exports: the configured layout, FHIR options and the patient key.
#[derive(Debug, Clone)]
pub struct ExportReader {
    pub csv: CsvLayout,
    pub fhir: FhirOptions,
    pub patient_key: PatientKey,
    /// The level-of-care scheme codes are read in (`asam3` or `asam4`).
    pub level_of_care_scheme: String,
}

impl ExportReader {
    /// Reads `path` as `format`, handing every record to `sink` in file order.
    pub fn read<E>(
        &self,
        path: &Path,
        format: Format,
        sink: &mut dyn FnMut(Record) -> Result<(), E>,
    ) -> Result<(), ReadError<E>> {
        match format {
            Format::Csv => csv_export::read(self, path, sink),
            Format::FhirBundle => fhir::read_bundle(self, path, sink),
            Format::FhirNdjson => fhir::read_ndjson(self, path, sink),
        }
    }
}
