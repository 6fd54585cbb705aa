//! The REST API's error answer: an HTTP status and a JSON array of `{message, errorCode, fields?}`.
//!
//! Every data endpoint fails through [`ApiError`] so that no error body ever takes another shape.
//! OAuth errors (`{"error", "error_description"}`) are the one exception and live in
//! `super::oauth`.

use axum::http::StatusCode;
use serde_json::json;

/// One entry of an error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEntry {
    pub message: String,
    pub error_code: String,
    pub fields: Option<Vec<String>>,
}

/// A failed request, as Salesforce answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}", self.entries.first().map(|entry| entry.error_code.as_str()).unwrap_or(""))]
pub struct ApiError {
    pub status: StatusCode,
    pub entries: Vec<ErrorEntry>,
}

impl ApiError {
    pub fn new(status: StatusCode, error_code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            entries: vec![ErrorEntry {
                message: message.into(),
                error_code: error_code.to_string(),
                fields: None,
            }],
        }
    }

    pub fn with_fields(mut self, fields: Vec<String>) -> ApiError {
        if let Some(entry) = self.entries.first_mut() {
            entry.fields = Some(fields);
        }
        self
    }

    pub fn bad_request(error_code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error_code, message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        )
    }

    pub fn method_not_allowed(method: &str, allowed: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
        )
    }

    pub fn invalid_session() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        )
    }

    pub fn json_parser(detail: impl std::fmt::Display) -> ApiError {
        ApiError::bad_request("JSON_PARSER_ERROR", format!("{detail}"))
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        let entries: Vec<serde_json::Value> = self
            .entries
            .iter()
            .map(|entry| {
                let mut value = json!({"message": entry.message, "errorCode": entry.error_code});
                if let (Some(fields), Some(map)) = (&entry.fields, value.as_object_mut()) {
                    map.insert("fields".to_string(), json!(fields));
                }
                value
            })
            .collect();
        serde_json::Value::Array(entries).to_string()
    }
}
