//! Pushing task intents: upsert by the external-id field through sObject Collections, 200 rows a
//! call, `allOrNone: false`, one result per intent in the intents' order.
//!
//! The intent's key is the external id, so sending a row twice (a retry after a reset, a rerun
//! after a crash) updates the same Task instead of creating another. A row refused because its
//! owner is inactive is sent once more with `queue_owner_id` as owner. A whole batch that fails
//! in transport (after the policy's retries) or on quota makes every row of it (and of the
//! batches not sent) `Retryable`: nothing is lost and nothing is counted as stored. Only a
//! configuration failure (refused login, unknown field) is an error of the whole push. This
//! module never reads or writes the ledger and never logs a task's subject or description.

use refbridge_model::crm::{PushResult, TaskIntent, TaskKind, TaskPriority};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::error::SalesforceError;
use crate::http::{ApiRequest, SalesforceClient};

/// Rows per Collections call (Salesforce's limit).
pub const BATCH_SIZE: usize = 200;
const SUBJECT_MAX_CHARS: usize = 255;
const DESCRIPTION_MAX_CHARS: usize = 32_000;
/// Per-row error codes worth sending again next run.
const RETRYABLE_ROW_CODES: &[&str] = &[
    "UNABLE_TO_LOCK_ROW",
    "SERVER_UNAVAILABLE",
    "REQUEST_RUNNING_TOO_LONG",
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
];
const INACTIVE_OWNER: &str = "INACTIVE_OWNER_OR_USER";

/// Why a push as a whole could not be done.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The login, the mapping or the permissions are wrong: no row can succeed.
    #[error(transparent)]
    Config(SalesforceError),
}

/// One row of a Collections answer.
#[derive(Debug, Deserialize)]
struct RowResult {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    created: Option<bool>,
    #[serde(default)]
    errors: Vec<RowError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RowError {
    #[serde(default)]
    status_code: String,
    #[serde(default)]
    message: String,
}

fn truncated(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_string(),
        None => text.to_string(),
    }
}

impl SalesforceClient {
    /// The Task row an intent becomes; `owner` overrides the intent's owner.
    fn task_row(&self, intent: &TaskIntent, owner: Option<&str>) -> Json {
        let config = self.config();
        let mut row = Map::new();
        row.insert(
            "attributes".to_string(),
            json!({"type": config.mapping.objects.tasks}),
        );
        row.insert(
            config.mapping.task.external_id.clone(),
            Json::String(intent.key.clone()),
        );
        let owner = owner
            .map(str::to_string)
            .or_else(|| intent.owner_id.clone())
            .or_else(|| config.queue_owner_id.clone());
        if let Some(owner) = owner {
            row.insert("OwnerId".to_string(), Json::String(owner));
        }
        row.insert("WhatId".to_string(), Json::String(intent.about_id.clone()));
        row.insert(
            "Subject".to_string(),
            Json::String(truncated(&intent.subject, SUBJECT_MAX_CHARS)),
        );
        row.insert(
            "Description".to_string(),
            Json::String(truncated(&intent.description, DESCRIPTION_MAX_CHARS)),
        );
        row.insert(
            "ActivityDate".to_string(),
            Json::String(intent.due.format("%Y-%m-%d").to_string()),
        );
        let priority = match intent.priority {
            TaskPriority::High => "High",
            TaskPriority::Normal => "Normal",
            TaskPriority::Low => "Low",
        };
        row.insert("Priority".to_string(), Json::String(priority.to_string()));
        let kind = match intent.kind {
            TaskKind::Call => "Call",
            TaskKind::Email => "Email",
            TaskKind::Meeting => "Meeting",
            TaskKind::Todo => "Other",
        };
        row.insert("Type".to_string(), Json::String(kind.to_string()));
        let status = if intent.completed {
            "Completed"
        } else {
            "Not Started"
        };
        row.insert("Status".to_string(), Json::String(status.to_string()));
        Json::Object(row)
    }

    /// Upserts `intents` as Tasks; one result per intent, in order.
    pub async fn push(&self, intents: &[TaskIntent]) -> Result<Vec<PushResult>, PushError> {
        let mut results: Vec<Option<PushResult>> = vec![None; intents.len()];
        let mut stop: Option<String> = None;
        for (batch_index, batch) in intents.chunks(BATCH_SIZE).enumerate() {
            let offset = batch_index * BATCH_SIZE;
            if let Some(reason) = &stop {
                for (index, intent) in batch.iter().enumerate() {
                    results[offset + index] = Some(PushResult::Retryable {
                        key: intent.key.clone(),
                        reason: reason.clone(),
                    });
                }
                continue;
            }
            let rows: Vec<(usize, Json)> = batch
                .iter()
                .enumerate()
                .map(|(index, intent)| (offset + index, self.task_row(intent, None)))
                .collect();
            match self.upsert_rows(&rows).await {
                Ok(answers) => {
                    let mut inactive = Vec::new();
                    for ((index, _), answer) in rows.iter().zip(answers) {
                        let intent = &intents[*index];
                        match answer {
                            RowOutcome::InactiveOwner(message) => {
                                match &self.config().queue_owner_id {
                                    Some(queue) if intent.owner_id.as_deref() != Some(queue) => {
                                        inactive.push((*index, self.task_row(intent, Some(queue))));
                                    }
                                    _ => {
                                        results[*index] = Some(PushResult::Permanent {
                                            key: intent.key.clone(),
                                            code: INACTIVE_OWNER.to_string(),
                                            message: format!(
                                                "{message} (set queue_owner_id to a fallback owner)"
                                            ),
                                        });
                                    }
                                }
                            }
                            outcome => results[*index] = Some(outcome.into_result(&intent.key)),
                        }
                    }
                    if !inactive.is_empty() {
                        tracing::info!(
                            rows = inactive.len(),
                            "tasks with an inactive owner are sent again with the queue owner"
                        );
                        match self.upsert_rows(&inactive).await {
                            Ok(answers) => {
                                for ((index, _), answer) in inactive.iter().zip(answers) {
                                    results[*index] =
                                        Some(answer.into_result(&intents[*index].key));
                                }
                            }
                            Err(error) => {
                                let reason = self.batch_failure(error)?;
                                for (index, _) in &inactive {
                                    results[*index] = Some(PushResult::Retryable {
                                        key: intents[*index].key.clone(),
                                        reason: reason.clone(),
                                    });
                                }
                            }
                        }
                    }
                }
                Err(error) => {
                    let quota = error.is_quota();
                    let reason = self.batch_failure(error)?;
                    for (index, _) in &rows {
                        results[*index] = Some(PushResult::Retryable {
                            key: intents[*index].key.clone(),
                            reason: reason.clone(),
                        });
                    }
                    if quota {
                        stop = Some(reason);
                    }
                }
            }
        }
        Ok(results
            .into_iter()
            .zip(intents)
            .map(|(result, intent)| {
                result.unwrap_or_else(|| PushResult::Retryable {
                    key: intent.key.clone(),
                    reason: "no answer for this row".to_string(),
                })
            })
            .collect())
    }

    /// A failed batch: a configuration error stops the push, anything else is a reason to retry.
    fn batch_failure(&self, error: SalesforceError) -> Result<String, PushError> {
        match error {
            SalesforceError::Config(_) | SalesforceError::Auth(_) => Err(PushError::Config(error)),
            other => {
                tracing::warn!(error = %other, "a task batch was not stored; it will be sent again");
                Ok(other.to_string())
            }
        }
    }

    /// One Collections upsert; answers in request order.
    async fn upsert_rows(
        &self,
        rows: &[(usize, Json)],
    ) -> Result<Vec<RowOutcome>, SalesforceError> {
        let config = self.config();
        let path = self.data_path(&format!(
            "composite/sobjects/{}/{}",
            config.mapping.objects.tasks, config.mapping.task.external_id
        ));
        let request = ApiRequest {
            method: reqwest::Method::PATCH,
            path,
            query: Vec::new(),
            body: Some(json!({
                "allOrNone": false,
                "records": rows.iter().map(|(_, row)| row.clone()).collect::<Vec<_>>(),
            })),
            batch_size: None,
            authenticated: true,
        };
        let response = self.send(&request).await?;
        let answers: Vec<RowResult> = response.json("task upsert")?;
        if answers.len() != rows.len() {
            return Err(SalesforceError::Protocol {
                request: "task upsert".to_string(),
                detail: format!("{} results for {} rows", answers.len(), rows.len()),
            });
        }
        Ok(answers.into_iter().map(RowOutcome::from).collect())
    }
}

/// One row's answer, classified.
#[derive(Debug)]
enum RowOutcome {
    Stored { task_id: String, created: bool },
    InactiveOwner(String),
    Retryable(String),
    Permanent { code: String, message: String },
}

impl From<RowResult> for RowOutcome {
    fn from(result: RowResult) -> RowOutcome {
        if result.success {
            return match result.id {
                Some(task_id) if !task_id.is_empty() => RowOutcome::Stored {
                    task_id,
                    created: result.created.unwrap_or(false),
                },
                _ => RowOutcome::Retryable("stored without an id in the answer".to_string()),
            };
        }
        let Some(error) = result.errors.into_iter().next() else {
            return RowOutcome::Retryable("refused without an error".to_string());
        };
        if error.status_code == INACTIVE_OWNER {
            RowOutcome::InactiveOwner(error.message)
        } else if RETRYABLE_ROW_CODES.contains(&error.status_code.as_str()) {
            RowOutcome::Retryable(format!("{}: {}", error.status_code, error.message))
        } else {
            RowOutcome::Permanent {
                code: error.status_code,
                message: error.message,
            }
        }
    }
}

impl RowOutcome {
    fn into_result(self, key: &str) -> PushResult {
        let key = key.to_string();
        match self {
            RowOutcome::Stored { task_id, created } => PushResult::Stored {
                key,
                task_id,
                created,
            },
            RowOutcome::Retryable(reason) => PushResult::Retryable { key, reason },
            RowOutcome::InactiveOwner(message) => PushResult::Permanent {
                key,
                code: INACTIVE_OWNER.to_string(),
                message,
            },
            RowOutcome::Permanent { code, message } => PushResult::Permanent { key, code, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_answers_become_outcomes_without_panicking() {
        let answers: Vec<RowResult> = serde_json::from_str(
            r#"[{"id":"00T1","success":true,"errors":[],"created":true},
                {"success":false,"errors":[{"statusCode":"INACTIVE_OWNER_OR_USER","message":"inactive","fields":[]}]},
                {"success":false,"errors":[{"statusCode":"UNABLE_TO_LOCK_ROW","message":"locked"}]},
                {"success":false,"errors":[{"statusCode":"STRING_TOO_LONG","message":"long"}]},
                {"success":false},
                {"success":true}]"#,
        )
        .unwrap();
        let outcomes: Vec<RowOutcome> = answers.into_iter().map(RowOutcome::from).collect();
        assert!(
            matches!(&outcomes[0], RowOutcome::Stored { task_id, created: true } if task_id == "00T1")
        );
        assert!(matches!(outcomes[1], RowOutcome::InactiveOwner(_)));
        assert!(matches!(outcomes[2], RowOutcome::Retryable(_)));
        assert!(
            matches!(&outcomes[3], RowOutcome::Permanent { code, .. } if code == "STRING_TOO_LONG")
        );
        assert!(matches!(outcomes[4], RowOutcome::Retryable(_)));
        assert!(matches!(outcomes[5], RowOutcome::Retryable(_)));
    }

    #[test]
    fn long_texts_are_cut_on_character_boundaries() {
        assert_eq!(truncated("héllo", 2), "hé");
        assert_eq!(truncated("hi", 255), "hi");
    }
}
