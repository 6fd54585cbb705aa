//! Pulling streams: SOQL windows over `queryAll`, paged, mapped into the normalized CRM records,
//! handed to the caller one page (with its cursor) at a time.
//!
//! A stream reads one object (partners, contacts, referrals, owners, refbridge's own tasks) or
//! two (activities: completed Tasks that are not refbridge's, and Events). Each object is queried
//! once per pull with the compound window `(SystemModstamp, Id) > cursor AND SystemModstamp <=
//! until`, ordered by both, so an interrupted pull resumes from the last cursor the caller
//! committed and an overlap is harmless. Two objects are merged by (SystemModstamp, Id) so that a
//! page's cursor never skips a record of the other object. `queryAll` brings deleted rows with
//! `IsDeleted = true`; `MasterRecordId` says where a merged record went. Also here: the
//! reconciliation pass (all live ids) and `deleted/`.
//!
//! This module never stores anything: the caller's `on_page` does, and a page's cursor is only
//! final once the caller has stored it. It never logs record values.

use std::collections::VecDeque;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use refbridge_model::crm::{
    CrmActivity, CrmContact, CrmOwner, CrmPartner, CrmRecord, CrmRecordBody, CrmReferral, CrmTask,
    Cursor, PullSummary, PulledPage, StreamKind,
};
use refbridge_model::{Direction, Disposition, DispositionReason, Npi};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::config::{MappingConfig, SalesforceConfig};
use crate::error::SalesforceError;
use crate::http::{ApiRequest, SalesforceClient};
use crate::soql::{self, Condition};

/// Why a pull stopped. Pages handed over before the error stay valid.
#[derive(Debug, thiserror::Error)]
pub enum PullError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Salesforce(#[from] SalesforceError),
    /// The caller's `on_page` failed; the pull stopped there.
    #[error("storing a pulled page failed")]
    Sink(#[source] E),
}

/// A record the reconciliation pass found deleted (`deleted/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedRecord {
    pub id: String,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What a row turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Partner,
    Contact,
    Referral,
    TaskActivity,
    EventActivity,
    Owner,
    OwnTask,
}

/// One object's part of a stream: what to select, which extra conditions, how to map.
#[derive(Debug, Clone)]
struct ObjectQuery {
    object: String,
    fields: Vec<String>,
    conditions: Vec<Condition>,
    kind: RowKind,
}

fn owned(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|field| field.to_string()).collect()
}

/// The objects, fields and conditions of `stream` under `config`.
fn stream_queries(config: &SalesforceConfig, stream: StreamKind) -> Vec<ObjectQuery> {
    let mapping = &config.mapping;
    let filters: Vec<Condition> = mapping
        .filters
        .for_stream(stream)
        .iter()
        .cloned()
        .map(Condition::Filter)
        .collect();
    let external_id = mapping.task.external_id.clone();
    let with = |mut extra: Vec<Condition>| {
        extra.extend(filters.iter().cloned());
        extra
    };
    let system = ["Id", "SystemModstamp", "IsDeleted"];
    match stream {
        StreamKind::Partners => {
            let mut fields = owned(&system);
            fields.extend(owned(&[
                "MasterRecordId",
                "Name",
                "Type",
                "Website",
                "Phone",
                "BillingStreet",
                "BillingCity",
                "BillingState",
                "BillingPostalCode",
                "OwnerId",
            ]));
            fields.extend(
                mapping
                    .partner
                    .all()
                    .iter()
                    .map(|(_, name)| name.to_string()),
            );
            vec![ObjectQuery {
                object: mapping.objects.partners.clone(),
                fields,
                conditions: with(Vec::new()),
                kind: RowKind::Partner,
            }]
        }
        StreamKind::Contacts => {
            let mut fields = owned(&system);
            fields.extend(owned(&[
                "MasterRecordId",
                "AccountId",
                "FirstName",
                "LastName",
                "Title",
                "Email",
                "Phone",
                "OwnerId",
            ]));
            vec![ObjectQuery {
                object: mapping.objects.contacts.clone(),
                fields,
                conditions: with(Vec::new()),
                kind: RowKind::Contact,
            }]
        }
        StreamKind::Referrals => {
            let mut fields = owned(&system);
            fields.extend(owned(&["CreatedDate", "StageName", "AccountId", "OwnerId"]));
            fields.extend(
                mapping
                    .referral
                    .all()
                    .iter()
                    .map(|(_, name)| name.to_string()),
            );
            vec![ObjectQuery {
                object: mapping.objects.referrals.clone(),
                fields,
                conditions: with(Vec::new()),
                kind: RowKind::Referral,
            }]
        }
        StreamKind::Activities => {
            let mut task_fields = owned(&system);
            task_fields.extend(owned(&[
                "CreatedDate",
                "Type",
                "TaskSubtype",
                "OwnerId",
                "WhatId",
                "WhoId",
                "CompletedDateTime",
                "ActivityDate",
            ]));
            let mut event_fields = owned(&system);
            event_fields.extend(owned(&[
                "CreatedDate",
                "Type",
                "OwnerId",
                "WhatId",
                "WhoId",
                "StartDateTime",
                "ActivityDateTime",
            ]));
            vec![
                ObjectQuery {
                    object: mapping.objects.tasks.clone(),
                    fields: task_fields,
                    conditions: with(vec![
                        Condition::IsBool("IsClosed".to_string(), true),
                        Condition::IsNull(external_id, true),
                    ]),
                    kind: RowKind::TaskActivity,
                },
                ObjectQuery {
                    object: mapping.objects.events.clone(),
                    fields: event_fields,
                    conditions: with(Vec::new()),
                    kind: RowKind::EventActivity,
                },
            ]
        }
        // User has no IsDeleted: users are deactivated, never deleted.
        StreamKind::Owners => vec![ObjectQuery {
            object: mapping.objects.owners.clone(),
            fields: owned(&[
                "Id",
                "SystemModstamp",
                "Name",
                "FirstName",
                "LastName",
                "Email",
                "IsActive",
            ]),
            conditions: with(Vec::new()),
            kind: RowKind::Owner,
        }],
        StreamKind::Tasks => {
            let mut fields = owned(&system);
            fields.extend([
                external_id.clone(),
                "Status".to_string(),
                "IsClosed".to_string(),
                "OwnerId".to_string(),
            ]);
            vec![ObjectQuery {
                object: mapping.objects.tasks.clone(),
                fields,
                conditions: with(vec![Condition::IsNull(external_id, false)]),
                kind: RowKind::OwnTask,
            }]
        }
    }
}

/// The fields every mapped object must have, as (object, field, config key of the field or
/// `None` for standard fields): for the healthcheck.
pub(crate) fn required_fields(config: &SalesforceConfig) -> Vec<(String, Vec<String>)> {
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    for stream in StreamKind::ALL {
        for query in stream_queries(config, stream) {
            let mut fields = query.fields.clone();
            for condition in &query.conditions {
                let field = match condition {
                    Condition::Filter(filter) => &filter.field,
                    Condition::IsBool(field, _) | Condition::IsNull(field, _) => field,
                };
                fields.push(field.clone());
            }
            match wanted
                .iter_mut()
                .find(|(object, _)| object.eq_ignore_ascii_case(&query.object))
            {
                Some((_, known)) => {
                    for field in fields {
                        if !known.iter().any(|k| k.eq_ignore_ascii_case(&field)) {
                            known.push(field);
                        }
                    }
                }
                None => {
                    let mut unique: Vec<String> = Vec::new();
                    for field in fields {
                        if !unique.iter().any(|k| k.eq_ignore_ascii_case(&field)) {
                            unique.push(field);
                        }
                    }
                    wanted.push((query.object.clone(), unique));
                }
            }
        }
    }
    wanted
}

/// One page of a query answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryPage {
    done: bool,
    #[serde(default)]
    next_records_url: Option<String>,
    records: Vec<Map<String, Json>>,
}

/// A row's fields, looked up exactly first and then case-insensitively.
struct Row<'a>(&'a Map<String, Json>);

impl Row<'_> {
    fn get(&self, name: &str) -> Option<&Json> {
        self.0.get(name).or_else(|| {
            self.0
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        })
    }

    fn text(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Json::String(text) if !text.trim().is_empty() => Some(text.clone()),
            Json::Number(number) => Some(number.to_string()),
            _ => None,
        }
    }

    fn flag(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            Json::Bool(flag) => Some(*flag),
            Json::String(text) => match text.to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    fn datetime(&self, name: &str) -> Option<DateTime<Utc>> {
        parse_datetime(self.get(name)?.as_str()?)
    }

    fn date(&self, name: &str) -> Option<NaiveDate> {
        let text = self.get(name)?.as_str()?;
        NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
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
}

/// Salesforce's `2026-05-20T20:49:32.000+0000`, or RFC 3339.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

fn stage_disposition(mapping: &MappingConfig, stage: &str) -> Option<Disposition> {
    mapping
        .stages
        .get(stage)
        .or_else(|| {
            mapping
                .stages
                .iter()
                .find(|(label, _)| label.eq_ignore_ascii_case(stage))
                .map(|(_, disposition)| disposition)
        })
        .copied()
        .or_else(|| Disposition::parse(stage))
}

/// The id when it points at an Account (key prefix `001`).
fn account_id(id: Option<String>) -> Option<String> {
    id.filter(|id| id.starts_with("001"))
}

fn contact_id(id: Option<String>) -> Option<String> {
    id.filter(|id| id.starts_with("003"))
}

fn activity_kind(kind: Option<&str>, subtype: Option<&str>, event: bool) -> &'static str {
    let folded = kind.map(str::to_ascii_lowercase);
    match folded.as_deref() {
        Some("call") => "call",
        Some("email") => "email",
        Some("meeting") => "meeting",
        Some("visit") => "visit",
        _ if event => "meeting",
        _ => match subtype.map(str::to_ascii_lowercase).as_deref() {
            Some("call") => "call",
            Some("email") => "email",
            _ => "task",
        },
    }
}

/// Maps one query row; `Err` names what is missing.
fn map_row(
    config: &SalesforceConfig,
    kind: RowKind,
    raw: &Map<String, Json>,
) -> Result<CrmRecord, String> {
    let row = Row(raw);
    let id = match row.get("Id") {
        Some(Json::String(id)) if is_record_id(id) => id.clone(),
        Some(_) => return Err("a record whose Id is not a Salesforce record id".to_string()),
        None => return Err("a record without Id".to_string()),
    };
    let modified_at = row
        .datetime("SystemModstamp")
        .ok_or("a record without a readable SystemModstamp")?;
    let deleted = row.flag("IsDeleted") == Some(true);
    let mapping = &config.mapping;
    let mut merged_into = None;
    let body = match kind {
        RowKind::Partner => {
            let fields = &mapping.partner;
            merged_into = row.text("MasterRecordId");
            CrmRecordBody::Partner(CrmPartner {
                id: id.clone(),
                name: row.text("Name").unwrap_or_default(),
                source_type: row.text(&fields.source_type).or_else(|| row.text("Type")),
                npi: row.text(&fields.npi).and_then(|npi| Npi::parse(&npi).ok()),
                website: row.text("Website"),
                phone: row.text("Phone"),
                street: row.text("BillingStreet"),
                city: row.text("BillingCity"),
                state: row.text("BillingState"),
                zip: row.text("BillingPostalCode"),
                owner_id: row.text("OwnerId"),
                payers_accepted: row.list(&fields.payers_accepted),
                levels_of_care: row.list(&fields.levels_of_care),
                accepting_referrals: row.flag(&fields.accepting_referrals),
                preferred: row.flag(&fields.preferred),
            })
        }
        RowKind::Contact => {
            merged_into = row.text("MasterRecordId");
            CrmRecordBody::Contact(CrmContact {
                id: id.clone(),
                partner_id: row.text("AccountId"),
                first_name: row.text("FirstName"),
                last_name: row.text("LastName").unwrap_or_default(),
                title: row.text("Title"),
                email: row.text("Email"),
                phone: row.text("Phone"),
                owner_id: row.text("OwnerId"),
            })
        }
        RowKind::Referral => {
            let fields = &mapping.referral;
            let direction = match row.text(&fields.direction) {
                Some(text) if text.to_ascii_lowercase().starts_with("out") => Direction::Out,
                _ => Direction::In,
            };
            let partner_field = match direction {
                Direction::In => &fields.referral_source,
                Direction::Out => &fields.referred_out_to,
            };
            let stage = row.text("StageName").unwrap_or_default();
            CrmRecordBody::Referral(CrmReferral {
                id: id.clone(),
                inquiry_id: row.text(&fields.inquiry_id),
                direction,
                partner_id: row.text(partner_field).or_else(|| row.text("AccountId")),
                parent_inquiry_id: row.text(&fields.parent_inquiry_id),
                disposition: stage_disposition(mapping, &stage),
                stage,
                disposition_reason: row
                    .text(&fields.disposition_reason)
                    .and_then(|reason| DispositionReason::parse(&reason)),
                payer: row.text(&fields.payer),
                plan_type: row.text(&fields.plan_type),
                level_of_care: row.text(&fields.level_of_care),
                inquiry_date: row.datetime("CreatedDate").map(|at| at.date_naive()),
                admit_date: row.date(&fields.admit_date),
                owner_id: row.text("OwnerId"),
            })
        }
        RowKind::TaskActivity | RowKind::EventActivity => {
            let event = kind == RowKind::EventActivity;
            let at = if event {
                row.datetime("StartDateTime")
                    .or_else(|| row.datetime("ActivityDateTime"))
            } else {
                row.datetime("CompletedDateTime").or_else(|| {
                    row.date("ActivityDate")
                        .map(|date| date.and_time(NaiveTime::MIN).and_utc())
                })
            }
            .or_else(|| row.datetime("CreatedDate"))
            .unwrap_or(modified_at);
            CrmRecordBody::Activity(CrmActivity {
                id: id.clone(),
                kind: activity_kind(
                    row.text("Type").as_deref(),
                    row.text("TaskSubtype").as_deref(),
                    event,
                )
                .to_string(),
                owner_id: row.text("OwnerId"),
                partner_id: account_id(row.text("WhatId")),
                contact_id: contact_id(row.text("WhoId")),
                at,
            })
        }
        RowKind::Owner => {
            let name = row.text("Name").unwrap_or_else(|| {
                [row.text("FirstName"), row.text("LastName")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            CrmRecordBody::Owner(CrmOwner {
                id: id.clone(),
                name,
                email: row.text("Email"),
                active: row.flag("IsActive").unwrap_or(true),
            })
        }
        RowKind::OwnTask => {
            let status = row.text("Status").unwrap_or_default();
            CrmRecordBody::Task(CrmTask {
                id: id.clone(),
                key: row.text(&mapping.task.external_id).unwrap_or_default(),
                completed: row.flag("IsClosed") == Some(true)
                    || status.eq_ignore_ascii_case("Completed"),
                status,
                owner_id: row.text("OwnerId"),
            })
        }
    };
    Ok(CrmRecord {
        id,
        modified_at,
        deleted,
        merged_into,
        body,
    })
}

/// A Salesforce record id: 15 letters and digits, or 18 whose last three encode the case of the
/// first fifteen (the checksum every API answer carries).
fn is_record_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    if !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    match bytes.len() {
        15 => true,
        18 => (0..3).all(|chunk| {
            let bits = (0..5)
                .filter(|bit| bytes[chunk * 5 + bit].is_ascii_uppercase())
                .fold(0usize, |sum, bit| sum | 1 << bit);
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits] == bytes[15 + chunk]
        }),
        _ => false,
    }
}

fn key_of(record: &CrmRecord) -> (DateTime<Utc>, &str) {
    (record.modified_at, record.id.as_str())
}

/// Where a source's next page comes from.
#[derive(Debug)]
enum Next {
    Query(String),
    Locator(String),
    Done,
}

/// One object being read: its buffered records and its next page.
struct Source {
    query: ObjectQuery,
    buffer: VecDeque<CrmRecord>,
    next: Next,
    last_modified: Option<DateTime<Utc>>,
    /// The window asked for: records after `after`, up to `until`.
    after: Option<Cursor>,
    until: DateTime<Utc>,
}

impl SalesforceClient {
    /// Pulls `stream` from after `after` up to `until` (normally [`window_end`]), calling
    /// `on_page` with each page and the cursor after it, in order. The caller stores a page's
    /// records and cursor together (one transaction); an error from `on_page` stops the pull.
    /// A pull with nothing new calls `on_page` once with an empty page (and cursor `None`), so
    /// the caller can record its API calls. Pulling stops with a quota error once the daily usage
    /// reached `quota_stop_share` (before any further query call).
    ///
    /// [`window_end`]: SalesforceClient::window_end
    pub async fn pull<E: std::error::Error + 'static>(
        &self,
        stream: StreamKind,
        after: Option<&Cursor>,
        until: DateTime<Utc>,
        on_page: &mut (dyn FnMut(PulledPage) -> Result<(), E> + Send),
    ) -> Result<PullSummary, PullError<E>> {
        let config = self.config();
        let mut sources = Vec::new();
        for query in stream_queries(config, stream) {
            let fields: Vec<&str> = query.fields.iter().map(String::as_str).collect();
            let text = soql::window_query(&query.object, &fields, after, until, &query.conditions)
                .map_err(|error| SalesforceError::Config(error.to_string()))?;
            sources.push(Source {
                query,
                buffer: VecDeque::new(),
                next: Next::Query(text),
                last_modified: None,
                after: after.cloned(),
                until,
            });
        }
        let mut summary = PullSummary {
            stream,
            records: 0,
            deleted: 0,
            pages: 0,
            api_calls: 0,
            cursor_before: after.cloned(),
            cursor_after: after.cloned(),
        };
        let mut calls_since_page = 0u32;
        loop {
            for source in sources.iter_mut() {
                if source.buffer.is_empty() && !matches!(source.next, Next::Done) {
                    self.check_pull_reserve()?;
                    calls_since_page += 1;
                    summary.api_calls += 1;
                    self.fetch_page(source).await?;
                }
            }
            // Records up to the smallest last-buffered key of a source with pages to come are
            // final: no later page of any source can sort before it.
            let mut bound: Option<(DateTime<Utc>, String)> = None;
            let mut bounding = None;
            for (index, source) in sources.iter().enumerate() {
                if matches!(source.next, Next::Done) {
                    continue;
                }
                let Some(last) = source.buffer.back() else {
                    continue;
                };
                let key = (last.modified_at, last.id.clone());
                if bound.as_ref().is_none_or(|known| key < *known) {
                    bound = Some(key);
                    bounding = Some(index);
                }
            }
            let mut records = Vec::new();
            for (index, source) in sources.iter_mut().enumerate() {
                if bound.is_none() || bounding == Some(index) {
                    records.extend(source.buffer.drain(..));
                    continue;
                }
                if let Some((at, id)) = &bound {
                    while let Some(front) = source.buffer.front() {
                        if key_of(front) <= (*at, id.as_str()) {
                            records.extend(source.buffer.pop_front());
                        } else {
                            break;
                        }
                    }
                }
            }
            let finished = sources
                .iter()
                .all(|source| matches!(source.next, Next::Done) && source.buffer.is_empty());
            if records.is_empty() {
                if finished {
                    break;
                }
                continue;
            }
            records.sort_by(|left, right| key_of(left).cmp(&key_of(right)));
            let cursor = match &bound {
                Some((at, id)) => Cursor {
                    modified_at: *at,
                    id: id.clone(),
                },
                None => records
                    .last()
                    .map(|last| Cursor {
                        modified_at: last.modified_at,
                        id: last.id.clone(),
                    })
                    .unwrap_or_else(|| Cursor {
                        modified_at: until,
                        id: String::new(),
                    }),
            };
            summary.records += records.len() as u64;
            summary.deleted += records
                .iter()
                .filter(|record| record.deleted || record.merged_into.is_some())
                .count() as u64;
            summary.pages += 1;
            summary.cursor_after = Some(cursor.clone());
            let page = PulledPage {
                stream,
                records,
                cursor: Some(cursor),
                api_calls: std::mem::take(&mut calls_since_page),
            };
            on_page(page).map_err(PullError::Sink)?;
            if finished {
                break;
            }
        }
        if summary.pages == 0 {
            summary.pages = 1;
            on_page(PulledPage {
                stream,
                records: Vec::new(),
                cursor: None,
                api_calls: calls_since_page,
            })
            .map_err(PullError::Sink)?;
        }
        tracing::info!(
            stream = stream.as_str(),
            records = summary.records,
            deleted = summary.deleted,
            pages = summary.pages,
            api_calls = summary.api_calls,
            "salesforce stream pulled"
        );
        Ok(summary)
    }

    /// Fetches `source`'s next page into its buffer.
    async fn fetch_page(&self, source: &mut Source) -> Result<(), SalesforceError> {
        let mut request = match std::mem::replace(&mut source.next, Next::Done) {
            Next::Query(text) => {
                let mut request = ApiRequest::get(self.data_path("queryAll"));
                request.query.push(("q", text));
                request
            }
            Next::Locator(path) => ApiRequest::get(path),
            Next::Done => return Ok(()),
        };
        request.batch_size = Some(self.config().page_size);
        let what = format!("{} (query of {})", request.describe(), source.query.object);
        let page: QueryPage = self.get_json(request).await?;
        let protocol = |detail: String| SalesforceError::Protocol {
            request: what.clone(),
            detail,
        };
        source.next = match (page.done, page.next_records_url) {
            (true, _) => Next::Done,
            (false, Some(url)) => Next::Locator(self.checked_locator(&url).map_err(protocol)?),
            (false, None) => {
                return Err(protocol(
                    "done is false but nextRecordsUrl is missing".to_string(),
                ));
            }
        };
        if page.records.is_empty() && !matches!(source.next, Next::Done) {
            return Err(protocol("an empty page that is not the last".to_string()));
        }
        for raw in &page.records {
            let record = map_row(self.config(), source.query.kind, raw)
                .map_err(|detail| protocol(detail.to_string()))?;
            // A record outside the window asked for would move the cursor past records not
            // yet read (after the window's end) or says the query was not run as asked.
            if record.modified_at > source.until {
                return Err(protocol(
                    "a record modified after the end of the window asked for".to_string(),
                ));
            }
            if source.after.as_ref().is_some_and(|after| {
                record.modified_at < after.modified_at
                    || (record.modified_at == after.modified_at && record.id == after.id)
            }) {
                return Err(protocol(
                    "a record at or before the cursor asked after".to_string(),
                ));
            }
            if source
                .last_modified
                .is_some_and(|last| record.modified_at < last)
            {
                return Err(protocol(
                    "records are not ordered by SystemModstamp".to_string(),
                ));
            }
            source.last_modified = Some(record.modified_at);
            source.buffer.push_back(record);
        }
        Ok(())
    }

    /// A `nextRecordsUrl` must be a path on this instance under `/services/data/`.
    fn checked_locator(&self, url: &str) -> Result<String, String> {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        if !path.starts_with("/services/data/") || path.contains("..") {
            return Err("nextRecordsUrl is not a path under /services/data/".to_string());
        }
        Ok(path.to_string())
    }

    /// Every live record id of `stream` (the reconciliation pass): `SELECT Id` through `query`
    /// (deleted rows excluded), paged.
    pub async fn reconcile_ids(&self, stream: StreamKind) -> Result<Vec<String>, SalesforceError> {
        let mut ids = Vec::new();
        for query in stream_queries(self.config(), stream) {
            let text = soql::ids_query(&query.object, &query.conditions)
                .map_err(|error| SalesforceError::Config(error.to_string()))?;
            let mut request = ApiRequest::get(self.data_path("query"));
            request.query.push(("q", text));
            loop {
                request.batch_size = Some(self.config().page_size);
                let page: QueryPage = self.get_json(request).await?;
                for raw in &page.records {
                    let id = Row(raw)
                        .text("Id")
                        .ok_or_else(|| SalesforceError::Protocol {
                            request: format!("id query of {}", query.object),
                            detail: "a record without Id".to_string(),
                        })?;
                    ids.push(id);
                }
                match (page.done, page.next_records_url) {
                    (false, Some(url)) => {
                        let path = self.checked_locator(&url).map_err(|detail| {
                            SalesforceError::Protocol {
                                request: format!("id query of {}", query.object),
                                detail,
                            }
                        })?;
                        request = ApiRequest::get(path);
                    }
                    _ => break,
                }
            }
        }
        Ok(ids)
    }

    /// Records of `stream`'s objects deleted between `start` and `end` (`GET
    /// sobjects/{Type}/deleted/`; Salesforce keeps about 15 days).
    pub async fn recently_deleted(
        &self,
        stream: StreamKind,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<DeletedRecord>, SalesforceError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Deleted {
            id: String,
            #[serde(default)]
            deleted_date: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            #[serde(default)]
            deleted_records: Vec<Deleted>,
        }
        let mut deleted = Vec::new();
        for query in stream_queries(self.config(), stream) {
            if query.kind == RowKind::Owner {
                continue;
            }
            let mut request =
                ApiRequest::get(self.data_path(&format!("sobjects/{}/deleted/", query.object)));
            let format = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
            request.query.push(("start", format(start)));
            request.query.push(("end", format(end)));
            let answer: Answer = self.get_json(request).await?;
            deleted.extend(
                answer
                    .deleted_records
                    .into_iter()
                    .map(|record| DeletedRecord {
                        id: record.id,
                        deleted_at: record.deleted_date.as_deref().and_then(parse_datetime),
                    }),
            );
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{AuthConfig, AuthMethod};

    fn config() -> SalesforceConfig {
        SalesforceConfig::new(
            "https://acme.my.salesforce.com",
            AuthConfig {
                method: AuthMethod::ClientCredentials,
                client_id: "x".into(),
                username: None,
                private_key_file: None,
                client_secret_file: Some("/s".into()),
                refresh_token_file: None,
            },
        )
    }

    fn map(kind: RowKind, value: Json) -> Result<CrmRecord, String> {
        map_row(&config(), kind, value.as_object().unwrap())
    }

    #[test]
    fn an_outbound_opportunity_maps_to_a_referral_with_its_partner_and_disposition() {
        let record = map(
            RowKind::Referral,
            json!({"attributes": {"type": "Opportunity"}, "Id": "006000000000001AAA",
                "SystemModstamp": "2026-05-20T20:49:32.000+0000", "IsDeleted": false,
                "CreatedDate": "2026-04-01T10:00:00.000+0000", "StageName": "referred out",
                "AccountId": "001000000000009AAA", "Direction__c": "Outbound",
                "Referred_Out_To__c": "001000000000002AAA", "Referral_Source__c": null,
                "Disposition_Reason__c": "Capacity", "Admit_Date__c": null,
                "inquiry_id__c": "INQ-1"}),
        )
        .unwrap();
        let CrmRecordBody::Referral(referral) = record.body else {
            panic!("{record:?}")
        };
        assert_eq!(referral.direction, Direction::Out);
        assert_eq!(referral.partner_id.as_deref(), Some("001000000000002AAA"));
        assert_eq!(referral.disposition, Some(Disposition::ReferredOut));
        assert_eq!(
            referral.disposition_reason,
            Some(DispositionReason::Capacity)
        );
        assert_eq!(referral.inquiry_id.as_deref(), Some("INQ-1"));
        assert_eq!(referral.inquiry_date, NaiveDate::from_ymd_opt(2026, 4, 1));
    }

    #[test]
    fn a_merged_account_says_where_it_went_and_rows_without_keys_are_errors() {
        let record = map(
            RowKind::Partner,
            json!({"Id": "001000000000003AAA", "SystemModstamp": "2026-05-20T20:49:32.000Z",
                "IsDeleted": true, "MasterRecordId": "001000000000001AAA", "Name": "A",
                "Payers_Accepted__c": "Aetna; Medicaid;", "NPI__c": "not an npi"}),
        )
        .unwrap();
        assert!(record.deleted);
        assert_eq!(record.merged_into.as_deref(), Some("001000000000001AAA"));
        let CrmRecordBody::Partner(partner) = record.body else {
            panic!()
        };
        assert_eq!(partner.payers_accepted, ["Aetna", "Medicaid"]);
        assert_eq!(partner.npi, None);
        assert!(map(RowKind::Partner, json!({"Id": "001"})).is_err());
        let stamp = "2026-05-20T20:49:32.000Z";
        for id in [
            json!(1001),
            json!("001Dn000000000FIAA"),
            json!("001Dn00000000-FIAQ"),
        ] {
            assert!(
                map(RowKind::Partner, json!({"Id": id, "SystemModstamp": stamp})).is_err(),
                "{id}"
            );
        }
        assert!(
            map(
                RowKind::Partner,
                json!({"Id": "001Dn000000000FIAQ", "SystemModstamp": stamp})
            )
            .is_ok()
        );
        assert!(
            map(
                RowKind::Partner,
                json!({"Id": "001Dn000000000F", "SystemModstamp": stamp})
            )
            .is_ok()
        );
        assert!(map(RowKind::Partner, json!({"SystemModstamp": 5})).is_err());
        assert!(
            map(
                RowKind::Owner,
                json!({"Id": 7, "SystemModstamp": "garbage"})
            )
            .is_err()
        );
    }

    #[test]
    fn activities_take_their_kind_and_time_from_the_row() {
        let record = map(
            RowKind::TaskActivity,
            json!({"Id": "00T000000000001EAA", "SystemModstamp": "2026-05-20T20:49:32.000+0000",
                "Type": null, "TaskSubtype": "Call", "WhatId": "006000000000001AAA",
                "WhoId": "003000000000001AAA", "ActivityDate": "2026-05-19"}),
        )
        .unwrap();
        let CrmRecordBody::Activity(activity) = record.body else {
            panic!()
        };
        assert_eq!(activity.kind, "call");
        assert_eq!(activity.partner_id, None);
        assert_eq!(activity.contact_id.as_deref(), Some("003000000000001AAA"));
        assert_eq!(
            activity.at.date_naive(),
            NaiveDate::from_ymd_opt(2026, 5, 19).unwrap()
        );
    }

    #[test]
    fn the_healthcheck_knows_every_field_the_pull_reads() {
        let wanted = required_fields(&config());
        let task = wanted.iter().find(|(object, _)| object == "Task").unwrap();
        for field in [
            "IsClosed",
            "Refbridge_Key__c",
            "CompletedDateTime",
            "Status",
        ] {
            assert!(task.1.iter().any(|known| known == field), "{field}");
        }
        let account = wanted
            .iter()
            .find(|(object, _)| object == "Account")
            .unwrap();
        assert!(account.1.iter().any(|known| known == "NPI__c"));
    }
}
