//! Pulling streams: full loads through the list endpoints, incremental pulls through search,
//! mapped into the normalized CRM records and handed to the caller one page (with its cursor) at
//! a time; plus the reconciliation ids and the archived records.
//!
//! **Full load** (`after == None`): each object type of the stream is listed (`limit`, `after`
//! paging, only the mapped properties, company associations inline). A list runs in id order, not
//! in modification order, so its pages cannot carry a (modified, id) cursor. Instead every list
//! page carries a *resume cursor*: `modified_at` = the end of the window the load started with
//! (`T0`), `id` = `list:<source>:<after>`. A crash mid-load resumes the list where the last stored
//! page ended; the last page's cursor is `(T0, "")`, from which search takes over. Records changed
//! during the load have a modification time after `T0`, so the next incremental pull reads them
//! (an overlap, which the ledger's upsert makes harmless).
//!
//! **Incremental** (`after == Some((t, id))`): one search per page on the last-modified property,
//! two filter groups `modified > t AND modified <= until` OR `modified = t AND hs_object_id > id`,
//! sorted by modified ascending. Every page is a new query from the cursor (keyset paging,
//! `after` is never sent), so a window is in effect split at each page and the 10,000-result cap
//! of `after` paging is never reached, however large the window. Search allows one sort, and the
//! order of records sharing a modification time is not documented: so only the records strictly
//! before the last time of a full page are taken; the rest are read again by the next query. When
//! a whole page shares one time (a bulk import can give more than 10,000 records one
//! millisecond), the pull splits that time by `hs_object_id` ranges: `modified = t AND
//! hs_object_id > id`, sorted by `hs_object_id`, until the range is exhausted. No record is ever
//! skipped; the cursor is always the last (modified, id) handed over.
//!
//! Streams of several object types (activities: calls, meetings, emails, notes and completed
//! tasks without the key) are merged by (modified, id) so a page's cursor never skips a record of
//! another type. Deals and engagements get their company through one v4 association batch read per
//! page. Owners have no search: all owners are listed every pull and those past the cursor handed
//! over. Archived records never appear in search: [`HubspotClient::pull_archived`] lists them with
//! `archived=true` as deleted records; a survivor's `hs_merged_object_ids` (when the portal
//! exposes it) yields the merged-away ids as deleted records with `merged_into`.
//!
//! This module never stores anything and never logs record values.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, NaiveDate, Utc};
use refbridge_model::crm::{
    CrmActivity, CrmContact, CrmOwner, CrmPartner, CrmRecord, CrmRecordBody, CrmReferral, CrmTask,
    Cursor, PullSummary, PulledPage, StreamKind,
};
use refbridge_model::{Direction, Disposition, DispositionReason, Npi};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::config::HubspotConfig;
use crate::error::HubspotError;
use crate::http::{ApiRequest, HubspotClient};

const LIST_CURSOR_PREFIX: &str = "list:";
const MERGED_PROPERTY: &str = "hs_merged_object_ids";

/// Why a pull stopped. Pages handed over before the error stay valid.
#[derive(Debug, thiserror::Error)]
pub enum PullError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Hubspot(#[from] HubspotError),
    /// The caller's `on_page` failed; the pull stopped there.
    #[error("storing a pulled page failed")]
    Sink(#[source] E),
}

/// What an engagement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touch {
    Call,
    Meeting,
    Email,
    Note,
    /// A completed task without the key (not refbridge's own).
    Task,
}

/// What a row turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Partner,
    Contact,
    Referral,
    Activity(Touch),
    OwnTask,
}

/// One object type's part of a stream.
#[derive(Debug, Clone)]
struct Source {
    object_type: String,
    kind: RowKind,
    modified_property: &'static str,
    properties: Vec<String>,
    companies: bool,
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

fn modified_property(object_type: &str) -> &'static str {
    if object_type == "contacts" || object_type == "0-1" {
        "lastmodifieddate"
    } else {
        "hs_lastmodifieddate"
    }
}

fn touch_of(object_type: &str) -> Touch {
    match object_type {
        "calls" | "0-48" => Touch::Call,
        "meetings" | "0-47" => Touch::Meeting,
        "emails" | "0-49" => Touch::Email,
        _ => Touch::Note,
    }
}

/// The object types and properties of `stream` (owners have none: they are not objects).
fn sources(config: &HubspotConfig, stream: StreamKind) -> Vec<Source> {
    let mapping = &config.mapping;
    let source = |object_type: &str, kind: RowKind, mut properties: Vec<String>, companies| {
        let modified = modified_property(object_type);
        properties.push(modified.to_string());
        properties.push("hubspot_owner_id".to_string());
        Source {
            object_type: object_type.to_string(),
            kind,
            modified_property: modified,
            properties,
            companies,
        }
    };
    match stream {
        StreamKind::Partners => {
            let mut properties = owned(&[
                "name",
                "domain",
                "website",
                "phone",
                "address",
                "city",
                "state",
                "zip",
                MERGED_PROPERTY,
            ]);
            properties.extend(mapping.partner.all().iter().map(|(_, p)| p.to_string()));
            vec![source(
                &mapping.objects.partners,
                RowKind::Partner,
                properties,
                false,
            )]
        }
        StreamKind::Contacts => vec![source(
            &mapping.objects.contacts,
            RowKind::Contact,
            owned(&[
                "firstname",
                "lastname",
                "jobtitle",
                "email",
                "phone",
                "associatedcompanyid",
                MERGED_PROPERTY,
            ]),
            false,
        )],
        StreamKind::Referrals => {
            let mut properties = owned(&["dealstage", "pipeline", "createdate", MERGED_PROPERTY]);
            properties.extend(mapping.referral.all().iter().map(|(_, p)| p.to_string()));
            vec![source(
                &mapping.objects.referrals,
                RowKind::Referral,
                properties,
                true,
            )]
        }
        StreamKind::Activities => {
            let mut all: Vec<Source> = mapping
                .objects
                .activities
                .iter()
                .map(|object_type| {
                    let touch = touch_of(object_type);
                    let mut properties = owned(&["hs_timestamp"]);
                    if touch == Touch::Meeting {
                        properties.push("hs_activity_type".to_string());
                    }
                    source(object_type, RowKind::Activity(touch), properties, true)
                })
                .collect();
            all.push(source(
                &mapping.objects.tasks,
                RowKind::Activity(Touch::Task),
                vec![
                    "hs_timestamp".to_string(),
                    "hs_task_status".to_string(),
                    "hs_task_type".to_string(),
                    "hs_task_completion_date".to_string(),
                    mapping.task.key.clone(),
                ],
                true,
            ));
            all
        }
        StreamKind::Owners => Vec::new(),
        StreamKind::Tasks => vec![source(
            &mapping.objects.tasks,
            RowKind::OwnTask,
            vec!["hs_task_status".to_string(), mapping.task.key.clone()],
            false,
        )],
    }
}

/// Every (object type, properties the pull reads), for the healthcheck (optional properties such
/// as `hs_merged_object_ids` and the task key, which has its own check, left out).
pub(crate) fn required_properties(config: &HubspotConfig) -> Vec<(String, Vec<String>)> {
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    for stream in StreamKind::ALL {
        for source in sources(config, stream) {
            let properties: Vec<String> = source
                .properties
                .into_iter()
                .filter(|p| p != MERGED_PROPERTY && *p != config.mapping.task.key)
                .collect();
            match wanted.iter_mut().find(|(t, _)| *t == source.object_type) {
                Some((_, known)) => {
                    for property in properties {
                        if !known.contains(&property) {
                            known.push(property);
                        }
                    }
                }
                None => {
                    let mut unique: Vec<String> = Vec::new();
                    for property in properties {
                        if !unique.contains(&property) {
                            unique.push(property);
                        }
                    }
                    wanted.push((source.object_type, unique));
                }
            }
        }
    }
    wanted
}

/// One object of a list or search answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiObject {
    id: String,
    #[serde(default)]
    properties: Map<String, Json>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    archived_at: Option<String>,
    #[serde(default)]
    associations: Option<Map<String, Json>>,
}

#[derive(Debug, Deserialize)]
struct ObjectPage {
    #[serde(default)]
    results: Vec<ApiObject>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    #[serde(default)]
    next: Option<NextPage>,
}

#[derive(Debug, Deserialize)]
struct NextPage {
    after: String,
}

impl ObjectPage {
    fn next_after(&self) -> Option<String> {
        self.paging
            .as_ref()
            .and_then(|paging| paging.next.as_ref())
            .map(|next| next.after.clone())
            .filter(|after| !after.is_empty())
    }
}

/// HubSpot's times: ISO 8601 (`2026-05-20T20:49:32.123Z`) or epoch milliseconds.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return DateTime::from_timestamp_millis(ms);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

struct Row<'a>(&'a ApiObject);

impl Row<'_> {
    fn text(&self, name: &str) -> Option<String> {
        match self.0.properties.get(name)? {
            Json::String(text) if !text.trim().is_empty() => Some(text.clone()),
            Json::Number(number) => Some(number.to_string()),
            Json::Bool(flag) => Some(flag.to_string()),
            _ => None,
        }
    }

    fn flag(&self, name: &str) -> Option<bool> {
        match self.text(name)?.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" => Some(true),
            "false" | "no" => Some(false),
            _ => None,
        }
    }

    fn time(&self, name: &str) -> Option<DateTime<Utc>> {
        parse_time(&self.text(name)?)
    }

    fn date(&self, name: &str) -> Option<NaiveDate> {
        let text = self.text(name)?;
        NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d")
            .ok()
            .or_else(|| parse_time(&text).map(|at| at.date_naive()))
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.text(name)
            .map(|text| {
                text.split(';')
                    .map(str::trim)
                    .filter(|value| !value.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The company of a v3 `associations` member: a labeled (primary) one first, then the lowest id.
    fn inline_company(&self) -> Option<String> {
        let results = self
            .0
            .associations
            .as_ref()?
            .get("companies")?
            .get("results")?
            .as_array()?;
        let mut found: Vec<(bool, u64, String)> = results
            .iter()
            .filter_map(|entry| {
                let id = entry.get("id").and_then(id_text)?;
                let kind = entry.get("type").and_then(Json::as_str).unwrap_or("");
                Some((
                    kind.ends_with("_unlabeled"),
                    id.parse().unwrap_or(u64::MAX),
                    id,
                ))
            })
            .collect();
        found.sort();
        found.into_iter().next().map(|(_, _, id)| id)
    }
}

fn id_text(value: &Json) -> Option<String> {
    match value {
        Json::String(text) => Some(text.clone()),
        Json::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A mapped record with the ids merged into it (`hs_merged_object_ids`) and its numeric id.
#[derive(Debug, Clone)]
struct Pulled {
    record: CrmRecord,
    number: u64,
    merged: Vec<String>,
}

impl Pulled {
    fn key(&self) -> (DateTime<Utc>, u64) {
        (self.record.modified_at, self.number)
    }

    /// The record, then one deleted record per id merged into it.
    fn expand(self, out: &mut Vec<CrmRecord>) {
        let survivor = self.record.id.clone();
        for merged in self.merged {
            if merged == survivor {
                continue;
            }
            let mut body = self.record.body.clone();
            set_body_id(&mut body, &merged);
            out.push(CrmRecord {
                id: merged,
                modified_at: self.record.modified_at,
                deleted: true,
                merged_into: Some(survivor.clone()),
                body,
            });
        }
        out.push(self.record);
    }
}

fn set_body_id(body: &mut CrmRecordBody, id: &str) {
    let slot = match body {
        CrmRecordBody::Partner(b) => &mut b.id,
        CrmRecordBody::Contact(b) => &mut b.id,
        CrmRecordBody::Referral(b) => &mut b.id,
        CrmRecordBody::Activity(b) => &mut b.id,
        CrmRecordBody::Owner(b) => &mut b.id,
        CrmRecordBody::Task(b) => &mut b.id,
    };
    *slot = id.to_string();
}

/// Whether a listed row belongs to the stream (the filters search applies on the server).
fn belongs(config: &HubspotConfig, kind: RowKind, row: &Row<'_>) -> bool {
    let key = &config.mapping.task.key;
    match kind {
        RowKind::Referral => {
            row.text("pipeline").as_deref() == Some(config.admissions_pipeline.as_str())
        }
        RowKind::Activity(Touch::Task) => {
            row.text("hs_task_status").as_deref() == Some("COMPLETED") && row.text(key).is_none()
        }
        RowKind::OwnTask => row.text(key).is_some(),
        _ => true,
    }
}

fn stage_disposition(config: &HubspotConfig, stage: &str) -> Option<Disposition> {
    config
        .mapping
        .stages
        .get(stage)
        .copied()
        .or_else(|| Disposition::parse(stage))
}

/// Maps one object; `Err` names what is missing. `company` is the associated company, if read.
fn map_object(
    config: &HubspotConfig,
    source: &Source,
    object: &ApiObject,
    company: Option<String>,
    deleted: bool,
) -> Result<Pulled, String> {
    let row = Row(object);
    let number: u64 = object
        .id
        .trim()
        .parse()
        .map_err(|_| "a record whose id is not a number".to_string())?;
    let id = number.to_string();
    let modified_at = if deleted {
        object.archived_at.as_deref().and_then(parse_time)
    } else {
        None
    }
    .or_else(|| row.time(source.modified_property))
    .or_else(|| object.updated_at.as_deref().and_then(parse_time))
    .ok_or("a record without a readable modification time")?;
    let mapping = &config.mapping;
    let owner_id = row.text("hubspot_owner_id");
    let created = object.created_at.as_deref().and_then(parse_time);
    let body = match source.kind {
        RowKind::Partner => {
            let p = &mapping.partner;
            CrmRecordBody::Partner(CrmPartner {
                id: id.clone(),
                name: row.text("name").unwrap_or_default(),
                source_type: row.text(&p.source_type),
                npi: row.text(&p.npi).and_then(|npi| Npi::parse(&npi).ok()),
                website: row.text("website").or_else(|| row.text("domain")),
                phone: row.text("phone"),
                street: row.text("address"),
                city: row.text("city"),
                state: row.text("state"),
                zip: row.text("zip"),
                owner_id,
                payers_accepted: row.list(&p.payers_accepted),
                levels_of_care: row.list(&p.levels_of_care),
                accepting_referrals: row.flag(&p.accepting_referrals),
                preferred: row.flag(&p.preferred),
            })
        }
        RowKind::Contact => CrmRecordBody::Contact(CrmContact {
            id: id.clone(),
            partner_id: row.text("associatedcompanyid"),
            first_name: row.text("firstname"),
            last_name: row.text("lastname").unwrap_or_default(),
            title: row.text("jobtitle"),
            email: row.text("email"),
            phone: row.text("phone"),
            owner_id,
        }),
        RowKind::Referral => {
            let r = &mapping.referral;
            let stage = row.text("dealstage").unwrap_or_default();
            CrmRecordBody::Referral(CrmReferral {
                id: id.clone(),
                inquiry_id: row.text(&r.inquiry_id),
                direction: match row.text(&r.direction) {
                    Some(text) if text.to_ascii_lowercase().starts_with("out") => Direction::Out,
                    _ => Direction::In,
                },
                partner_id: company,
                parent_inquiry_id: row.text(&r.parent_inquiry_id),
                disposition: stage_disposition(config, &stage),
                stage,
                disposition_reason: row
                    .text(&r.disposition_reason)
                    .and_then(|reason| DispositionReason::parse(&reason)),
                payer: row.text(&r.payer),
                plan_type: row.text(&r.plan_type),
                level_of_care: row.text(&r.level_of_care),
                inquiry_date: row.time("createdate").or(created).map(|at| at.date_naive()),
                admit_date: row.date(&r.admit_date),
                owner_id,
            })
        }
        RowKind::Activity(touch) => {
            let kind = match touch {
                Touch::Call => "call",
                Touch::Email => "email",
                Touch::Note => "note",
                Touch::Meeting => match row.text("hs_activity_type") {
                    Some(kind) if kind.eq_ignore_ascii_case("visit") => "visit",
                    _ => "meeting",
                },
                Touch::Task => match row.text("hs_task_type").as_deref() {
                    Some("CALL") => "call",
                    Some("EMAIL") => "email",
                    _ => "task",
                },
            };
            let at = if touch == Touch::Task {
                row.time("hs_task_completion_date")
                    .or_else(|| row.time("hs_timestamp"))
            } else {
                row.time("hs_timestamp")
            }
            .or(created)
            .unwrap_or(modified_at);
            CrmRecordBody::Activity(CrmActivity {
                id: id.clone(),
                kind: kind.to_string(),
                owner_id,
                partner_id: company,
                contact_id: None,
                at,
            })
        }
        RowKind::OwnTask => {
            let status = row.text("hs_task_status").unwrap_or_default();
            CrmRecordBody::Task(CrmTask {
                id: id.clone(),
                key: row.text(&mapping.task.key).unwrap_or_default(),
                completed: status == "COMPLETED",
                status,
                owner_id,
            })
        }
    };
    let merged = row
        .list(MERGED_PROPERTY)
        .into_iter()
        .filter(|merged| *merged != id)
        .collect();
    Ok(Pulled {
        record: CrmRecord {
            id,
            modified_at,
            deleted,
            merged_into: None,
            body,
        },
        number,
        merged,
    })
}

/// Calls accounted to pages so far.
fn last_calls(summary: &PullSummary, calls_before: u64) -> u64 {
    calls_before + u64::from(summary.api_calls)
}

/// Where an incremental source stands.
#[derive(Debug)]
struct SearchState {
    source: Source,
    /// Everything up to this (modified, id) is in the buffer or handed over.
    lower: (DateTime<Utc>, u64),
    /// Reading the records of `lower.0` by `hs_object_id` ranges.
    split: bool,
    buffer: VecDeque<Pulled>,
    done: bool,
    extra_filters: Vec<Json>,
}

fn filter(property: &str, operator: &str, value: impl Into<Json>) -> Json {
    json!({"propertyName": property, "operator": operator, "value": value.into()})
}

fn ms(at: DateTime<Utc>) -> String {
    at.timestamp_millis().to_string()
}

/// Parses a list resume cursor: (source index, after).
fn list_position(cursor: &Cursor) -> Option<(usize, String)> {
    let rest = cursor.id.strip_prefix(LIST_CURSOR_PREFIX)?;
    let (index, after) = rest.split_once(':')?;
    Some((index.parse().ok()?, after.to_string()))
}

/// The (modified, id) key of a cursor; an id that is not a number (none yet) reads as 0.
fn cursor_key(cursor: &Cursor) -> (DateTime<Utc>, u64) {
    (
        to_millis(cursor.modified_at),
        cursor.id.parse().unwrap_or(0),
    )
}

/// HubSpot keeps times to the millisecond: a finer cursor would compare wrongly with them.
fn to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

fn owner_key(record: &CrmRecord) -> (DateTime<Utc>, u64) {
    (record.modified_at, record.id.parse().unwrap_or(0))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiOwner {
    id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OwnerPage {
    #[serde(default)]
    results: Vec<ApiOwner>,
    #[serde(default)]
    paging: Option<Paging>,
}

impl HubspotClient {
    pub(crate) fn objects_path(&self, object_type: &str) -> String {
        format!("/crm/v3/objects/{object_type}")
    }

    /// Whether the task key property exists (asked once per client, then remembered).
    pub(crate) async fn task_key_exists(&self) -> Result<bool, HubspotError> {
        if let Some(known) = self.cached_task_key() {
            return Ok(known);
        }
        let config = self.config();
        let request = ApiRequest::get(format!(
            "/crm/v3/properties/{}/{}",
            config.mapping.objects.tasks, config.mapping.task.key
        ));
        let exists = match self.send(&request).await {
            Ok(_) => true,
            Err(HubspotError::Rejected { status: 404, .. }) => false,
            Err(error) => return Err(error),
        };
        self.remember_task_key(exists);
        Ok(exists)
    }

    /// Pulls `stream` from after `after` up to `until` (normally [`window_end`]), calling
    /// `on_page` with each page and the cursor after it, in order. The caller stores a page's
    /// records and cursor together (one transaction); an error from `on_page` stops the pull.
    /// A pull with nothing new calls `on_page` once with an empty page (and cursor `None`), so the
    /// caller can record its API calls; likewise a pull whose last queries (those that found the
    /// end) came after its last records ends with such an empty page. Pulling stops with a quota error once the daily usage
    /// reached `daily_reserve_share` (before any further call). See the module documentation for
    /// full loads (list, resumable) and incremental pulls (search, split windows).
    ///
    /// [`window_end`]: HubspotClient::window_end
    pub async fn pull<E: std::error::Error + 'static>(
        &self,
        stream: StreamKind,
        after: Option<&Cursor>,
        until: DateTime<Utc>,
        on_page: &mut (dyn FnMut(PulledPage) -> Result<(), E> + Send),
    ) -> Result<PullSummary, PullError<E>> {
        let mut summary = PullSummary {
            stream,
            records: 0,
            deleted: 0,
            pages: 0,
            api_calls: 0,
            cursor_before: after.cloned(),
            cursor_after: after.cloned(),
        };
        let calls_before = self.api_calls();
        let mut last_page_calls = calls_before;
        let mut hand_over = |summary: &mut PullSummary,
                             client: &HubspotClient,
                             records: Vec<CrmRecord>,
                             cursor: Option<Cursor>|
         -> Result<(), PullError<E>> {
            let now_calls = client.api_calls();
            let api_calls = u32::try_from(now_calls - last_page_calls).unwrap_or(u32::MAX);
            last_page_calls = now_calls;
            summary.records += records.len() as u64;
            summary.deleted += records
                .iter()
                .filter(|r| r.deleted || r.merged_into.is_some())
                .count() as u64;
            summary.pages += 1;
            summary.api_calls = summary.api_calls.saturating_add(api_calls);
            if cursor.is_some() {
                summary.cursor_after = cursor.clone();
            }
            on_page(PulledPage {
                stream,
                records,
                cursor,
                api_calls,
            })
            .map_err(PullError::Sink)
        };
        if stream == StreamKind::Owners {
            let records = self.owners_after(after, until).await?;
            let cursor = records.last().map(|last| Cursor {
                modified_at: last.modified_at,
                id: last.id.clone(),
            });
            hand_over(&mut summary, self, records, cursor)?;
        } else {
            match after.map(|cursor| (cursor, list_position(cursor))) {
                None => {
                    self.full_load(
                        stream,
                        to_millis(until),
                        0,
                        String::new(),
                        &mut |records, cursor| hand_over(&mut summary, self, records, Some(cursor)),
                    )
                    .await?;
                }
                Some((cursor, Some((index, list_after)))) => {
                    let start = cursor.modified_at;
                    self.full_load(stream, start, index, list_after, &mut |records, cursor| {
                        hand_over(&mut summary, self, records, Some(cursor))
                    })
                    .await?;
                }
                Some((cursor, None)) => {
                    self.incremental(stream, cursor, until, &mut |records, cursor| {
                        hand_over(&mut summary, self, records, Some(cursor))
                    })
                    .await?;
                }
            }
            // Nothing new, or calls made after the last records (the queries that found the
            // end): an empty page without a cursor carries them, so every call is accounted.
            if summary.pages == 0 || self.api_calls() > last_calls(&summary, calls_before) {
                hand_over(&mut summary, self, Vec::new(), None)?;
            }
        }
        tracing::info!(
            stream = stream.as_str(),
            records = summary.records,
            deleted = summary.deleted,
            pages = summary.pages,
            api_calls = summary.api_calls,
            "hubspot stream pulled"
        );
        Ok(summary)
    }

    /// Every owner (active and deactivated) past `after` up to `until`, in (updated, id) order.
    async fn owners_after(
        &self,
        after: Option<&Cursor>,
        until: DateTime<Utc>,
    ) -> Result<Vec<CrmRecord>, HubspotError> {
        let lower = after.map(cursor_key);
        let mut records: Vec<CrmRecord> = self
            .all_owners()
            .await?
            .into_iter()
            .filter(|record| record.modified_at <= until)
            .filter(|record| lower.is_none_or(|lower| owner_key(record) > lower))
            .collect();
        records.sort_by_key(owner_key);
        Ok(records)
    }

    async fn all_owners(&self) -> Result<Vec<CrmRecord>, HubspotError> {
        let mut records = Vec::new();
        for archived in [false, true] {
            let mut after: Option<String> = None;
            loop {
                self.check_pull_reserve()?;
                let mut request = ApiRequest::get("/crm/v3/owners".to_string());
                request.query.push(("limit", "500".to_string()));
                request.query.push(("archived", archived.to_string()));
                if let Some(after) = &after {
                    request.query.push(("after", after.clone()));
                }
                let page: OwnerPage = self.json(request).await?;
                for owner in page.results {
                    let protocol = |detail: &str| HubspotError::Protocol {
                        request: "GET /crm/v3/owners".to_string(),
                        detail: detail.to_string(),
                    };
                    let modified_at = owner
                        .updated_at
                        .as_deref()
                        .or(owner.created_at.as_deref())
                        .and_then(parse_time)
                        .ok_or_else(|| protocol("an owner without updatedAt"))?;
                    let name = [owner.first_name.as_deref(), owner.last_name.as_deref()]
                        .into_iter()
                        .flatten()
                        .filter(|part| !part.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ");
                    records.push(CrmRecord {
                        id: owner.id.clone(),
                        modified_at,
                        deleted: false,
                        merged_into: None,
                        body: CrmRecordBody::Owner(CrmOwner {
                            id: owner.id,
                            name,
                            email: owner.email.filter(|email| !email.is_empty()),
                            active: !archived,
                        }),
                    });
                }
                match page.paging.and_then(|p| p.next).map(|next| next.after) {
                    Some(next) if !next.is_empty() => after = Some(next),
                    _ => break,
                }
            }
        }
        Ok(records)
    }

    /// One list page of a source, mapped (and filtered to the stream).
    async fn list_page(
        &self,
        source: &Source,
        after: &str,
        archived: bool,
    ) -> Result<(Vec<Pulled>, Option<String>), HubspotError> {
        let config = self.config();
        let mut request = ApiRequest::get(self.objects_path(&source.object_type));
        request
            .query
            .push(("limit", config.list_page_size.to_string()));
        request
            .query
            .push(("properties", source.properties.join(",")));
        if source.companies {
            request
                .query
                .push(("associations", "companies".to_string()));
        }
        request.query.push(("archived", archived.to_string()));
        if !after.is_empty() {
            request.query.push(("after", after.to_string()));
        }
        let what = request.describe();
        let page: ObjectPage = self.json(request).await?;
        let next = page.next_after();
        let mut pulled = Vec::with_capacity(page.results.len());
        for object in &page.results {
            let row = Row(object);
            if !belongs(config, source.kind, &row) {
                continue;
            }
            let company = if source.companies {
                row.inline_company()
            } else {
                None
            };
            pulled.push(
                map_object(config, source, object, company, archived).map_err(|detail| {
                    HubspotError::Protocol {
                        request: what.clone(),
                        detail,
                    }
                })?,
            );
        }
        Ok((pulled, next))
    }

    /// The full load through the list endpoints, from source `index` at list position `after`;
    /// each page's cursor is a resume cursor, the last one `(start, "")`.
    async fn full_load<E: std::error::Error + 'static>(
        &self,
        stream: StreamKind,
        start: DateTime<Utc>,
        index: usize,
        after: String,
        hand_over: &mut (dyn FnMut(Vec<CrmRecord>, Cursor) -> Result<(), PullError<E>> + Send),
    ) -> Result<(), PullError<E>> {
        let all = sources(self.config(), stream);
        let mut after = after;
        for (position, source) in all.iter().enumerate().skip(index) {
            loop {
                self.check_pull_reserve()?;
                let (pulled, next) = self.list_page(source, &after, false).await?;
                let mut records = Vec::with_capacity(pulled.len());
                for one in pulled {
                    one.expand(&mut records);
                }
                let id = match (&next, position + 1 < all.len()) {
                    (Some(next), _) => format!("{LIST_CURSOR_PREFIX}{position}:{next}"),
                    (None, true) => format!("{LIST_CURSOR_PREFIX}{}:", position + 1),
                    (None, false) => String::new(),
                };
                hand_over(
                    records,
                    Cursor {
                        modified_at: start,
                        id,
                    },
                )?;
                match next {
                    Some(next) => after = next,
                    None => break,
                }
            }
            after = String::new();
        }
        Ok(())
    }

    /// The search filters a source needs beyond the window.
    async fn stream_filters(&self, source: &Source) -> Result<Option<Vec<Json>>, HubspotError> {
        let config = self.config();
        let key = &config.mapping.task.key;
        Ok(Some(match source.kind {
            RowKind::Referral => vec![filter("pipeline", "EQ", config.admissions_pipeline.clone())],
            RowKind::Activity(Touch::Task) => {
                let mut filters = vec![filter("hs_task_status", "EQ", "COMPLETED")];
                if self.task_key_exists().await? {
                    filters.push(json!({"propertyName": key, "operator": "NOT_HAS_PROPERTY"}));
                }
                filters
            }
            RowKind::OwnTask => {
                if !self.task_key_exists().await? {
                    return Ok(None);
                }
                vec![json!({"propertyName": key, "operator": "HAS_PROPERTY"})]
            }
            _ => Vec::new(),
        }))
    }

    /// The incremental pull: search sources merged by (modified, id).
    async fn incremental<E: std::error::Error + 'static>(
        &self,
        stream: StreamKind,
        after: &Cursor,
        until: DateTime<Utc>,
        hand_over: &mut (dyn FnMut(Vec<CrmRecord>, Cursor) -> Result<(), PullError<E>> + Send),
    ) -> Result<(), PullError<E>> {
        let mut states = Vec::new();
        for source in sources(self.config(), stream) {
            let Some(extra_filters) = self.stream_filters(&source).await? else {
                continue;
            };
            states.push(SearchState {
                source,
                lower: cursor_key(after),
                split: false,
                buffer: VecDeque::new(),
                done: false,
                extra_filters,
            });
        }
        loop {
            for state in states.iter_mut() {
                while state.buffer.is_empty() && !state.done {
                    self.check_pull_reserve()?;
                    self.search_page(state, until).await?;
                }
            }
            // Records up to the smallest last-buffered key of a source with pages to come are
            // final: no later page of any source can sort before it.
            let bound = states
                .iter()
                .filter(|state| !state.done)
                .filter_map(|state| state.buffer.back().map(Pulled::key))
                .min();
            let mut taken: Vec<Pulled> = Vec::new();
            for state in states.iter_mut() {
                while let Some(front) = state.buffer.front() {
                    if bound.is_none_or(|bound| front.key() <= bound) {
                        taken.extend(state.buffer.pop_front());
                    } else {
                        break;
                    }
                }
            }
            let finished = states
                .iter()
                .all(|state| state.done && state.buffer.is_empty());
            if !taken.is_empty() {
                taken.sort_by_key(Pulled::key);
                let (modified_at, id) = taken.last().map(Pulled::key).unwrap_or_default();
                let mut records = Vec::with_capacity(taken.len());
                for one in taken {
                    one.expand(&mut records);
                }
                hand_over(
                    records,
                    Cursor {
                        modified_at,
                        id: id.to_string(),
                    },
                )?;
            }
            if finished {
                return Ok(());
            }
        }
    }

    /// One search page of a source into its buffer (see the module documentation).
    async fn search_page(
        &self,
        state: &mut SearchState,
        until: DateTime<Utc>,
    ) -> Result<(), HubspotError> {
        let config = self.config();
        let limit = config.search_page_size as usize;
        let source = &state.source;
        let modified = source.modified_property;
        let (t, id) = state.lower;
        let with_extra = |mut filters: Vec<Json>| {
            filters.extend(state.extra_filters.iter().cloned());
            json!({ "filters": filters })
        };
        let (groups, sort) = if state.split {
            (
                vec![with_extra(vec![
                    filter(modified, "EQ", ms(t)),
                    filter("hs_object_id", "GT", id.to_string()),
                ])],
                "hs_object_id",
            )
        } else {
            (
                vec![
                    with_extra(vec![
                        filter(modified, "GT", ms(t)),
                        filter(modified, "LTE", ms(until)),
                    ]),
                    with_extra(vec![
                        filter(modified, "EQ", ms(t)),
                        filter("hs_object_id", "GT", id.to_string()),
                        filter(modified, "LTE", ms(until)),
                    ]),
                ],
                modified,
            )
        };
        let body = json!({
            "filterGroups": groups,
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": source.properties,
            "limit": limit,
        });
        let request = ApiRequest::post(
            format!("{}/search", self.objects_path(&source.object_type)),
            body,
        );
        let what = request.describe();
        let page: ObjectPage = self.json(request).await?;
        let protocol = |detail: String| HubspotError::Protocol {
            request: what.clone(),
            detail,
        };
        let mut rows: Vec<(DateTime<Utc>, u64, &ApiObject)> = Vec::new();
        for object in &page.results {
            let mapped = map_object(config, source, object, None, false).map_err(&protocol)?;
            let key = mapped.key();
            if key <= state.lower {
                return Err(protocol(
                    "a record at or before the cursor came back".to_string(),
                ));
            }
            // Modified after the window's end: HubSpot's search index lags its records, so a
            // record edited while the search runs can come back (at its old place) with its new
            // time. Taking it would move the cursor over records not yet read; it is left for the
            // next window, which its new time falls in.
            if key.0 > until {
                tracing::debug!(
                    object_type = %source.object_type,
                    "a record modified after the window's end is left for the next pull"
                );
                continue;
            }
            // Out of the order asked for, a page's last records would not bound the next query.
            if let Some((at, number, _)) = rows.last() {
                let ordered = if state.split {
                    key.1 > *number
                } else {
                    key.0 >= *at
                };
                if !ordered {
                    return Err(protocol(format!(
                        "records are not sorted by {sort} as asked"
                    )));
                }
            }
            rows.push((key.0, key.1, object));
        }
        let full = page.results.len() >= limit;
        if full && rows.is_empty() {
            // Nothing to move the next query on by: asking again would return the same page.
            return Err(protocol(
                "a full page with no record inside the window asked for".to_string(),
            ));
        }
        let keep: Vec<&ApiObject> = if state.split {
            rows.sort_by_key(|(at, number, _)| (*at, *number));
            if let Some((at, number, _)) = rows.last() {
                state.lower = (*at, *number);
            }
            if !full {
                state.split = false;
            }
            rows.iter().map(|(_, _, object)| *object).collect()
        } else if !full {
            state.done = true;
            rows.sort_by_key(|(at, number, _)| (*at, *number));
            rows.iter().map(|(_, _, object)| *object).collect()
        } else {
            let last_time = rows.iter().map(|(at, _, _)| *at).max().unwrap_or(t);
            let mut earlier: Vec<&(DateTime<Utc>, u64, &ApiObject)> =
                rows.iter().filter(|(at, _, _)| *at < last_time).collect();
            if earlier.is_empty() {
                // A whole page shares one time: read that time by hs_object_id ranges.
                state.split = true;
                state.lower = (last_time, if last_time == t { id } else { 0 });
                tracing::debug!(
                    object_type = %source.object_type,
                    "a full search page shares one modification time; splitting it by hs_object_id"
                );
                return Ok(());
            }
            earlier.sort_by_key(|(at, number, _)| (*at, *number));
            if let Some((at, number, _)) = earlier.last() {
                state.lower = (*at, *number);
            }
            earlier.iter().map(|(_, _, object)| *object).collect()
        };
        let companies = if source.companies && !keep.is_empty() {
            let ids: Vec<String> = keep.iter().map(|object| object.id.clone()).collect();
            self.companies_of(&source.object_type, &ids).await?
        } else {
            HashMap::new()
        };
        for object in keep {
            let company = companies.get(object.id.trim()).cloned();
            state
                .buffer
                .push_back(map_object(config, source, object, company, false).map_err(&protocol)?);
        }
        Ok(())
    }

    /// The company of each record (v4 association batch read, one call per 1,000 ids): a
    /// "Primary"-labeled association first, then the lowest company id.
    pub(crate) async fn companies_of(
        &self,
        object_type: &str,
        ids: &[String],
    ) -> Result<HashMap<String, String>, HubspotError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Target {
            to_object_id: Json,
            #[serde(default)]
            association_types: Vec<Json>,
        }
        #[derive(Deserialize)]
        struct From {
            id: Json,
        }
        #[derive(Deserialize)]
        struct Entry {
            from: From,
            #[serde(default)]
            to: Vec<Target>,
        }
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            results: Vec<Entry>,
        }
        let mut companies = HashMap::new();
        for chunk in ids.chunks(1000) {
            let inputs: Vec<Json> = chunk.iter().map(|id| json!({ "id": id })).collect();
            let request = ApiRequest::post(
                format!("/crm/v4/associations/{object_type}/companies/batch/read"),
                json!({ "inputs": inputs }),
            );
            let answer: Answer = self.json(request).await?;
            for entry in answer.results {
                let Some(from) = id_text(&entry.from.id) else {
                    continue;
                };
                let best = entry
                    .to
                    .iter()
                    .filter_map(|target| {
                        let id = id_text(&target.to_object_id)?;
                        let primary = target.association_types.iter().any(|kind| {
                            kind.get("label").and_then(Json::as_str) == Some("Primary")
                        });
                        Some((!primary, id.parse::<u64>().unwrap_or(u64::MAX), id))
                    })
                    .min();
                if let Some((_, _, company)) = best {
                    companies.insert(from, company);
                }
            }
        }
        Ok(companies)
    }

    /// Every live record id of `stream` (the reconciliation pass), through the list endpoints
    /// with only the properties the stream's filters need.
    pub async fn reconcile_ids(&self, stream: StreamKind) -> Result<Vec<String>, HubspotError> {
        if stream == StreamKind::Owners {
            return Ok(self
                .all_owners()
                .await?
                .into_iter()
                .map(|record| record.id)
                .collect());
        }
        let config = self.config();
        let mut ids = Vec::new();
        for source in sources(config, stream) {
            let needed: Vec<String> = match source.kind {
                RowKind::Referral => vec!["pipeline".to_string()],
                RowKind::Activity(Touch::Task) | RowKind::OwnTask => {
                    vec![
                        "hs_task_status".to_string(),
                        config.mapping.task.key.clone(),
                    ]
                }
                _ => vec!["hs_object_id".to_string()],
            };
            let mut after = String::new();
            loop {
                let mut request = ApiRequest::get(self.objects_path(&source.object_type));
                request
                    .query
                    .push(("limit", config.list_page_size.to_string()));
                request.query.push(("properties", needed.join(",")));
                request.query.push(("archived", "false".to_string()));
                if !after.is_empty() {
                    request.query.push(("after", after.clone()));
                }
                let page: ObjectPage = self.json(request).await?;
                for object in &page.results {
                    if belongs(config, source.kind, &Row(object)) {
                        ids.push(object.id.trim().to_string());
                    }
                }
                match page.next_after() {
                    Some(next) => after = next,
                    None => break,
                }
            }
        }
        Ok(ids)
    }

    /// The stream's archived (deleted) records, listed with `archived=true` (search never returns
    /// them), handed over page by page as records with `deleted = true` and no cursor (they do not
    /// move the watermark). Owners are deactivated, never archived: nothing to hand over.
    pub async fn pull_archived<E: std::error::Error + 'static>(
        &self,
        stream: StreamKind,
        on_page: &mut (dyn FnMut(PulledPage) -> Result<(), E> + Send),
    ) -> Result<PullSummary, PullError<E>> {
        let mut summary = PullSummary {
            stream,
            records: 0,
            deleted: 0,
            pages: 0,
            api_calls: 0,
            cursor_before: None,
            cursor_after: None,
        };
        let mut calls = self.api_calls();
        for source in sources(self.config(), stream) {
            let mut after = String::new();
            loop {
                let (pulled, next) = self.list_page(&source, &after, true).await?;
                let mut records = Vec::with_capacity(pulled.len());
                for one in pulled {
                    one.expand(&mut records);
                }
                let now = self.api_calls();
                let api_calls = u32::try_from(now - calls).unwrap_or(u32::MAX);
                calls = now;
                summary.records += records.len() as u64;
                summary.deleted += records.len() as u64;
                summary.pages += 1;
                summary.api_calls = summary.api_calls.saturating_add(api_calls);
                on_page(PulledPage {
                    stream,
                    records,
                    cursor: None,
                    api_calls,
                })
                .map_err(PullError::Sink)?;
                match next {
                    Some(next) => after = next,
                    None => break,
                }
            }
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, AuthMethod};

    fn config() -> HubspotConfig {
        HubspotConfig::new(AuthConfig {
            method: AuthMethod::PrivateApp,
            access_token_file: Some("/t".into()),
            client_id: None,
            client_secret_file: None,
            refresh_token_file: None,
        })
    }

    fn object(value: Json) -> ApiObject {
        serde_json::from_value(value).unwrap()
    }

    fn source(stream: StreamKind, index: usize) -> Source {
        sources(&config(), stream).remove(index)
    }

    #[test]
    fn a_deal_maps_to_a_referral_with_its_stage_direction_and_company() {
        let deal = object(json!({"id": "3000000017", "properties": {
            "hs_lastmodifieddate": "2026-05-20T20:49:32.123Z", "createdate": "2026-04-01T10:00:00.000Z",
            "dealstage": "referred_out", "pipeline": "admissions", "referral_direction": "out",
            "disposition_reason": "capacity", "inquiry_id": "INQ-1", "admit_date": "2026-04-03",
            "hs_merged_object_ids": "3000000017;3000000099"}, "associations": {"companies": {"results": [
                {"id": "2000000009", "type": "deal_to_company_unlabeled"},
                {"id": "2000000011", "type": "deal_to_company"}]}}}));
        let source = source(StreamKind::Referrals, 0);
        assert!(belongs(&config(), source.kind, &Row(&deal)));
        let company = Row(&deal).inline_company();
        assert_eq!(
            company.as_deref(),
            Some("2000000011"),
            "the labeled one first"
        );
        let pulled = map_object(&config(), &source, &deal, company, false).unwrap();
        assert_eq!(pulled.number, 3_000_000_017);
        assert_eq!(pulled.record.modified_at.timestamp_subsec_millis(), 123);
        let CrmRecordBody::Referral(referral) = &pulled.record.body else {
            panic!()
        };
        assert_eq!(referral.direction, Direction::Out);
        assert_eq!(referral.disposition, Some(Disposition::ReferredOut));
        assert_eq!(
            referral.disposition_reason,
            Some(DispositionReason::Capacity)
        );
        assert_eq!(referral.admit_date, NaiveDate::from_ymd_opt(2026, 4, 3));
        let mut out = Vec::new();
        pulled.expand(&mut out);
        assert_eq!(out.len(), 2, "the merged-away deal is handed over too");
        assert_eq!(out[0].id, "3000000099");
        assert!(out[0].deleted);
        assert_eq!(out[0].merged_into.as_deref(), Some("3000000017"));
    }

    #[test]
    fn tasks_split_into_touches_and_own_tasks_and_bad_rows_are_errors() {
        let own = object(
            json!({"id": "4", "properties": {"hs_lastmodifieddate": "1700000000000",
            "hs_task_status": "COMPLETED", "refbridge_key": "decline:1"}}),
        );
        let touch = object(
            json!({"id": "5", "properties": {"hs_lastmodifieddate": "1700000000000",
            "hs_task_status": "COMPLETED", "hs_task_type": "CALL", "refbridge_key": null}}),
        );
        let config = config();
        let activities = sources(&config, StreamKind::Activities);
        let tasks_as_touches = activities.last().unwrap();
        assert!(!belongs(&config, tasks_as_touches.kind, &Row(&own)));
        assert!(belongs(&config, tasks_as_touches.kind, &Row(&touch)));
        let pulled = map_object(&config, tasks_as_touches, &touch, None, false).unwrap();
        assert!(matches!(&pulled.record.body, CrmRecordBody::Activity(a) if a.kind == "call"));
        let own_source = source(StreamKind::Tasks, 0);
        let pulled = map_object(&config, &own_source, &own, None, false).unwrap();
        assert!(
            matches!(&pulled.record.body, CrmRecordBody::Task(t) if t.completed && t.key == "decline:1")
        );
        assert!(
            map_object(
                &config,
                &own_source,
                &object(json!({"id": "x1"})),
                None,
                false
            )
            .is_err()
        );
        assert!(
            map_object(
                &config,
                &own_source,
                &object(json!({"id": "7"})),
                None,
                false
            )
            .is_err()
        );
    }

    #[test]
    fn list_cursors_resume_and_other_cursors_are_keys() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        let cursor = Cursor {
            modified_at: at,
            id: "list:2:3000000101".to_string(),
        };
        assert_eq!(list_position(&cursor), Some((2, "3000000101".to_string())));
        let plain = Cursor {
            modified_at: at,
            id: "42".to_string(),
        };
        assert_eq!(list_position(&plain), None);
        assert_eq!(cursor_key(&plain), (at, 42));
        assert_eq!(
            cursor_key(&Cursor {
                modified_at: at,
                id: String::new()
            }),
            (at, 0)
        );
    }

    #[test]
    fn the_healthcheck_knows_every_property_the_pull_reads() {
        let wanted = required_properties(&config());
        let companies = wanted.iter().find(|(t, _)| t == "companies").unwrap();
        assert!(companies.1.iter().any(|p| p == "npi"));
        assert!(!companies.1.iter().any(|p| p == MERGED_PROPERTY));
        let tasks = wanted.iter().find(|(t, _)| t == "tasks").unwrap();
        assert!(tasks.1.iter().any(|p| p == "hs_task_status"));
        assert!(!tasks.1.iter().any(|p| p == "refbridge_key"));
        let contacts = wanted.iter().find(|(t, _)| t == "contacts").unwrap();
        assert!(contacts.1.iter().any(|p| p == "lastmodifieddate"));
    }
}
