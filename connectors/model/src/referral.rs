//! A referral as the ledger understands it, whatever system it came from.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{Npi, PatientToken};

/// Which way the patient went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A partner sent us a patient (an inquiry).
    In,
    /// We referred a patient out to a partner.
    Out,
}

impl Direction {
    /// The ledger's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// What became of an inquiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Admitted,
    NotAdmitted,
    Pending,
    ReferredOut,
}

impl Disposition {
    /// Every value, in the ledger's spelling.
    pub const ALL: [Disposition; 4] = [
        Disposition::Admitted,
        Disposition::NotAdmitted,
        Disposition::Pending,
        Disposition::ReferredOut,
    ];

    /// The ledger's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Admitted => "admitted",
            Disposition::NotAdmitted => "not_admitted",
            Disposition::Pending => "pending",
            Disposition::ReferredOut => "referred_out",
        }
    }

    /// Recognizes the canonical names and the usual spellings in exports
    /// ("Admitted", "Not Admitted", "non-admit", "Referred Out", "open", …).
    pub fn parse(text: &str) -> Option<Disposition> {
        match fold(text).as_str() {
            "admitted" | "admit" | "admission" | "accepted" => Some(Disposition::Admitted),
            "not_admitted"
            | "non_admit"
            | "not_admit"
            | "nonadmit"
            | "no_admit"
            | "denied"
            | "rejected"
            | "closed_not_admitted" => Some(Disposition::NotAdmitted),
            "pending" | "open" | "in_progress" | "waitlist" | "waitlisted" | "scheduled" => {
                Some(Disposition::Pending)
            }
            "referred_out" | "refer_out" | "referredout" | "referred_elsewhere" => {
                Some(Disposition::ReferredOut)
            }
            _ => None,
        }
    }
}

/// Why an inquiry was not admitted (or was referred out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DispositionReason {
    OutOfNetwork,
    LevelOfCareMismatch,
    Geography,
    Capacity,
    ClinicalExclusion,
    Declined,
    NoContact,
    Other,
}

impl DispositionReason {
    /// The ledger's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DispositionReason::OutOfNetwork => "out_of_network",
            DispositionReason::LevelOfCareMismatch => "level_of_care_mismatch",
            DispositionReason::Geography => "geography",
            DispositionReason::Capacity => "capacity",
            DispositionReason::ClinicalExclusion => "clinical_exclusion",
            DispositionReason::Declined => "declined",
            DispositionReason::NoContact => "no_contact",
            DispositionReason::Other => "other",
        }
    }

    /// Recognizes the canonical names and the usual spellings in exports.
    pub fn parse(text: &str) -> Option<DispositionReason> {
        match fold(text).as_str() {
            "out_of_network"
            | "oon"
            | "insurance"
            | "out_of_network_insurance"
            | "payer"
            | "no_insurance"
            | "insurance_not_accepted" => Some(DispositionReason::OutOfNetwork),
            "level_of_care_mismatch"
            | "level_of_care"
            | "loc"
            | "loc_mismatch"
            | "wrong_level_of_care" => Some(DispositionReason::LevelOfCareMismatch),
            "geography" | "location" | "distance" | "too_far" => Some(DispositionReason::Geography),
            "capacity" | "no_beds" | "no_bed" | "full" | "no_capacity" => {
                Some(DispositionReason::Capacity)
            }
            "clinical_exclusion"
            | "clinical"
            | "clinically_inappropriate"
            | "medical_exclusion" => Some(DispositionReason::ClinicalExclusion),
            "declined" | "patient_declined" | "refused" => Some(DispositionReason::Declined),
            "no_contact" | "unable_to_contact" | "no_show" | "lost_contact" => {
                Some(DispositionReason::NoContact)
            }
            "other" => Some(DispositionReason::Other),
            _ => None,
        }
    }
}

/// A level of care as (scheme, code), because ASAM's 4th edition is replacing the 3rd.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LevelOfCare {
    /// `asam3` or `asam4`.
    pub scheme: String,
    /// The level within the scheme, e.g. `3.7`, `1-WM`, `OTP`.
    pub code: String,
}

const ASAM3_CODES: &[&str] = &[
    "0.5", "1", "2.1", "2.5", "3.1", "3.3", "3.5", "3.7", "4", "OTP", "1-WM", "2-WM", "3.2-WM",
    "3.7-WM", "4-WM",
];
const ASAM4_CODES: &[&str] = &[
    "0.5", "1", "1.5", "1.7", "2.1", "2.5", "2.7", "3.1", "3.5", "3.7", "4", "OTP", "1-WM", "2-WM",
    "3.2-WM", "3.7-WM", "4-WM",
];

impl LevelOfCare {
    /// The schemes this build knows.
    pub const SCHEMES: [&'static str; 2] = ["asam3", "asam4"];

    /// Reads "3.7", "ASAM 3.7", "Level 3.7", "L3.7", "4.0", "otp", "3.7-wm" in `scheme`.
    pub fn parse(text: &str, scheme: &str) -> Option<LevelOfCare> {
        let codes = match scheme {
            "asam3" => ASAM3_CODES,
            "asam4" => ASAM4_CODES,
            _ => return None,
        };
        let mut rest = text.trim().to_ascii_uppercase();
        for prefix in ["ASAM", "LEVEL", "LOC", "L"] {
            if let Some(stripped) = rest.strip_prefix(prefix) {
                rest = stripped.trim_start_matches([' ', ':', '-']).to_string();
            }
        }
        let rest = rest.replace(' ', "");
        let (level, withdrawal) = match rest.strip_suffix("-WM").or_else(|| rest.strip_suffix("WM"))
        {
            Some(level) => (level.trim_end_matches('-').to_string(), true),
            None => (rest.clone(), false),
        };
        let level = match level.as_str() {
            "1.0" => "1".to_string(),
            "4.0" => "4".to_string(),
            other => other.to_string(),
        };
        let code = if withdrawal {
            format!("{level}-WM")
        } else {
            level
        };
        codes
            .iter()
            .find(|known| **known == code)
            .map(|known| LevelOfCare {
                scheme: scheme.to_string(),
                code: (*known).to_string(),
            })
    }
}

/// A partner as named by a source record: the free-text name, and the NPI and type when given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartnerRef {
    pub name: String,
    pub npi: Option<Npi>,
    /// Source type as written by the source (`hospital`, `physician`, `court`, …), lower case.
    pub source_type: Option<String>,
}

/// One referral, normalized. Carries no patient value: the patient is a token and a ZIP3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    /// The inquiry id shared by the EHR and the CRM; with the source system, the natural key.
    pub inquiry_id: String,
    pub inquiry_date: NaiveDate,
    pub direction: Direction,
    /// The counterpart: who sent the patient (inbound) or who received them (outbound).
    pub partner: Option<PartnerRef>,
    /// For an inbound inquiry that was referred out: where the patient was sent.
    pub referred_out_to: Option<PartnerRef>,
    /// For an outbound referral: the inquiry it came from, when the source says so.
    pub parent_inquiry_id: Option<String>,
    /// The referring professional at the partner, as written.
    pub referred_by: Option<String>,
    /// The facility's relationship manager for this inquiry, as written.
    pub rep: Option<String>,
    pub payer: Option<String>,
    pub plan_type: Option<String>,
    pub level_of_care: Option<LevelOfCare>,
    pub disposition: Disposition,
    pub disposition_reason: Option<DispositionReason>,
    pub admit_date: Option<NaiveDate>,
    pub patient: Option<PatientToken>,
    pub zip3: Option<String>,
}

/// Where in a source a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// The whole file.
    File,
    /// A physical line of a text file (1-based; a CSV record's first line).
    Line(u64),
    /// An entry of a JSON Bundle (1-based).
    Entry(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File => f.write_str("whole file"),
            Location::Line(line) => write!(f, "line {line}"),
            Location::Entry(entry) => write!(f, "entry {entry}"),
        }
    }
}

/// A problem with a piece of input. The reason names the field and what is wrong with it, never a
/// patient value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub location: Location,
    pub field: Option<String>,
    pub reason: String,
}

impl Problem {
    pub fn new(location: Location, field: Option<&str>, reason: impl Into<String>) -> Problem {
        Problem {
            location,
            field: field.map(str::to_string),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}, field {field}: {}", self.location, self.reason),
            None => write!(f, "{}: {}", self.location, self.reason),
        }
    }
}

/// Lower case, with spaces, hyphens, slashes and dots folded to single underscores. Short ASCII
/// input (every picklist value) is folded on the stack; this runs for every row of an export.
fn fold(text: &str) -> FoldedText {
    let mut folded = FoldedText {
        bytes: [0; FOLD_CAPACITY],
        len: 0,
    };
    for byte in text.trim().bytes() {
        let next = if byte.is_ascii_alphanumeric() {
            byte.to_ascii_lowercase()
        } else if byte.is_ascii() {
            if folded.len == 0 || folded.bytes[folded.len - 1] == b'_' {
                continue;
            }
            b'_'
        } else {
            // Not a picklist value: matches nothing.
            return FoldedText::NONE;
        };
        if folded.len == FOLD_CAPACITY {
            return FoldedText::NONE;
        }
        folded.bytes[folded.len] = next;
        folded.len += 1;
    }
    while folded.len > 0 && folded.bytes[folded.len - 1] == b'_' {
        folded.len -= 1;
    }
    folded
}

const FOLD_CAPACITY: usize = 48;

struct FoldedText {
    bytes: [u8; FOLD_CAPACITY],
    len: usize,
}

impl FoldedText {
    /// Matches no known value (longer than any of them, or not ASCII).
    const NONE: FoldedText = FoldedText {
        bytes: [0; FOLD_CAPACITY],
        len: 0,
    };

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_and_reasons_accept_export_spellings() {
        assert_eq!(
            Disposition::parse("Not Admitted"),
            Some(Disposition::NotAdmitted)
        );
        assert_eq!(
            Disposition::parse(" referred-out "),
            Some(Disposition::ReferredOut)
        );
        assert_eq!(Disposition::parse("ADMITTED"), Some(Disposition::Admitted));
        assert_eq!(Disposition::parse("maybe"), None);
        assert_eq!(
            DispositionReason::parse("Out of Network"),
            Some(DispositionReason::OutOfNetwork)
        );
        assert_eq!(
            DispositionReason::parse("no beds"),
            Some(DispositionReason::Capacity)
        );
        assert_eq!(DispositionReason::parse("because"), None);
    }

    #[test]
    fn levels_of_care_are_scheme_and_code() {
        let parse = |text| LevelOfCare::parse(text, "asam3").map(|loc| loc.code);
        assert_eq!(parse("3.7").as_deref(), Some("3.7"));
        assert_eq!(parse("ASAM 3.5").as_deref(), Some("3.5"));
        assert_eq!(parse("Level 1.0").as_deref(), Some("1"));
        assert_eq!(parse("otp").as_deref(), Some("OTP"));
        assert_eq!(parse("3.7 WM").as_deref(), Some("3.7-WM"));
        assert_eq!(parse("3.9"), None);
        assert_eq!(parse("1.5"), None);
        assert_eq!(
            LevelOfCare::parse("1.5", "asam4")
                .map(|l| l.code)
                .as_deref(),
            Some("1.5")
        );
        assert_eq!(LevelOfCare::parse("3.7", "icd"), None);
    }
}
