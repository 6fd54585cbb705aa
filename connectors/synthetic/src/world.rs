//! The world's types. Indexes (`usize`) point into the [`World`]'s vectors.

use chrono::{DateTime, NaiveDate, Utc};

/// How big a world to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Tens of partners: the demo and tests.
    Small,
    /// Hundreds of partners.
    Medium,
    /// ≥ 20,000 partners, ≥ 100,000 contacts, ≥ 50,000 referrals: benchmarks.
    Large,
}

impl Scale {
    pub fn parse(text: &str) -> Option<Scale> {
        match text {
            "small" => Some(Scale::Small),
            "medium" => Some(Scale::Medium),
            "large" => Some(Scale::Large),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scale::Small => "small",
            Scale::Medium => "medium",
            Scale::Large => "large",
        }
    }
}

/// Everything the generator needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldSpec {
    pub seed: u64,
    pub scale: Scale,
    /// The day the world ends on: referrals cover the 18 months before it.
    pub as_of: NaiveDate,
}

/// The facility and everyone around it.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    pub spec: WorldSpec,
    pub facility: Facility,
    pub reps: Vec<Rep>,
    pub partners: Vec<Partner>,
    pub contacts: Vec<Contact>,
    pub referrals: Vec<Referral>,
    pub activities: Vec<Activity>,
}

/// The facility the world is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Facility {
    pub name: String,
    pub npi: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    /// Payers the facility is in network with.
    pub payers_in_network: Vec<String>,
    /// ASAM (3rd edition) levels of care it offers.
    pub levels_of_care: Vec<String>,
}

/// A referral account manager (CRM user / owner).
#[derive(Debug, Clone, PartialEq)]
pub struct Rep {
    /// Stable key, e.g. `R001`.
    pub key: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// The kinds of referral partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceType {
    Hospital,
    Physician,
    Therapist,
    Detox,
    TreatmentProgram,
    School,
    Employer,
    Court,
    Community,
}

impl SourceType {
    pub const ALL: [SourceType; 9] = [
        SourceType::Hospital,
        SourceType::Physician,
        SourceType::Therapist,
        SourceType::Detox,
        SourceType::TreatmentProgram,
        SourceType::School,
        SourceType::Employer,
        SourceType::Court,
        SourceType::Community,
    ];

    /// The spelling used in CRM fields and EHR exports.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Hospital => "hospital",
            SourceType::Physician => "physician",
            SourceType::Therapist => "therapist",
            SourceType::Detox => "detox",
            SourceType::TreatmentProgram => "treatment_program",
            SourceType::School => "school",
            SourceType::Employer => "employer",
            SourceType::Court => "court",
            SourceType::Community => "community",
        }
    }
}

/// The story a partner's referrals tell, so that health scoring has something to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Refers at a steady rate.
    Steady,
    /// Referred well, then dropped over the last months.
    Declining,
    /// Referred, then stopped entirely some months ago.
    Silent,
    /// Sends us patients; we never refer to them (or the reverse).
    OneSided,
    /// First referral in the last two months.
    New,
    /// Rarely refers.
    Occasional,
}

/// A referral partner organization (or solo practitioner).
#[derive(Debug, Clone, PartialEq)]
pub struct Partner {
    /// Stable key, e.g. `P00042`.
    pub key: String,
    pub name: String,
    /// Valid NPI (Luhn with the 80840 prefix); `None` for partners that have none (schools, courts…).
    pub npi: Option<String>,
    pub source_type: SourceType,
    pub website: Option<String>,
    pub phone: String,
    pub street: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub payers_accepted: Vec<String>,
    pub levels_of_care: Vec<String>,
    pub accepting_referrals: bool,
    pub preferred: bool,
    /// The rep who owns the relationship; `None` for unowned partners.
    pub owner: Option<usize>,
    pub pattern: Pattern,
    /// A second CRM record for the same partner under a name variant ("Mercy Hosp ED"): the index
    /// of the original.
    pub duplicate_of: Option<usize>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

/// A professional at a partner.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    /// Stable key, e.g. `C000123`.
    pub key: String,
    pub partner: usize,
    pub first_name: String,
    pub last_name: String,
    pub title: String,
    pub email: String,
    pub phone: String,
    pub owner: Option<usize>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

/// Which way a referral went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The partner sent us the patient.
    In,
    /// We referred the patient to the partner.
    Out,
}

/// What became of a referral. For outbound ones: whether the partner admitted the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Admitted,
    NotAdmitted,
    Pending,
    ReferredOut,
}

impl Stage {
    /// The CRM stage label ("Admitted", "Not Admitted", "Pending", "Referred Out").
    pub fn label(self) -> &'static str {
        match self {
            Stage::Admitted => "Admitted",
            Stage::NotAdmitted => "Not Admitted",
            Stage::Pending => "Pending",
            Stage::ReferredOut => "Referred Out",
        }
    }

    /// The `generic` export and ledger spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Admitted => "admitted",
            Stage::NotAdmitted => "not_admitted",
            Stage::Pending => "pending",
            Stage::ReferredOut => "referred_out",
        }
    }
}

/// A synthetic patient: only the EHR exports carry these fields, never the CRMs.
#[derive(Debug, Clone, PartialEq)]
pub struct Patient {
    pub mrn: String,
    pub first_name: String,
    pub last_name: String,
    pub birth_date: NaiveDate,
    pub phone: String,
    pub address: String,
    pub zip: String,
}

/// One referral (an inquiry in, or a referral out), as a CRM deal/opportunity and an EHR row.
#[derive(Debug, Clone, PartialEq)]
pub struct Referral {
    /// Shared by the CRMs and the EHR export, e.g. `INQ-2026-000123`.
    pub inquiry_id: String,
    pub direction: Direction,
    /// Who sent the patient (in) or received them (out).
    pub partner: usize,
    /// For an inquiry that was referred out: the index of the outbound referral it produced.
    pub referred_out_as: Option<usize>,
    /// For an outbound referral: the index of the inquiry it came from.
    pub parent: Option<usize>,
    /// The referring professional, when known.
    pub contact: Option<usize>,
    pub rep: Option<usize>,
    pub inquiry_at: DateTime<Utc>,
    pub stage: Stage,
    /// `out_of_network`, `level_of_care_mismatch`, `geography`, `capacity`, … when not admitted.
    pub reason: Option<&'static str>,
    pub payer: String,
    pub plan_type: String,
    pub level_of_care: String,
    pub admit_date: Option<NaiveDate>,
    pub patient: Patient,
    pub modified_at: DateTime<Utc>,
}

/// The kinds of touch a rep records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    Call,
    Meeting,
    Visit,
    Email,
    Note,
}

impl ActivityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::Call => "call",
            ActivityKind::Meeting => "meeting",
            ActivityKind::Visit => "visit",
            ActivityKind::Email => "email",
            ActivityKind::Note => "note",
        }
    }
}

/// A rep's touch with a partner (completed).
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    /// Stable key, e.g. `A000123`.
    pub key: String,
    pub kind: ActivityKind,
    pub rep: usize,
    pub partner: usize,
    pub contact: Option<usize>,
    pub at: DateTime<Utc>,
    pub subject: String,
    pub modified_at: DateTime<Utc>,
}
