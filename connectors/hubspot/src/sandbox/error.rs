//! HubSpot's error bodies: `{status:"error", message, correlationId, category, context?, errors?}`,
//! and the correlation ids (UUID-shaped) that every error carries.
//!
//! Handlers return [`ApiError`]; nothing here knows about routes or state. Messages name
//! properties, ids and limits — never the values of patient fields, of which the sandbox has none.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// A fresh UUID-shaped correlation id (version-4 layout, derived from a process-wide counter).
pub(crate) fn correlation_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0x0193_5A1D_7E00_0000);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = mix(n);
    let b = mix(a ^ 0xA5A5_A5A5_5A5A_5A5A);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a & 0x0fff) as u16,
        ((b >> 48) as u16 & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An error response in HubSpot's shape.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub category: &'static str,
    pub message: String,
    pub context: Option<Value>,
    pub errors: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        category: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            category,
            message: message.into(),
            context: None,
            errors: None,
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub(crate) fn not_found(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            "Object not found.  objectId are usually numeric.",
        )
        .with_context(json!({ "id": [id] }))
    }

    pub(crate) fn resource_not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            "resource not found",
        )
    }

    pub(crate) fn unknown_object_type(text: &str) -> ApiError {
        ApiError::validation(format!("Unable to infer object type from: {text}"))
    }

    /// The body could not be read as JSON.
    pub(crate) fn bad_json(error: &serde_json::Error) -> ApiError {
        ApiError::validation(format!(
            "Invalid input JSON on line {}, column {}: {}",
            error.line(),
            error.column(),
            error
        ))
    }

    pub(crate) fn with_context(mut self, context: Value) -> ApiError {
        self.context = Some(context);
        self
    }

    pub(crate) fn with_errors(mut self, errors: Value) -> ApiError {
        self.errors = Some(errors);
        self
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("status".into(), json!("error"));
        body.insert("message".into(), json!(self.message));
        body.insert("correlationId".into(), json!(correlation_id()));
        body.insert("category".into(), json!(self.category));
        if let Some(context) = &self.context {
            body.insert("context".into(), context.clone());
        }
        if let Some(errors) = &self.errors {
            body.insert("errors".into(), errors.clone());
        }
        Value::Object(body)
    }

    /// The entry of a batch response's `errors` list (HubSpot's `StandardError`).
    pub(crate) fn standard_error(&self) -> Value {
        json!({
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": self.context.clone().unwrap_or_else(|| json!({})),
            "errors": self.errors.clone().unwrap_or_else(|| json!([])),
            "links": {},
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body())
    }
}

/// A JSON response with HubSpot's content type.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json;charset=utf-8",
        )],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_look_like_uuids_and_differ() {
        let first = correlation_id();
        let second = correlation_id();
        assert_ne!(first, second);
        let parts: Vec<&str> = first.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(first.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}
