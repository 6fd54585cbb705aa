//! Pushing task intents: batch upsert of tasks on the unique key property, 100 rows a call, then
//! one v4 batch association call per 100 stored rows to link each task to what it is about.
//!
//! The intent's key is the value of the unique task property (`idProperty`), so sending a row
//! twice (a retry after a reset, a rerun after a crash) updates the same task instead of creating
//! another. Batch upsert takes no inline associations, so after each upsert the stored tasks are
//! associated (default type) with their `about_id` as a company; ids that are no company are tried
//! as deals, then as contacts (refer-out tasks sit on the lead). Associating is idempotent and is
//! done on every push, so a crash between the upsert and the association heals on the next run.
//! A 207 answer gives per-row results: refused rows are `Permanent` (or `Retryable` for
//! HubSpot's transient categories); a batch that fails in transport or on the limits makes its
//! rows (and those of the batches not sent) `Retryable`. Only a configuration failure (a refused
//! token, a missing or non-unique key property) is an error of the whole push. This module never
//! reads or writes the ledger and never logs a task's subject or body.

use std::collections::{HashMap, HashSet};

use chrono::NaiveTime;
use refbridge_model::crm::{PushResult, TaskIntent, TaskKind, TaskPriority};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::error::HubspotError;
use crate::http::{ApiRequest, HubspotClient};

/// Rows per batch call (HubSpot's limit).
pub const BATCH_SIZE: usize = 100;
const SUBJECT_MAX_CHARS: usize = 255;
const BODY_MAX_CHARS: usize = 65_000;
/// Per-row error categories worth sending again next run.
const RETRYABLE_CATEGORIES: &[&str] = &["RATE_LIMITS", "INTERNAL_ERROR", "LOCKED", "TIMEOUT"];
/// Where a task may be associated, in the order tried.
const ASSOCIATION_TARGETS: [&str; 3] = ["companies", "deals", "contacts"];

/// Why a push as a whole could not be done.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The login, the key property or the permissions are wrong: no row can succeed.
    #[error(transparent)]
    Config(HubspotError),
}

/// What the push of one batch cost, for the caller's reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushCalls {
    pub upserts: u64,
    pub associations: u64,
}

#[derive(Debug, Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    results: Vec<BatchResult>,
    #[serde(default)]
    errors: Vec<BatchError>,
}

#[derive(Debug, Deserialize)]
struct BatchResult {
    id: String,
    #[serde(default)]
    properties: Map<String, Json>,
    #[serde(default)]
    new: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct BatchError {
    #[serde(default)]
    category: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    context: Map<String, Json>,
    #[serde(default)]
    errors: Vec<Json>,
}

impl BatchError {
    /// The row keys (or ids) the error names.
    fn ids(&self) -> Vec<String> {
        self.context
            .get("ids")
            .and_then(Json::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Json::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// HubSpot's own code of the first detail (`INVALID_OPTION`), else the category.
    fn code(&self) -> String {
        self.errors
            .first()
            .and_then(|detail| detail.get("code"))
            .and_then(Json::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| self.category.clone())
    }
}

fn truncated(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_string(),
        None => text.to_string(),
    }
}

/// A row's outcome before associations.
#[derive(Debug, Clone)]
enum Row {
    Stored { task_id: String, created: bool },
    Done(PushResult),
}

impl HubspotClient {
    /// The upsert input an intent becomes; `owner` overrides the intent's owner.
    fn task_input(&self, intent: &TaskIntent, owner: Option<&str>) -> Json {
        let config = self.config();
        let key = &config.mapping.task.key;
        let mut properties = Map::new();
        properties.insert(key.clone(), Json::String(intent.key.clone()));
        let due = intent.due.and_time(NaiveTime::MIN).and_utc();
        properties.insert(
            "hs_timestamp".to_string(),
            Json::String(due.timestamp_millis().to_string()),
        );
        properties.insert(
            "hs_task_subject".to_string(),
            Json::String(truncated(&intent.subject, SUBJECT_MAX_CHARS)),
        );
        properties.insert(
            "hs_task_body".to_string(),
            Json::String(truncated(&intent.description, BODY_MAX_CHARS)),
        );
        let status = if intent.completed {
            "COMPLETED"
        } else {
            "NOT_STARTED"
        };
        properties.insert("hs_task_status".to_string(), json!(status));
        let priority = match intent.priority {
            TaskPriority::High => "HIGH",
            TaskPriority::Normal => "MEDIUM",
            TaskPriority::Low => "LOW",
        };
        properties.insert("hs_task_priority".to_string(), json!(priority));
        let kind = match intent.kind {
            TaskKind::Call => "CALL",
            TaskKind::Email => "EMAIL",
            TaskKind::Meeting | TaskKind::Todo => "TODO",
        };
        properties.insert("hs_task_type".to_string(), json!(kind));
        let owner = owner
            .map(str::to_string)
            .or_else(|| intent.owner_id.clone())
            .or_else(|| config.queue_owner_id.clone());
        if let Some(owner) = owner {
            properties.insert("hubspot_owner_id".to_string(), Json::String(owner));
        }
        json!({"id": intent.key, "idProperty": key, "properties": properties})
    }

    /// Upserts `intents` as tasks and associates each with its `about_id`; one result per
    /// intent, in order.
    pub async fn push(&self, intents: &[TaskIntent]) -> Result<Vec<PushResult>, PushError> {
        self.push_counted(intents).await.map(|(results, _)| results)
    }

    /// [`push`](Self::push), also saying how many upsert and association calls it sent (retries
    /// excluded).
    pub async fn push_counted(
        &self,
        intents: &[TaskIntent],
    ) -> Result<(Vec<PushResult>, PushCalls), PushError> {
        let mut results: Vec<Option<PushResult>> = vec![None; intents.len()];
        let mut calls = PushCalls::default();
        let mut stop: Option<String> = None;
        // A key given twice: the last intent wins and every copy gets its result.
        let mut last_of: HashMap<&str, usize> = HashMap::new();
        for (index, intent) in intents.iter().enumerate() {
            last_of.insert(intent.key.as_str(), index);
        }
        let unique: Vec<usize> = (0..intents.len())
            .filter(|index| last_of.get(intents[*index].key.as_str()) == Some(index))
            .collect();
        for batch in unique.chunks(BATCH_SIZE) {
            if let Some(reason) = &stop {
                for &index in batch {
                    results[index] = Some(PushResult::Retryable {
                        key: intents[index].key.clone(),
                        reason: reason.clone(),
                    });
                }
                continue;
            }
            match self.push_batch(intents, batch, &mut calls).await {
                Ok(rows) => {
                    for (index, result) in rows {
                        results[index] = Some(result);
                    }
                }
                Err(error) => {
                    let quota = error.is_quota();
                    let reason = batch_failure(error)?;
                    for &index in batch {
                        results[index] = Some(PushResult::Retryable {
                            key: intents[index].key.clone(),
                            reason: reason.clone(),
                        });
                    }
                    if quota {
                        stop = Some(reason);
                    }
                }
            }
        }
        let results = intents
            .iter()
            .enumerate()
            .map(|(index, intent)| {
                let winner = last_of.get(intent.key.as_str()).copied().unwrap_or(index);
                results[winner]
                    .clone()
                    .unwrap_or_else(|| PushResult::Retryable {
                        key: intent.key.clone(),
                        reason: "no answer for this row".to_string(),
                    })
            })
            .collect();
        Ok((results, calls))
    }

    /// One batch: upsert (and once more with the queue owner for rows whose owner was refused),
    /// then associations.
    async fn push_batch(
        &self,
        intents: &[TaskIntent],
        batch: &[usize],
        calls: &mut PushCalls,
    ) -> Result<Vec<(usize, PushResult)>, HubspotError> {
        let inputs: Vec<(usize, Json)> = batch
            .iter()
            .map(|&index| (index, self.task_input(&intents[index], None)))
            .collect();
        let mut rows = self.upsert(intents, &inputs, calls).await?;
        let queue = self.config().queue_owner_id.clone();
        if let Some(queue) = queue {
            let again: Vec<(usize, Json)> = rows
                .iter()
                .filter_map(|(index, row)| match row {
                    Row::Done(PushResult::Permanent { message, .. })
                        if message.contains("hubspot_owner_id")
                            && intents[*index].owner_id.as_deref() != Some(queue.as_str()) =>
                    {
                        Some((*index, self.task_input(&intents[*index], Some(&queue))))
                    }
                    _ => None,
                })
                .collect();
            if !again.is_empty() {
                tracing::info!(
                    rows = again.len(),
                    "tasks whose owner was refused are sent again with the queue owner"
                );
                let retried: HashMap<usize, Row> = self
                    .upsert(intents, &again, calls)
                    .await?
                    .into_iter()
                    .collect();
                for (index, row) in rows.iter_mut() {
                    if let Some(new) = retried.get(index) {
                        *row = new.clone();
                    }
                }
            }
        }
        self.associate(intents, rows, calls).await
    }

    /// One batch upsert; a row per input.
    async fn upsert(
        &self,
        intents: &[TaskIntent],
        inputs: &[(usize, Json)],
        calls: &mut PushCalls,
    ) -> Result<Vec<(usize, Row)>, HubspotError> {
        let config = self.config();
        let key = &config.mapping.task.key;
        let request = ApiRequest::post(
            format!(
                "{}/batch/upsert",
                self.objects_path(&config.mapping.objects.tasks)
            ),
            json!({"inputs": inputs.iter().map(|(_, input)| input.clone()).collect::<Vec<_>>()}),
        );
        calls.upserts += 1;
        let answer: BatchAnswer = match self.send(&request).await {
            Ok(response) => response.json("task batch upsert")?,
            Err(HubspotError::Config(message))
                if message.contains("idProperty") || message.contains("unique property") =>
            {
                return Err(HubspotError::Config(format!(
                    "the task property {key} (connectors.hubspot.mapping.task.key) does not exist \
                     or does not require unique values, so tasks cannot be upserted by key; create \
                     it with `refbridge check-config --connect --create-task-key`, or in HubSpot: \
                     Settings → Properties → Task properties → create \"{key}\" (single-line text) \
                     with \"Require unique values\" on ({message})"
                )));
            }
            Err(error) => return Err(error),
        };
        let mut stored: HashMap<String, Row> = HashMap::new();
        for result in answer.results {
            let Some(Json::String(value)) = result.properties.get(key) else {
                continue;
            };
            stored.insert(
                value.clone(),
                Row::Stored {
                    task_id: result.id,
                    created: result.new.unwrap_or(false),
                },
            );
        }
        let mut refused: HashMap<String, (String, String, bool)> = HashMap::new();
        for error in &answer.errors {
            let retryable = RETRYABLE_CATEGORIES.contains(&error.category.as_str());
            for id in error.ids() {
                refused.insert(id, (error.code(), error.message.clone(), retryable));
            }
        }
        Ok(inputs
            .iter()
            .map(|(index, _)| {
                let intent_key = intents[*index].key.clone();
                let row = match (stored.remove(&intent_key), refused.remove(&intent_key)) {
                    (Some(row), _) => row,
                    (None, Some((code, message, true))) => Row::Done(PushResult::Retryable {
                        key: intent_key,
                        reason: format!("{code}: {message}"),
                    }),
                    (None, Some((code, message, false))) => Row::Done(PushResult::Permanent {
                        key: intent_key,
                        code,
                        message,
                    }),
                    (None, None) => Row::Done(PushResult::Retryable {
                        key: intent_key,
                        reason: "the batch answer did not mention this row".to_string(),
                    }),
                };
                (*index, row)
            })
            .collect())
    }

    /// Associates stored tasks with their `about_id`: as companies, then deals, then contacts.
    async fn associate(
        &self,
        intents: &[TaskIntent],
        rows: Vec<(usize, Row)>,
        calls: &mut PushCalls,
    ) -> Result<Vec<(usize, PushResult)>, HubspotError> {
        let tasks = self.config().mapping.objects.tasks.clone();
        let mut pending: Vec<(usize, String)> = rows
            .iter()
            .filter_map(|(index, row)| match row {
                Row::Stored { task_id, .. } => Some((*index, task_id.clone())),
                Row::Done(_) => None,
            })
            .collect();
        let mut linked: HashSet<usize> = HashSet::new();
        for target in ASSOCIATION_TARGETS {
            if pending.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for chunk in pending.chunks(BATCH_SIZE) {
                let inputs: Vec<Json> = chunk
                    .iter()
                    .map(|(index, task_id)| {
                        json!({"from": {"id": task_id}, "to": {"id": intents[*index].about_id}})
                    })
                    .collect();
                let request = ApiRequest::post(
                    format!("/crm/v4/associations/{tasks}/{target}/batch/associate/default"),
                    json!({ "inputs": inputs }),
                );
                calls.associations += 1;
                let done: HashSet<(String, String)> = match self.send(&request).await {
                    Ok(response) => association_pairs(&response.body),
                    // Every pair refused (none of the ids is a `target`): try the next type.
                    Err(HubspotError::Rejected { .. }) => HashSet::new(),
                    Err(error) => return Err(error),
                };
                for (index, task_id) in chunk {
                    let about = intents[*index].about_id.trim().to_string();
                    if done.contains(&(task_id.clone(), about)) {
                        linked.insert(*index);
                    } else {
                        next.push((*index, task_id.clone()));
                    }
                }
            }
            pending = next;
        }
        Ok(rows
            .into_iter()
            .map(|(index, row)| {
                let key = intents[index].key.clone();
                let result = match row {
                    Row::Done(result) => result,
                    Row::Stored { .. } if !linked.contains(&index) => PushResult::Permanent {
                        key,
                        code: "ASSOCIATION_TARGET_NOT_FOUND".to_string(),
                        message: format!(
                            "the task is stored but {} is no company, deal or contact, so it is not linked",
                            intents[index].about_id
                        ),
                    },
                    Row::Stored { task_id, created } => PushResult::Stored {
                        key,
                        task_id,
                        created,
                    },
                };
                (index, result)
            })
            .collect())
    }
}

/// The (from, to) pairs a batch association answer confirms.
fn association_pairs(body: &[u8]) -> HashSet<(String, String)> {
    #[derive(Deserialize)]
    struct End {
        id: Json,
    }
    #[derive(Deserialize)]
    struct Pair {
        from: End,
        to: End,
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        results: Vec<Pair>,
    }
    let text = |value: &Json| match value {
        Json::String(text) => Some(text.trim().to_string()),
        Json::Number(number) => Some(number.to_string()),
        _ => None,
    };
    serde_json::from_slice::<Answer>(body)
        .map(|answer| {
            answer
                .results
                .iter()
                .filter_map(|pair| Some((text(&pair.from.id)?, text(&pair.to.id)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A failed batch: a configuration error stops the push, anything else is a reason to retry.
fn batch_failure(error: HubspotError) -> Result<String, PushError> {
    match error {
        HubspotError::Config(_) | HubspotError::Auth(_) => Err(PushError::Config(error)),
        other => {
            tracing::warn!(error = %other, "a task batch was not stored; it will be sent again");
            Ok(other.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_errors_name_their_rows_and_codes_without_panicking() {
        let answer: BatchAnswer = serde_json::from_str(
            r#"{"status":"COMPLETE","results":[{"id":"27","properties":{"refbridge_key":"a"},"new":true}],
                "numErrors":2,"errors":[
                {"status":"error","category":"VALIDATION_ERROR","message":"bad","context":{"ids":["b"]},
                 "errors":[{"code":"INVALID_OPTION","message":"x"}]},
                {"category":"INTERNAL_ERROR","context":{}}]}"#,
        )
        .unwrap();
        assert_eq!(answer.results[0].new, Some(true));
        assert_eq!(answer.errors[0].ids(), ["b"]);
        assert_eq!(answer.errors[0].code(), "INVALID_OPTION");
        assert!(answer.errors[1].ids().is_empty());
        assert_eq!(answer.errors[1].code(), "INTERNAL_ERROR");
        assert!(serde_json::from_str::<BatchAnswer>("[1]").is_err());
    }

    #[test]
    fn association_answers_are_read_as_pairs() {
        let pairs = association_pairs(
            br#"{"status":"COMPLETE","results":[{"from":{"id":"4000000001"},"to":{"id":2000000003}}]}"#,
        );
        assert!(pairs.contains(&("4000000001".to_string(), "2000000003".to_string())));
        assert!(association_pairs(b"garbage").is_empty());
    }

    #[test]
    fn long_texts_are_cut_on_character_boundaries() {
        assert_eq!(truncated("héllo", 2), "hé");
    }
}
