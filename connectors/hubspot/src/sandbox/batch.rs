//! `POST /crm/v3/objects/{type}/batch/{create|read|update|upsert|archive}`: at most 100 inputs,
//! each handled on its own under one write lock. All succeed → 200 (201 for create) with
//! `{status:"COMPLETE", results, startedAt, completedAt}`; some fail → 207 with `numErrors` and
//! `errors`; all fail → the first failure's status with every error listed.
//!
//! Upsert resolves `id` through `idProperty`, which must be a property with unique values; a
//! result says `new: true` when the record was created. Nothing here bypasses store validation.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::error::{ApiError, json_response};
use super::objects::Query;
use super::schema::ObjectType;
use super::server::{AppState, no_content, object_type, parse_json};
use super::store::{Selection, Store, WriteError, id_text, iso_ms, now_ms};

/// HubSpot's batch size limit.
pub(crate) const MAX_INPUTS: usize = 100;

/// `POST /crm/v3/objects/{type}/batch/{action}`.
pub(crate) async fn batch(
    shared: AppState,
    Path((type_text, action)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let object_type = object_type(&type_text)?;
    if !matches!(
        action.as_str(),
        "create" | "read" | "update" | "upsert" | "archive"
    ) {
        return Err(ApiError::resource_not_found());
    }
    let body = parse_json(&body)?;
    let inputs = body
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::validation("`inputs` must be a list"))?;
    if inputs.len() > MAX_INPUTS {
        return Err(ApiError::validation(format!(
            "Batch input size {} exceeds the limit of {MAX_INPUTS} inputs",
            inputs.len()
        ))
        .with_context(json!({ "inputs": [inputs.len().to_string()] })));
    }
    let query = Query::parse(raw.as_deref());
    let started = iso_ms(now_ms());
    let outcome = match action.as_str() {
        "read" => read(
            &shared.read(),
            object_type,
            &body,
            inputs,
            query.flag("archived"),
        ),
        "create" => create(&mut shared.write(), object_type, inputs),
        "update" => update(&mut shared.write(), object_type, inputs)?,
        "upsert" => upsert(&mut shared.write(), object_type, inputs)?,
        _ => {
            let mut store = shared.write();
            let now = now_ms();
            for input in inputs {
                if let Some(id) = input
                    .get("id")
                    .and_then(id_text)
                    .and_then(|id| id.trim().parse::<u64>().ok())
                {
                    store.of_mut(object_type).archive(id, now);
                }
            }
            return Ok(no_content());
        }
    };
    let success = if action == "create" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(outcome.respond(success, &started, action == "read"))
}

#[derive(Debug, Default)]
struct Outcome {
    results: Vec<Value>,
    errors: Vec<ApiError>,
}

impl Outcome {
    fn respond(self, success: StatusCode, started: &str, partial_when_all_fail: bool) -> Response {
        let completed = iso_ms(now_ms());
        if self.errors.is_empty() {
            return json_response(
                success,
                &json!({"status": "COMPLETE", "results": self.results, "startedAt": started, "completedAt": completed}),
            );
        }
        let errors: Vec<Value> = self.errors.iter().map(ApiError::standard_error).collect();
        if self.results.is_empty() && !partial_when_all_fail {
            let mut first = self.errors[0].clone();
            first.errors = Some(Value::Array(errors));
            return first.into_response();
        }
        json_response(
            StatusCode::MULTI_STATUS,
            &json!({
                "status": "COMPLETE",
                "results": self.results,
                "numErrors": errors.len(),
                "errors": errors,
                "startedAt": started,
                "completedAt": completed,
            }),
        )
    }
}

fn input_properties(input: &Value) -> Result<Map<String, Value>, ApiError> {
    match input.get("properties") {
        Some(Value::Object(properties)) => Ok(properties.clone()),
        None | Some(Value::Null) => Ok(Map::new()),
        Some(_) => Err(ApiError::validation(
            "`properties` must be an object of property names to values",
        )),
    }
}

fn with_ids(error: ApiError, ids: &[String]) -> ApiError {
    if error.context.is_some() {
        error
    } else {
        error.with_context(json!({ "ids": ids }))
    }
}

fn write_error(error: WriteError, ids: &[String]) -> ApiError {
    with_ids(error.into_api_error(), ids)
}

fn read(
    store: &Store,
    object_type: ObjectType,
    body: &Value,
    inputs: &[Value],
    archived: bool,
) -> Outcome {
    let types = store.of(object_type);
    let names: Vec<String> = body
        .get("properties")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let selection = Selection::from_names(&names);
    let id_property = body.get("idProperty").and_then(Value::as_str);
    let mut outcome = Outcome::default();
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for input in inputs {
        let id = input.get("id").and_then(id_text).unwrap_or_default();
        match types
            .resolve(&id, id_property, archived)
            .and_then(|found| types.records.get(&found))
        {
            Some(record) if seen.insert(record.id) => {
                outcome.results.push(types.render(record, &selection))
            }
            Some(_) => {}
            None => missing.push(id),
        }
    }
    if !missing.is_empty() {
        outcome.errors.push(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "OBJECT_NOT_FOUND",
                format!(
                    "Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.",
                    object_type.upper_singular()
                ),
            )
            .with_context(json!({ "ids": missing })),
        );
    }
    outcome
}

fn create(store: &mut Store, object_type: ObjectType, inputs: &[Value]) -> Outcome {
    let mut outcome = Outcome::default();
    let now = now_ms();
    for (index, input) in inputs.iter().enumerate() {
        let index_context = |error: ApiError| {
            if error.context.is_some() {
                error
            } else {
                error.with_context(json!({ "index": [index.to_string()] }))
            }
        };
        let properties = match input_properties(input) {
            Ok(properties) => properties,
            Err(error) => {
                outcome.errors.push(index_context(error));
                continue;
            }
        };
        let associations = input
            .get("associations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match store.create(object_type, &properties, &associations, now) {
            Ok(id) => {
                let types = store.of(object_type);
                if let Some(record) = types.live(id) {
                    outcome
                        .results
                        .push(types.render(record, &Selection::Written));
                }
            }
            Err(error) => outcome.errors.push(index_context(error.into_api_error())),
        }
    }
    outcome
}

fn duplicates(ids: &[String]) -> Option<ApiError> {
    let mut seen = HashSet::new();
    let repeated: Vec<&String> = ids.iter().filter(|id| !seen.insert(id.as_str())).collect();
    (!repeated.is_empty()).then(|| {
        ApiError::validation(format!(
            "Duplicate IDs found in batch input: [{}]. IDs must be unique",
            repeated
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn update(
    store: &mut Store,
    object_type: ObjectType,
    inputs: &[Value],
) -> Result<Outcome, ApiError> {
    let ids: Vec<String> = inputs
        .iter()
        .map(|i| i.get("id").and_then(id_text).unwrap_or_default())
        .collect();
    if let Some(error) = duplicates(&ids) {
        return Err(error);
    }
    let mut outcome = Outcome::default();
    let now = now_ms();
    for (input, id) in inputs.iter().zip(&ids) {
        let id_property = input.get("idProperty").and_then(Value::as_str);
        let Some(found) = store.of(object_type).resolve(id, id_property, false) else {
            outcome
                .errors
                .push(ApiError::not_found(id).with_context(json!({ "ids": [id] })));
            continue;
        };
        let properties = match input_properties(input) {
            Ok(properties) => properties,
            Err(error) => {
                outcome
                    .errors
                    .push(with_ids(error, std::slice::from_ref(id)));
                continue;
            }
        };
        match store.update(object_type, found, &properties, now) {
            Ok(()) => {
                let types = store.of(object_type);
                if let Some(record) = types.live(found) {
                    outcome
                        .results
                        .push(types.render(record, &Selection::Written));
                }
            }
            Err(error) => outcome
                .errors
                .push(write_error(error, std::slice::from_ref(id))),
        }
    }
    Ok(outcome)
}

fn upsert(
    store: &mut Store,
    object_type: ObjectType,
    inputs: &[Value],
) -> Result<Outcome, ApiError> {
    let ids: Vec<String> = inputs
        .iter()
        .map(|i| i.get("id").and_then(id_text).unwrap_or_default())
        .collect();
    for (input, id) in inputs.iter().zip(&ids) {
        let id_property = input
            .get("idProperty")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let types = store.of(object_type);
        match types.property(id_property) {
            Some((index, _)) if types.is_unique(index) => {}
            Some(_) => {
                return Err(ApiError::validation(format!(
                    "{id_property} is not a unique property: idProperty must name a property with hasUniqueValue=true"
                ))
                .with_context(json!({ "idProperty": [id_property] })));
            }
            None => {
                return Err(ApiError::validation(format!(
                    "idProperty {id_property:?} does not exist on {object_type}; upsert needs a property with unique values"
                ))
                .with_context(json!({ "idProperty": [id_property] })));
            }
        }
        if id.trim().is_empty() {
            return Err(ApiError::validation(
                "Every upsert input needs an `id` (the value of its idProperty)",
            ));
        }
    }
    if let Some(error) = duplicates(&ids) {
        return Err(error);
    }
    let mut outcome = Outcome::default();
    let now = now_ms();
    for (input, id) in inputs.iter().zip(&ids) {
        let id_property = input
            .get("idProperty")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut properties = match input_properties(input) {
            Ok(properties) => properties,
            Err(error) => {
                outcome
                    .errors
                    .push(with_ids(error, std::slice::from_ref(id)));
                continue;
            }
        };
        let existing = store.of(object_type).resolve(id, Some(id_property), false);
        let written = match existing {
            Some(found) => store
                .update(object_type, found, &properties, now)
                .map(|()| (found, false)),
            None => {
                properties.insert(id_property.to_string(), Value::String(id.clone()));
                store
                    .create(object_type, &properties, &[], now)
                    .map(|created| (created, true))
            }
        };
        match written {
            Ok((record_id, new)) => {
                let types = store.of(object_type);
                if let Some(record) = types.live(record_id) {
                    let mut object = types.render(record, &Selection::Written);
                    object["new"] = json!(new);
                    outcome.results.push(object);
                }
            }
            Err(error) => outcome
                .errors
                .push(write_error(error, std::slice::from_ref(id))),
        }
    }
    Ok(outcome)
}
