//! How an export is laid out: the `generic` CSV profile, config overrides, and FHIR options.
//!
//! These types are deserialized straight from `[connectors.ehr.csv]` and `[connectors.ehr.fhir]`
//! in refbridge's TOML config; [`CsvLayout::problems`] reports what is wrong with an override so
//! that `check-config` can point at the key.

use std::collections::{BTreeMap, HashMap};

use refbridge_model::{Disposition, DispositionReason, LevelOfCare, Npi};
use serde::Deserialize;

/// The columns refbridge reads, by their `generic` header name. Patient name, birth date, phone,
/// address and notes are deliberately absent: they are never read, so they need no mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    InquiryId,
    InquiryDate,
    ReferralSource,
    ReferralSourceNpi,
    ReferralSourceType,
    ReferredBy,
    Rep,
    Payer,
    PlanType,
    LevelOfCare,
    Disposition,
    DispositionReason,
    ReferredOutTo,
    AdmitDate,
    Mrn,
    PatientZip,
}

impl Column {
    pub const ALL: [Column; 16] = [
        Column::InquiryId,
        Column::InquiryDate,
        Column::ReferralSource,
        Column::ReferralSourceNpi,
        Column::ReferralSourceType,
        Column::ReferredBy,
        Column::Rep,
        Column::Payer,
        Column::PlanType,
        Column::LevelOfCare,
        Column::Disposition,
        Column::DispositionReason,
        Column::ReferredOutTo,
        Column::AdmitDate,
        Column::Mrn,
        Column::PatientZip,
    ];

    /// Columns without which a row cannot be a referral.
    pub const REQUIRED: [Column; 3] = [Column::InquiryId, Column::InquiryDate, Column::Disposition];

    /// The header name in the `generic` profile.
    pub fn generic_name(self) -> &'static str {
        match self {
            Column::InquiryId => "inquiry_id",
            Column::InquiryDate => "inquiry_date",
            Column::ReferralSource => "referral_source",
            Column::ReferralSourceNpi => "referral_source_npi",
            Column::ReferralSourceType => "referral_source_type",
            Column::ReferredBy => "referred_by",
            Column::Rep => "rep",
            Column::Payer => "payer",
            Column::PlanType => "plan_type",
            Column::LevelOfCare => "level_of_care",
            Column::Disposition => "disposition",
            Column::DispositionReason => "disposition_reason",
            Column::ReferredOutTo => "referred_out_to",
            Column::AdmitDate => "admit_date",
            Column::Mrn => "mrn",
            Column::PatientZip => "patient_zip",
        }
    }
}

/// The full `generic` header, patient columns included, in its documented order.
pub const GENERIC_HEADER: &str = "inquiry_id,inquiry_date,referral_source,referral_source_npi,referral_source_type,referred_by,rep,payer,plan_type,level_of_care,disposition,disposition_reason,referred_out_to,admit_date,mrn,patient_name,birth_date,patient_phone,patient_address,patient_zip,notes";

/// Header renames: for each column read, the header it has in the facility's export.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnNames {
    pub inquiry_id: Option<String>,
    pub inquiry_date: Option<String>,
    pub referral_source: Option<String>,
    pub referral_source_npi: Option<String>,
    pub referral_source_type: Option<String>,
    pub referred_by: Option<String>,
    pub rep: Option<String>,
    pub payer: Option<String>,
    pub plan_type: Option<String>,
    pub level_of_care: Option<String>,
    pub disposition: Option<String>,
    pub disposition_reason: Option<String>,
    pub referred_out_to: Option<String>,
    pub admit_date: Option<String>,
    pub mrn: Option<String>,
    pub patient_zip: Option<String>,
}

impl ColumnNames {
    /// The header expected for `column`: the rename when configured, else the generic name.
    pub fn header_for(&self, column: Column) -> &str {
        let rename = match column {
            Column::InquiryId => &self.inquiry_id,
            Column::InquiryDate => &self.inquiry_date,
            Column::ReferralSource => &self.referral_source,
            Column::ReferralSourceNpi => &self.referral_source_npi,
            Column::ReferralSourceType => &self.referral_source_type,
            Column::ReferredBy => &self.referred_by,
            Column::Rep => &self.rep,
            Column::Payer => &self.payer,
            Column::PlanType => &self.plan_type,
            Column::LevelOfCare => &self.level_of_care,
            Column::Disposition => &self.disposition,
            Column::DispositionReason => &self.disposition_reason,
            Column::ReferredOutTo => &self.referred_out_to,
            Column::AdmitDate => &self.admit_date,
            Column::Mrn => &self.mrn,
            Column::PatientZip => &self.patient_zip,
        };
        rename.as_deref().unwrap_or(column.generic_name())
    }
}

/// Value maps: export spelling (matched case-insensitively, trimmed) → refbridge's value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValueMaps {
    /// → `admitted`, `not_admitted`, `pending` or `referred_out`.
    pub disposition: BTreeMap<String, String>,
    /// → `out_of_network`, `level_of_care_mismatch`, `geography`, `capacity`,
    /// `clinical_exclusion`, `declined`, `no_contact` or `other`.
    pub disposition_reason: BTreeMap<String, String>,
    /// → the payer name to store.
    pub payer: BTreeMap<String, String>,
    /// → a level-of-care code of the configured scheme (`3.7`, `1-WM`, `OTP`, …).
    pub level_of_care: BTreeMap<String, String>,
}

/// `[connectors.ehr.csv]`: the `generic` profile plus overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvLayout {
    /// Header renames.
    pub columns: ColumnNames,
    /// chrono `strftime` formats tried in order for every date column. Empty: ISO (`2026-03-07`,
    /// with or without a time) and US (`03/07/2026`, `3/7/2026`).
    pub date_formats: Vec<String>,
    pub values: ValueMaps,
}

/// `[connectors.ehr.fhir]`: how to read FHIR `ServiceRequest`s.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FhirOptions {
    /// The facility's own NPI: a `ServiceRequest` whose requester carries it is an outbound
    /// referral (we referred the patient to the performer).
    pub facility_npi: Option<String>,
    /// The facility's own reference (e.g. `Organization/facility`), matched like `facility_npi`.
    pub facility_reference: Option<String>,
    /// The identifier system whose value is the inquiry id. Unset: the first identifier, else the
    /// resource id.
    pub inquiry_id_system: Option<String>,
}

impl FhirOptions {
    /// Problems as (key path below `[connectors.ehr.fhir]`, message).
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        let mut problems = Vec::new();
        if let Some(npi) = &self.facility_npi
            && let Err(error) = Npi::parse(npi)
        {
            problems.push((path(&["facility_npi"]), format!("not a valid NPI: {error}")));
        }
        problems
    }
}

impl CsvLayout {
    /// Problems as (key path below `[connectors.ehr.csv]`, message), for `check-config`.
    pub fn problems(&self, level_of_care_scheme: &str) -> Vec<(Vec<String>, String)> {
        let mut problems = Vec::new();
        for (index, format) in self.date_formats.iter().enumerate() {
            if let Err(message) = crate::dates::check_format(format) {
                problems.push((path(&["date_formats", &index.to_string()]), message));
            }
        }
        let mut seen: HashMap<String, Column> = HashMap::new();
        for column in Column::ALL {
            let header = fold_key(self.columns.header_for(column));
            if header.is_empty() {
                problems.push((
                    path(&["columns", column.generic_name()]),
                    "a column name cannot be empty".to_string(),
                ));
            } else if let Some(other) = seen.insert(header, column) {
                problems.push((
                    path(&["columns", column.generic_name()]),
                    format!("the same header is also used for {}", other.generic_name()),
                ));
            }
        }
        for (from, to) in &self.values.disposition {
            if Disposition::parse(to).is_none() {
                problems.push((
                    path(&["values", "disposition", from]),
                    format!(
                        "{to:?} is not a disposition; use one of admitted, not_admitted, pending, referred_out"
                    ),
                ));
            }
        }
        for (from, to) in &self.values.disposition_reason {
            if DispositionReason::parse(to).is_none() {
                problems.push((
                    path(&["values", "disposition_reason", from]),
                    format!("{to:?} is not a disposition reason; use one of out_of_network, level_of_care_mismatch, geography, capacity, clinical_exclusion, declined, no_contact, other"),
                ));
            }
        }
        for (from, to) in &self.values.level_of_care {
            if LevelOfCare::parse(to, level_of_care_scheme).is_none() {
                problems.push((
                    path(&["values", "level_of_care", from]),
                    format!("{to:?} is not a level of care in scheme {level_of_care_scheme}"),
                ));
            }
        }
        for (from, to) in &self.values.payer {
            if to.trim().is_empty() {
                problems.push((
                    path(&["values", "payer", from]),
                    "a payer name cannot be empty".to_string(),
                ));
            }
        }
        problems
    }
}

fn path(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|segment| segment.to_string()).collect()
}

/// Lower case, trimmed: how headers and map keys are compared.
pub(crate) fn fold_key(text: &str) -> String {
    text.trim().to_lowercase()
}

/// A value map with folded keys, ready for lookups.
pub(crate) fn folded(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter()
        .map(|(from, to)| (fold_key(from), to.trim().to_string()))
        .collect()
}
