//! Refer-out routing: for a patient we cannot admit (out-of-network payer, level-of-care mismatch,
//! geography, capacity), up to three partners that fit the patient, each with its reasons.
//!
//! # Fit and ranking
//! Candidates are the live partners (`partner.merged_into` is NULL) that a CRM describes (a
//! `partner_profile` row) or that ops describe in `[[routing.partner]]`; an override replaces the
//! profile's value field by field (a `payers` list replaces the profile's list). A candidate fits
//! only if it meets every hard requirement:
//! - it is not known to refuse referrals (`accepting_referrals` is true or unknown, never false);
//! - it offers the requested level of care, when one is given;
//! - it is in network with the requested payer, when one is given. Payers are compared without
//!   case, spacing or punctuation ("Self pay" = "Self-pay" = "SELF-PAY"); a self-pay patient fits
//!   any partner that lists self-pay.
//!
//! Fitting partners are ranked by, in order: geography tier (same ZIP3, then same region = same
//! first two ZIP digits, then elsewhere or unknown), the preferred flag, acceptance known to be
//! true before unknown, then name and ledger id so that the order never depends on the database.
//! Geography is never a hard requirement: a partner elsewhere that fits is still offered. ZIP3
//! `000` (withheld by HIPAA Safe Harbor) counts as unknown.
//!
//! Level-of-care texts are read with `refbridge_model::LevelOfCare` ("3.7", "ASAM 3.7", "Level
//! 3.7", "3.7 WM"), as an ASAM 3rd-edition code or else a 4th-edition one; profiles store bare
//! codes, so routing compares codes. When nothing fits, [`RouteAnswer::none_reason`] says in one
//! sentence which requirements eliminated every candidate: the smallest set of them that no
//! candidate meets together.
//!
//! # What this module must not do
//! Reciprocity is measured elsewhere and never ranks a partner: [`route`] reads only `partner`,
//! `partner_profile` and `partner_source_record`, never a referral table, so how many patients a
//! partner sends us or receives from us cannot influence a suggestion (a test drops the referral
//! tables and gets the same answer). [`lead_suggestions`] reads referrals only to find the leads
//! and their payer, level of care and ZIP3. Nothing here writes to the ledger. Task texts
//! ([`Fit::task_reasons`], [`RouteAnswer::task_none_reason`]) carry no patient value: no payer, no
//! level code, no ZIP3.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use chrono::{Days, NaiveDate};
use refbridge_model::crm::CrmSystem;
use refbridge_model::{DispositionReason, LevelOfCare};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// At most this many partners are suggested.
pub const MAX_OPTIONS: usize = 3;

/// Every disposition reason code, in the ledger's spelling.
const REASON_CODES: [DispositionReason; 8] = [
    DispositionReason::OutOfNetwork,
    DispositionReason::LevelOfCareMismatch,
    DispositionReason::Geography,
    DispositionReason::Capacity,
    DispositionReason::ClinicalExclusion,
    DispositionReason::Declined,
    DispositionReason::NoContact,
    DispositionReason::Other,
];

/// `[routing]`: refer-out suggestions for leads that did not convert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Suggest partners for leads that did not convert ([`lead_suggestions`]). `refbridge route`
    /// answers either way.
    pub enabled: bool,
    /// How many days before today a lead's inquiry may date from and still get suggestions.
    pub lookback_days: u32,
    /// Disposition reason codes that make a lead worth referring out.
    pub reasons: Vec<String>,
    /// `[[routing.partner]]`: what ops know about partners beyond (or instead of) the CRM.
    pub partner: Vec<PartnerOverride>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            enabled: true,
            lookback_days: 30,
            reasons: [
                DispositionReason::OutOfNetwork,
                DispositionReason::LevelOfCareMismatch,
                DispositionReason::Geography,
                DispositionReason::Capacity,
            ]
            .iter()
            .map(|reason| reason.as_str().to_string())
            .collect(),
            partner: Vec::new(),
        }
    }
}

/// One `[[routing.partner]]`: facts about a partner that override its CRM profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerOverride {
    /// The partner's source record, `system:external_key`: `salesforce:001…`, `hubspot:123`,
    /// `ehr:<name as the export writes it>`.
    pub record: String,
    pub preferred: Option<bool>,
    pub accepting_referrals: Option<bool>,
    /// Payers the partner is in network with; replaces the profile's list.
    pub payers: Option<Vec<String>>,
    /// Level-of-care codes the partner offers; replaces the profile's list.
    pub levels_of_care: Option<Vec<String>>,
    pub zip3: Option<String>,
}

impl RoutingConfig {
    /// Every problem, as (key path below `[routing]`, message), for `check-config`.
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        let mut problems = Vec::new();
        let mut add = |path: &[&str], message: String| {
            problems.push((path.iter().map(|s| s.to_string()).collect(), message));
        };
        if self.lookback_days == 0 {
            add(&["lookback_days"], "must be at least 1".to_string());
        }
        if self.reasons.is_empty() {
            add(
                &["reasons"],
                "list at least one disposition reason, or set enabled = false".to_string(),
            );
        }
        for (index, reason) in self.reasons.iter().enumerate() {
            let at = index.to_string();
            match DispositionReason::parse(reason) {
                Some(known) if known.as_str() == reason => {}
                Some(known) => add(
                    &["reasons", &at],
                    format!(
                        "{reason:?} is not a reason code: write {:?}",
                        known.as_str()
                    ),
                ),
                None => add(
                    &["reasons", &at],
                    format!(
                        "{reason:?} is not a disposition reason: use one of {}",
                        REASON_CODES.map(DispositionReason::as_str).join(", ")
                    ),
                ),
            }
        }
        let mut seen: HashMap<RecordRef, usize> = HashMap::new();
        for (index, entry) in self.partner.iter().enumerate() {
            let at = index.to_string();
            match RecordRef::parse(&entry.record) {
                Ok(record) => {
                    if let Some(other) = seen.insert(record, index) {
                        add(
                            &["partner", &at, "record"],
                            format!(
                                "the same record is already described by routing.partner[{other}]"
                            ),
                        );
                    }
                }
                Err(message) => add(&["partner", &at, "record"], message),
            }
            if entry.preferred.is_none()
                && entry.accepting_referrals.is_none()
                && entry.payers.is_none()
                && entry.levels_of_care.is_none()
                && entry.zip3.is_none()
            {
                add(
                    &["partner", &at],
                    "says nothing: set preferred, accepting_referrals, payers, levels_of_care or zip3"
                        .to_string(),
                );
            }
            for (payer_index, payer) in entry.payers.iter().flatten().enumerate() {
                if fold_payer(payer).is_empty() {
                    add(
                        &["partner", &at, "payers", &payer_index.to_string()],
                        "a payer name cannot be empty".to_string(),
                    );
                }
            }
            for (level_index, level) in entry.levels_of_care.iter().flatten().enumerate() {
                if parse_level(level).is_none() {
                    add(
                        &["partner", &at, "levels_of_care", &level_index.to_string()],
                        format!(
                            "{level:?} is not an ASAM level of care (e.g. 2.1, 3.5, 3.7-WM, OTP)"
                        ),
                    );
                }
            }
            if let Some(zip3) = &entry.zip3
                && !is_zip3(zip3)
            {
                add(
                    &["partner", &at, "zip3"],
                    "must be exactly three digits (e.g. \"303\")".to_string(),
                );
            }
        }
        problems
    }
}

/// A source record named as `system:external_key`, the way config names partners.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordRef {
    /// `salesforce`, `hubspot` or `ehr`.
    pub system: String,
    pub external_key: String,
}

impl RecordRef {
    /// The systems a source record can come from.
    pub const SYSTEMS: [&'static str; 3] = ["salesforce", "hubspot", "ehr"];

    /// Reads `salesforce:001…`, `hubspot:123` or `ehr:Mercy Hospital`.
    pub fn parse(text: &str) -> Result<RecordRef, String> {
        let Some((system, key)) = text.split_once(':') else {
            return Err(format!(
                "{text:?} is not system:external_key (e.g. \"salesforce:001A000001\", \"hubspot:123\", \"ehr:Mercy Hospital\")"
            ));
        };
        let system = system.trim().to_ascii_lowercase();
        if !Self::SYSTEMS.contains(&system.as_str()) {
            return Err(format!(
                "{system:?} is not a system: use one of {}",
                Self::SYSTEMS.join(", ")
            ));
        }
        let external_key = key.trim();
        if external_key.is_empty() {
            return Err("the external key after the colon is empty".to_string());
        }
        Ok(RecordRef {
            system,
            external_key: external_key.to_string(),
        })
    }
}

/// What is known of a patient to route: each criterion optional, at least one required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRequest {
    pub payer: Option<String>,
    /// An ASAM level of care, e.g. `3.5`, `ASAM 3.7`, `3.7-WM`, `OTP`.
    pub level_of_care: Option<String>,
    /// The patient's ZIP3.
    pub zip3: Option<String>,
}

/// Why a request cannot be routed, or the ledger could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error(
        "the level of care is not an ASAM level: use a code such as 0.5, 1, 2.1, 2.5, 3.1, 3.5, 3.7, 4, 3.7-WM or OTP"
    )]
    UnknownLevelOfCare,
    #[error("the ZIP3 must be exactly three digits, e.g. 303")]
    InvalidZip3,
    #[error("nothing to route on: give a payer, a level of care or a ZIP3")]
    NoCriteria,
    #[error("cannot read the ledger")]
    Sql(#[from] rusqlite::Error),
}

impl RoutingError {
    /// Whether the request (not the ledger) is at fault.
    pub fn is_input(&self) -> bool {
        !matches!(self, RoutingError::Sql(_))
    }
}

/// A partner suggested for a patient, and why it fits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteOption {
    pub partner_id: i64,
    pub name: String,
    /// The CRM the partner's tasks go to (`salesforce`, `hubspot`), when it has one.
    pub home_system: Option<String>,
    pub home_crm_id: Option<String>,
    pub fit: Fit,
}

/// How close a partner is to the patient, from their ZIP3s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Geography {
    SameZip3,
    /// Same first two ZIP digits.
    SameRegion,
    Elsewhere,
    /// The patient's or the partner's ZIP3 is not known.
    Unknown,
}

impl Geography {
    /// Lower is closer; elsewhere and unknown tie.
    fn tier(self) -> u8 {
        match self {
            Geography::SameZip3 => 0,
            Geography::SameRegion => 1,
            Geography::Elsewhere | Geography::Unknown => 2,
        }
    }
}

/// Whether a partner accepts referrals. A partner known not to is never suggested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Accepting {
    Yes,
    Unknown,
}

/// The facts that make a partner fit a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fit {
    /// The requested payer as the partner lists it; `None` when no payer was requested.
    pub payer_in_network: Option<String>,
    /// The requested level-of-care code; `None` when no level was requested.
    pub level_offered: Option<String>,
    pub geography: Geography,
    /// The partner's ZIP3, when known.
    pub zip3: Option<String>,
    pub preferred: bool,
    pub accepting: Accepting,
}

impl Fit {
    /// The reasons, for a person reading the CLI: "in network with Aetna", "offers ASAM 3.5",
    /// "same ZIP3 303", "preferred partner".
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(payer) = &self.payer_in_network {
            reasons.push(format!("in network with {payer}"));
        }
        if let Some(level) = &self.level_offered {
            reasons.push(format!("offers ASAM {level}"));
        }
        match (self.geography, &self.zip3) {
            (Geography::SameZip3, Some(zip3)) => reasons.push(format!("same ZIP3 {zip3}")),
            (Geography::SameRegion, Some(zip3)) => {
                reasons.push(format!("same region (ZIP3 {zip3})"))
            }
            _ => {}
        }
        reasons.extend(self.common_reasons());
        reasons
    }

    /// The reasons for a CRM task: the same facts without any patient value (no payer name, no
    /// level code, no ZIP3).
    pub fn task_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.payer_in_network.is_some() {
            reasons.push("in network for the lead's payer".to_string());
        }
        if self.level_offered.is_some() {
            reasons.push("offers the requested level of care".to_string());
        }
        match self.geography {
            Geography::SameZip3 => reasons.push("same area".to_string()),
            Geography::SameRegion => reasons.push("nearby area".to_string()),
            Geography::Elsewhere | Geography::Unknown => {}
        }
        reasons.extend(self.common_reasons());
        reasons
    }

    fn common_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.preferred {
            reasons.push("preferred partner".to_string());
        }
        if self.accepting == Accepting::Yes {
            reasons.push("accepting referrals".to_string());
        }
        reasons
    }
}

/// Up to [`MAX_OPTIONS`] partners, best first; when there are none, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteAnswer {
    pub options: Vec<RouteOption>,
    /// One sentence naming what eliminated every candidate, with the requested values
    /// ("no accepting partner offers ASAM 3.7 in network with Aetna").
    pub none_reason: Option<String>,
    /// The same sentence without patient values, for a CRM task ("no accepting partner offers
    /// the requested level of care in network for the lead's payer").
    pub task_none_reason: Option<String>,
}

impl RouteAnswer {
    /// The answer for people: numbered options with their reasons, or why there are none.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(reason) = &self.none_reason {
            let _ = writeln!(out, "No partner fits: {reason}.");
            return out;
        }
        for (index, option) in self.options.iter().enumerate() {
            let home = match (&option.home_system, &option.home_crm_id) {
                (Some(system), Some(id)) => format!(", {system} {id}"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "{}. {} (partner {}{home})",
                index + 1,
                option.name,
                option.partner_id
            );
            let reasons = option.fit.reasons();
            if !reasons.is_empty() {
                let _ = writeln!(out, "   {}", reasons.join("; "));
            }
        }
        out.push_str(
            "Ranked by fit to the patient only: payer, level of care, area, preference, acceptance.\n",
        );
        out
    }

    fn none(none_reason: String, task_none_reason: String) -> RouteAnswer {
        RouteAnswer {
            options: Vec::new(),
            none_reason: Some(none_reason),
            task_none_reason: Some(task_none_reason),
        }
    }
}

/// A lead that did not convert and was not referred out, with the partners that fit it. A CRM
/// task built from it uses [`Fit::task_reasons`] and [`RouteAnswer::task_none_reason`]: the
/// answer's `none_reason` and [`Fit::reasons`] name the patient's payer, level and ZIP3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeadSuggestion {
    pub system: CrmSystem,
    pub lead_crm_id: String,
    pub owner_id: Option<String>,
    pub inquiry_date: NaiveDate,
    /// The disposition reason code (`out_of_network`, `capacity`, …).
    pub reason: String,
    pub answer: RouteAnswer,
}

/// Up to three partners that fit `request`, ranked by fit to the patient only.
pub fn route(
    connection: &Connection,
    config: &RoutingConfig,
    request: &RouteRequest,
) -> Result<RouteAnswer, RoutingError> {
    let criteria = Criteria::checked(request)?;
    let candidates = load_candidates(connection, config)?;
    Ok(rank(&candidates, &criteria))
}

/// Checks a request without reading the ledger: a known level of care, a ZIP3 of three digits,
/// and at least one criterion. [`route`] checks the same first.
pub fn check_request(request: &RouteRequest) -> Result<(), RoutingError> {
    Criteria::checked(request).map(|_| ())
}

/// Leads that did not convert and were not referred out, each with its options: inbound CRM
/// referrals (not deleted) with disposition `not_admitted` for one of `config.reasons`, dated
/// within `config.lookback_days` before `as_of` (inclusive) and not after it, with no outbound
/// referral whose parent is the lead's inquiry. Ordered by inquiry date, system and CRM id. Empty
/// when routing is disabled.
pub fn lead_suggestions(
    connection: &Connection,
    config: &RoutingConfig,
    as_of: NaiveDate,
) -> Result<Vec<LeadSuggestion>, RoutingError> {
    if !config.enabled {
        return Ok(Vec::new());
    }
    let start = as_of
        .checked_sub_days(Days::new(config.lookback_days.into()))
        .unwrap_or(NaiveDate::MIN);
    let leads = referable_leads(connection, config, start, as_of)?;
    if leads.is_empty() {
        return Ok(Vec::new());
    }
    let candidates = load_candidates(connection, config)?;
    Ok(leads
        .into_iter()
        .map(|lead| {
            let answer = if lead.criteria.is_empty() {
                RouteAnswer::none(
                    "the lead names no payer, level of care or ZIP3 to match partners on"
                        .to_string(),
                    "the lead names no payer, level of care or area to match partners on"
                        .to_string(),
                )
            } else {
                rank(&candidates, &lead.criteria)
            };
            LeadSuggestion {
                system: lead.system,
                lead_crm_id: lead.crm_id,
                owner_id: lead.owner_id,
                inquiry_date: lead.inquiry_date,
                reason: lead.reason,
                answer,
            }
        })
        .collect())
}

/// A request, parsed: payer folded for comparison, level as a code.
#[derive(Debug, Clone, Default)]
struct Criteria {
    /// (folded, as given)
    payer: Option<(String, String)>,
    level: Option<String>,
    zip3: Option<String>,
    /// A lead's own referring partner: it sent the patient because it could not help, so it is
    /// not offered back.
    exclude: Option<i64>,
}

impl Criteria {
    fn from_request(request: &RouteRequest) -> Result<Criteria, RoutingError> {
        let present = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|text| !text.is_empty())
                .map(str::to_string)
        };
        let level = match present(&request.level_of_care) {
            Some(text) => Some(parse_level(&text).ok_or(RoutingError::UnknownLevelOfCare)?),
            None => None,
        };
        let zip3 = match present(&request.zip3) {
            Some(text) if is_zip3(&text) => Some(text),
            Some(_) => return Err(RoutingError::InvalidZip3),
            None => None,
        };
        Ok(Criteria {
            payer: present(&request.payer).and_then(payer_criterion),
            level,
            zip3,
            exclude: None,
        })
    }

    /// A request's criteria, of which there must be at least one.
    fn checked(request: &RouteRequest) -> Result<Criteria, RoutingError> {
        let criteria = Criteria::from_request(request)?;
        if criteria.is_empty() {
            return Err(RoutingError::NoCriteria);
        }
        Ok(criteria)
    }

    fn is_empty(&self) -> bool {
        self.payer.is_none() && self.level.is_none() && self.zip3.is_none()
    }
}

/// A payer name as (folded for comparison, trimmed for display); `None` when nothing is left.
fn payer_criterion(payer: String) -> Option<(String, String)> {
    let folded = fold_payer(&payer);
    (!folded.is_empty()).then(|| (folded, payer.trim().to_string()))
}

/// A partner that may be suggested, with its profile and overrides applied.
#[derive(Debug, Clone)]
struct Candidate {
    partner_id: i64,
    name: String,
    /// The name in lower case, for ranking.
    sort_name: String,
    home_system: Option<String>,
    home_crm_id: Option<String>,
    zip3: Option<String>,
    /// (interned folded payer, as listed)
    payers: Vec<(u32, String)>,
    /// Interned level-of-care codes.
    levels: Vec<u32>,
    accepting: Option<bool>,
    preferred: bool,
}

/// The candidates of one call, with payers and level codes interned as small integers: ranking
/// runs once per lead over every candidate and compares integers only.
#[derive(Debug, Default)]
struct Candidates {
    list: Vec<Candidate>,
    payer_ids: HashMap<String, u32>,
    level_ids: HashMap<String, u32>,
}

fn intern(ids: &mut HashMap<String, u32>, term: String) -> u32 {
    let next = ids.len() as u32;
    *ids.entry(term).or_insert(next)
}

/// The live partners with a profile, then the overrides applied (in config order, later entries
/// winning field by field). An override for a record the ledger does not hold is logged and
/// skipped. Ordered by partner id.
fn load_candidates(
    connection: &Connection,
    config: &RoutingConfig,
) -> Result<Candidates, RoutingError> {
    let mut payer_ids = HashMap::new();
    let mut level_ids = HashMap::new();
    let mut candidates: BTreeMap<i64, Candidate> = BTreeMap::new();
    let mut statement = connection.prepare(
        "SELECT p.id, p.name, pp.home_system, pp.home_crm_id, pp.zip3, pp.payers,
                pp.levels_of_care, pp.accepting_referrals, pp.preferred
         FROM partner p JOIN partner_profile pp ON pp.partner_id = p.id
         WHERE p.merged_into IS NULL",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let partner_id: i64 = row.get(0)?;
        let payers_json: String = row.get(5)?;
        let levels_json: String = row.get(6)?;
        let payers = json_list(&payers_json, partner_id, "payers")
            .into_iter()
            .filter_map(payer_criterion)
            .map(|(folded, listed)| (intern(&mut payer_ids, folded), listed))
            .collect();
        let levels = json_list(&levels_json, partner_id, "levels_of_care")
            .iter()
            .filter_map(|text| {
                let code = parse_level(text);
                if code.is_none() {
                    tracing::warn!(
                        partner_id,
                        "a level of care in the partner's profile is not an ASAM level; it is ignored"
                    );
                }
                code.map(|code| intern(&mut level_ids, code))
            })
            .collect();
        let zip3: Option<String> = row.get(4)?;
        let name: String = row.get(1)?;
        candidates.insert(
            partner_id,
            Candidate {
                partner_id,
                sort_name: name.to_lowercase(),
                name,
                home_system: row.get(2)?,
                home_crm_id: row.get(3)?,
                zip3: zip3.filter(|zip3| is_zip3(zip3)),
                payers,
                levels,
                accepting: row.get::<_, Option<bool>>(7)?,
                preferred: row.get::<_, Option<bool>>(8)?.unwrap_or(false),
            },
        );
    }
    for (index, entry) in config.partner.iter().enumerate() {
        // Validated when the config was loaded; an entry built in code that does not parse is
        // as unknown to the ledger as a missing record.
        let record = RecordRef::parse(&entry.record).ok();
        let partner_id = match &record {
            Some(record) => resolve_record(connection, record)?,
            None => None,
        };
        let Some(partner_id) = partner_id else {
            tracing::warn!(
                entry = index,
                record = %entry.record,
                "routing.partner names a record the ledger does not hold; the entry is ignored until it does"
            );
            continue;
        };
        let candidate = match candidates.entry(partner_id) {
            Entry::Occupied(occupied) => occupied.into_mut(),
            Entry::Vacant(vacant) => {
                let name: String = connection.query_row(
                    "SELECT name FROM partner WHERE id = ?1",
                    [partner_id],
                    |row| row.get(0),
                )?;
                // No profile: the configured CRM record is where its tasks would go.
                let home = record
                    .filter(|record| record.system != "ehr")
                    .map(|record| (record.system, record.external_key));
                vacant.insert(Candidate {
                    partner_id,
                    sort_name: name.to_lowercase(),
                    name,
                    home_system: home.as_ref().map(|(system, _)| system.clone()),
                    home_crm_id: home.map(|(_, id)| id),
                    zip3: None,
                    payers: Vec::new(),
                    levels: Vec::new(),
                    accepting: None,
                    preferred: false,
                })
            }
        };
        if let Some(preferred) = entry.preferred {
            candidate.preferred = preferred;
        }
        if let Some(accepting) = entry.accepting_referrals {
            candidate.accepting = Some(accepting);
        }
        if let Some(payers) = &entry.payers {
            candidate.payers = payers
                .iter()
                .cloned()
                .filter_map(payer_criterion)
                .map(|(folded, listed)| (intern(&mut payer_ids, folded), listed))
                .collect();
        }
        if let Some(levels) = &entry.levels_of_care {
            candidate.levels = levels
                .iter()
                .filter_map(|level| parse_level(level))
                .map(|code| intern(&mut level_ids, code))
                .collect();
        }
        if let Some(zip3) = entry.zip3.as_ref().filter(|zip3| is_zip3(zip3)) {
            candidate.zip3 = Some(zip3.clone());
        }
    }
    Ok(Candidates {
        list: candidates.into_values().collect(),
        payer_ids,
        level_ids,
    })
}

/// The live partner a source record belongs to: its partner, followed through merges. EHR
/// records are named as the export writes them; a spelling that differs only by normalization
/// (case, punctuation, "Hosp") finds the same record.
fn resolve_record(
    connection: &Connection,
    record: &RecordRef,
) -> Result<Option<i64>, RoutingError> {
    let mut partner_id: Option<i64> = connection
        .query_row(
            "SELECT partner_id FROM partner_source_record WHERE system = ?1 AND external_key = ?2",
            params![record.system, record.external_key],
            |row| row.get(0),
        )
        .optional()?;
    if partner_id.is_none() && record.system == "ehr" {
        partner_id = connection
            .query_row(
                "SELECT partner_id FROM partner_source_record
                 WHERE system = 'ehr' AND normalized_name = ?1 ORDER BY id LIMIT 1",
                [crate::partners::normalize_name(&record.external_key)],
                |row| row.get(0),
            )
            .optional()?;
    }
    let Some(mut partner_id) = partner_id else {
        return Ok(None);
    };
    // Merges form chains, never cycles; the bound only guards against a corrupted ledger.
    for _ in 0..64 {
        let merged_into: Option<i64> = connection.query_row(
            "SELECT merged_into FROM partner WHERE id = ?1",
            [partner_id],
            |row| row.get(0),
        )?;
        match merged_into {
            Some(next) => partner_id = next,
            None => return Ok(Some(partner_id)),
        }
    }
    tracing::warn!(
        partner_id,
        "partner merges form a cycle; the routing override is ignored"
    );
    Ok(None)
}

/// A JSON array of strings from a profile column; anything else is logged and read as empty.
fn json_list(text: &str, partner_id: i64, column: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(text) {
        Ok(list) => list,
        Err(_) => {
            tracing::warn!(
                partner_id,
                column,
                "a partner profile list is not a JSON array of strings; read as empty"
            );
            Vec::new()
        }
    }
}

/// The hard requirements a request can impose, as bits of a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requirement {
    Accepting = 1,
    Level = 2,
    Payer = 4,
}

/// What a fitting candidate is ranked by, best first.
type RankKey<'a> = (u8, bool, bool, &'a str, i64);

/// Ranks the candidates that meet every hard requirement and keeps the best [`MAX_OPTIONS`]; when
/// none meets them all, says which requirements eliminated them. No allocation per candidate:
/// this runs once per lead over every candidate.
fn rank(candidates: &Candidates, criteria: &Criteria) -> RouteAnswer {
    // Requested and listed by some candidate: its id; requested and listed by none: `Some(None)`.
    let wanted_level = criteria
        .level
        .as_ref()
        .map(|code| candidates.level_ids.get(code).copied());
    let wanted_payer = criteria
        .payer
        .as_ref()
        .map(|(folded, _)| candidates.payer_ids.get(folded).copied());
    // Bit `m` set: some candidate meets exactly the requirement mask `m`.
    let mut masks_met: u8 = 0;
    let mut best: Vec<(RankKey<'_>, &Candidate, Option<&str>, Geography)> =
        Vec::with_capacity(MAX_OPTIONS + 1);
    for candidate in &candidates.list {
        if criteria.exclude == Some(candidate.partner_id) {
            continue;
        }
        let accepting = candidate.accepting != Some(false);
        let level = wanted_level.map(|id| id.is_some_and(|id| candidate.levels.contains(&id)));
        let payer = wanted_payer.map(|id| {
            id.and_then(|id| {
                candidate
                    .payers
                    .iter()
                    .find(|(listed, _)| *listed == id)
                    .map(|(_, as_listed)| as_listed.as_str())
            })
        });
        let mut mask = 0;
        if accepting {
            mask |= Requirement::Accepting as u8;
        }
        if level == Some(true) {
            mask |= Requirement::Level as u8;
        }
        if matches!(payer, Some(Some(_))) {
            mask |= Requirement::Payer as u8;
        }
        masks_met |= 1 << mask;
        if !accepting || level == Some(false) || matches!(payer, Some(None)) {
            continue;
        }
        let geography = geography(criteria.zip3.as_deref(), candidate.zip3.as_deref());
        let key = (
            geography.tier(),
            !candidate.preferred,
            candidate.accepting != Some(true),
            candidate.sort_name.as_str(),
            candidate.partner_id,
        );
        let at = best.partition_point(|(other, ..)| *other < key);
        if at < MAX_OPTIONS {
            best.insert(at, (key, candidate, payer.flatten(), geography));
            best.truncate(MAX_OPTIONS);
        }
    }
    if best.is_empty() {
        return none_answer(candidates.list.is_empty(), masks_met, criteria);
    }
    let options = best
        .into_iter()
        .map(|(_, candidate, payer, geography)| RouteOption {
            partner_id: candidate.partner_id,
            name: candidate.name.clone(),
            home_system: candidate.home_system.clone(),
            home_crm_id: candidate.home_crm_id.clone(),
            fit: Fit {
                payer_in_network: payer.map(str::to_string),
                level_offered: criteria.level.clone(),
                geography,
                zip3: candidate.zip3.clone(),
                preferred: candidate.preferred,
                accepting: match candidate.accepting {
                    Some(true) => Accepting::Yes,
                    _ => Accepting::Unknown,
                },
            },
        })
        .collect();
    RouteAnswer {
        options,
        none_reason: None,
        task_none_reason: None,
    }
}

fn geography(patient: Option<&str>, partner: Option<&str>) -> Geography {
    match (patient, partner) {
        (Some(patient), Some(partner)) if patient != "000" && partner != "000" => {
            if patient == partner {
                Geography::SameZip3
            } else if patient[..2] == partner[..2] {
                Geography::SameRegion
            } else {
                Geography::Elsewhere
            }
        }
        _ => Geography::Unknown,
    }
}

/// The smallest set of imposed requirements that no candidate meets together (single
/// requirements first; within a size, level before payer before acceptance), as a sentence with
/// and without patient values. `masks_met` has bit `m` set when some candidate meets exactly the
/// requirements of mask `m`.
fn none_answer(no_candidates: bool, masks_met: u8, criteria: &Criteria) -> RouteAnswer {
    if no_candidates {
        let sentence =
            "no partner is described yet: sync a CRM, or describe partners in [[routing.partner]]";
        return RouteAnswer::none(sentence.to_string(), sentence.to_string());
    }
    let mut imposed = Requirement::Accepting as u8;
    if criteria.level.is_some() {
        imposed |= Requirement::Level as u8;
    }
    if criteria.payer.is_some() {
        imposed |= Requirement::Payer as u8;
    }
    let met_together =
        |subset: u8| (0..8u8).any(|mask| masks_met & (1 << mask) != 0 && mask & subset == subset);
    // Level = 2, Payer = 4, Accepting = 1: this order is by size, then level, payer, acceptance.
    const SUBSETS: [u8; 7] = [2, 4, 1, 6, 3, 5, 7];
    let eliminating = SUBSETS
        .into_iter()
        .filter(|subset| subset & imposed == *subset)
        .find(|subset| !met_together(*subset))
        .unwrap_or(imposed);
    let level = criteria.level.as_deref().unwrap_or_default();
    let payer = criteria
        .payer
        .as_ref()
        .map_or("", |(_, given)| given.as_str());
    RouteAnswer::none(
        sentence(
            eliminating,
            &format!("offers ASAM {level}"),
            &format!("in network with {payer}"),
        ),
        sentence(
            eliminating,
            "offers the requested level of care",
            "in network for the lead's payer",
        ),
    )
}

/// "no accepting partner offers ASAM 3.7 in network with Aetna", from the requirements named.
fn sentence(requirements: u8, offers_level: &str, in_network: &str) -> String {
    let named = |requirement: Requirement| requirements & requirement as u8 != 0;
    let (accepting, level, payer) = (
        named(Requirement::Accepting),
        named(Requirement::Level),
        named(Requirement::Payer),
    );
    let subject = if accepting && (level || payer) {
        "no accepting partner"
    } else {
        "no partner"
    };
    match (level, payer) {
        (true, true) => format!("{subject} {offers_level} {in_network}"),
        (true, false) => format!("{subject} {offers_level}"),
        (false, true) => format!("{subject} is {in_network}"),
        (false, false) => format!("{subject} is accepting referrals"),
    }
}

/// A lead and the criteria its deal (or linked EHR referral) gives.
struct Lead {
    system: CrmSystem,
    crm_id: String,
    owner_id: Option<String>,
    inquiry_date: NaiveDate,
    reason: String,
    criteria: Criteria,
}

/// The leads `lead_suggestions` answers for, in order.
fn referable_leads(
    connection: &Connection,
    config: &RoutingConfig,
    start: NaiveDate,
    as_of: NaiveDate,
) -> Result<Vec<Lead>, RoutingError> {
    // The referred-out inquiries are read once (NOT IN over an uncorrelated subquery), not per
    // lead; an inquiry id of NULL cannot have been referred out by id.
    let mut statement = connection.prepare(
        "SELECT c.system, c.crm_id, c.owner_id, c.inquiry_date, c.disposition_reason,
                c.payer, c.level_of_care, r.payer, r.level_of_care_scheme, r.level_of_care_code,
                r.zip3, c.inquiry_id, c.partner_id
         FROM crm_referral c
         LEFT JOIN referral r ON r.id = c.referral_id
         WHERE c.direction = 'in' AND c.deleted = 0 AND c.disposition = 'not_admitted'
           AND c.inquiry_date >= ?1 AND c.inquiry_date <= ?2
           AND (c.inquiry_id IS NULL OR c.inquiry_id NOT IN (
                SELECT parent_inquiry_id FROM unified_referral
                WHERE direction = 'out' AND parent_inquiry_id IS NOT NULL))
         ORDER BY c.inquiry_date, c.system, c.crm_id",
    )?;
    let mut rows = statement.query(params![start.to_string(), as_of.to_string()])?;
    let mut leads = Vec::new();
    // Both CRMs may hold the same inquiry: one lead (and one task) per inquiry, the first in the
    // order above (by system name: HubSpot's copy before Salesforce's).
    let mut inquiries = std::collections::HashSet::new();
    while let Some(row) = rows.next()? {
        let crm_id: String = row.get(1)?;
        if let Some(inquiry) = row.get::<_, Option<String>>(11)?
            && !inquiries.insert(inquiry)
        {
            continue;
        }
        let reason = row
            .get::<_, Option<String>>(4)?
            .and_then(|text| DispositionReason::parse(&text))
            .map(DispositionReason::as_str)
            .filter(|code| config.reasons.iter().any(|wanted| wanted == code));
        let Some(reason) = reason else {
            continue;
        };
        let system: String = row.get(0)?;
        let system = match CrmSystem::parse(&system) {
            Some(system) => system,
            None => {
                tracing::warn!(lead = %crm_id, "a CRM referral names an unknown system; skipped");
                continue;
            }
        };
        let Ok(inquiry_date) = row.get::<_, String>(3)?.parse::<NaiveDate>() else {
            tracing::warn!(lead = %crm_id, "a CRM referral's inquiry date is not YYYY-MM-DD; skipped");
            continue;
        };
        let deal_payer: Option<String> = row.get(5)?;
        let deal_level: Option<String> = row.get(6)?;
        let ehr_payer: Option<String> = row.get(7)?;
        let ehr_scheme: Option<String> = row.get(8)?;
        let ehr_level: Option<String> = row.get(9)?;
        let ehr_zip3: Option<String> = row.get(10)?;
        let payer = deal_payer
            .and_then(payer_criterion)
            .or_else(|| ehr_payer.and_then(payer_criterion));
        let ehr_code = ehr_level.and_then(|code| match ehr_scheme.as_deref() {
            Some(scheme) => LevelOfCare::parse(&code, scheme).map(|level| level.code),
            None => parse_level(&code),
        });
        let level = deal_level.as_deref().and_then(parse_level).or(ehr_code);
        leads.push(Lead {
            system,
            crm_id,
            owner_id: row.get(2)?,
            inquiry_date,
            reason: reason.to_string(),
            criteria: Criteria {
                payer,
                level,
                zip3: ehr_zip3.filter(|zip3| is_zip3(zip3)),
                exclude: row.get(12)?,
            },
        });
    }
    Ok(leads)
}

/// A level-of-care text as its code: an ASAM 3rd-edition level, else a 4th-edition one.
fn parse_level(text: &str) -> Option<String> {
    LevelOfCare::SCHEMES
        .iter()
        .find_map(|scheme| LevelOfCare::parse(text, scheme))
        .map(|level| level.code)
}

/// Payer names compared without case, spacing or punctuation.
fn fold_payer(payer: &str) -> String {
    payer
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Exactly three ASCII digits.
pub fn is_zip3(text: &str) -> bool {
    text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests;
