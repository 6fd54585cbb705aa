//! Every write: single-record create/update/upsert/delete and sObject Collections, which share one
//! validation path.
//!
//! A request is planned first — each record converted, defaulted, derived and validated against
//! the org and against the other records of the same request — and applied afterwards, under the
//! one write lock the caller holds. So `allOrNone: true` never leaves half a request behind, and
//! every record written by one request shares one `SystemModstamp`, as bulk writes do in
//! Salesforce. Failures are per record (`{statusCode, message, fields}`); only a body that is not
//! a request at all fails the whole call.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value as Json, json};

use super::error::ApiError;
use super::schema::{FieldDef, FieldType, ObjectType, STAGES, system};
use super::store::{Org, Value, normalize_id, parse_date_text, parse_datetime_text};

/// Most records one Collections call may carry.
pub const MAX_COLLECTION_RECORDS: usize = 200;
/// The longest event Salesforce accepts: 14 days.
const MAX_EVENT_MINUTES: f64 = 14.0 * 24.0 * 60.0;

/// Why one record was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub status_code: String,
    pub message: String,
    pub fields: Vec<String>,
}

impl RecordError {
    fn new(status_code: &str, message: impl Into<String>, fields: &[&str]) -> RecordError {
        RecordError {
            status_code: status_code.to_string(),
            message: message.into(),
            fields: fields.iter().map(|field| field.to_string()).collect(),
        }
    }

    /// The same failure as the single-record endpoints answer it (HTTP 400, `errorCode`).
    pub fn into_api_error(self) -> ApiError {
        let fields = self.fields;
        ApiError::bad_request(&self.status_code, self.message).with_fields(fields)
    }
}

/// The outcome for one record, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordResult {
    pub id: Option<String>,
    pub errors: Vec<RecordError>,
    /// Only upserts say whether they created.
    pub created: Option<bool>,
}

impl RecordResult {
    pub fn success(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn to_json(&self) -> Json {
        let mut map = Map::new();
        if let Some(id) = &self.id {
            map.insert("id".to_string(), json!(id));
        }
        map.insert("success".to_string(), json!(self.success()));
        map.insert(
            "errors".to_string(),
            Json::Array(
                self.errors
                    .iter()
                    .map(|error| json!({"statusCode": error.status_code, "message": error.message, "fields": error.fields}))
                    .collect(),
            ),
        );
        if let Some(created) = self.created {
            map.insert("created".to_string(), json!(created));
        }
        Json::Object(map)
    }
}

/// What a request does to each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    /// Upsert on this field (an external id, or `Id`).
    Upsert(usize),
}

/// A record ready to be written: its full values after defaults and derivations.
#[derive(Debug)]
enum Planned {
    Create(ObjectType, Vec<Value>),
    Update(ObjectType, u32, Vec<Value>),
}

/// Who writes and when: one request, one instant.
#[derive(Debug, Clone)]
pub struct WriteContext<'a> {
    pub user_id: &'a str,
    pub now: DateTime<Utc>,
}

/// Checks `field` of `object` can be an upsert key; answers the Salesforce error otherwise.
pub fn upsert_field(object: ObjectType, name: &str) -> Result<usize, ApiError> {
    match object.field_index(name) {
        Some(index) if object.field(index).external_id || index == system::ID => Ok(index),
        Some(index) => Err(ApiError::bad_request(
            "INVALID_FIELD",
            format!(
                "Field name provided, {} is not an External ID or indexed field for {}",
                object.field(index).name,
                object.name()
            ),
        )),
        None => Err(ApiError::not_found().with_message(format!(
            "Provided external ID field does not exist or is not accessible: {name}"
        ))),
    }
}

impl ApiError {
    fn with_message(mut self, message: String) -> ApiError {
        if let Some(entry) = self.entries.first_mut() {
            entry.message = message;
        }
        self
    }
}

/// Writes `records` (JSON objects) and answers one result per record, in order.
///
/// `object` is the type from the URL (single-record endpoints and upserts); Collections create and
/// update read each record's `attributes.type` instead.
pub fn write(
    org: &mut Org,
    object: Option<ObjectType>,
    operation: Operation,
    records: &[Json],
    all_or_none: bool,
    context: &WriteContext<'_>,
) -> Vec<RecordResult> {
    let duplicates = duplicate_keys(object, operation, records);
    let mut claimed: HashSet<(ObjectType, usize, String)> = HashSet::new();
    let mut updated_rows: HashSet<(ObjectType, u32)> = HashSet::new();
    let mut plans: Vec<Result<Planned, RecordError>> = Vec::with_capacity(records.len());
    for (position, record) in records.iter().enumerate() {
        let plan = if duplicates.contains(&position) {
            let (field, value) = match (object, operation) {
                (Some(object), Operation::Upsert(field)) => (
                    object.field(field).name,
                    external_value(record, object, field),
                ),
                _ => ("Id", None),
            };
            Err(RecordError::new(
                "DUPLICATE_EXTERNAL_ID",
                format!(
                    "Duplicate external id specified: {}",
                    value.unwrap_or_default()
                ),
                &[field],
            ))
        } else {
            plan_record(
                org,
                object,
                operation,
                record,
                context,
                &mut claimed,
                &mut updated_rows,
            )
        };
        plans.push(plan);
    }
    let failed = plans.iter().any(Result::is_err);
    if all_or_none && failed {
        return plans
            .into_iter()
            .map(|plan| match plan {
                Err(error) => RecordResult {
                    id: None,
                    errors: vec![error],
                    created: None,
                },
                Ok(planned) => RecordResult {
                    id: match &planned {
                        Planned::Update(_, _, values) => values[system::ID].as_text().map(str::to_string),
                        Planned::Create(..) => None,
                    },
                    errors: vec![RecordError::new(
                        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                        "Record rolled back because not all records were valid and the request was using AllOrNone header",
                        &[],
                    )],
                    created: None,
                },
            })
            .map(|mut result| {
                if matches!(operation, Operation::Upsert(_)) {
                    result.created = Some(false);
                }
                result
            })
            .collect();
    }
    plans
        .into_iter()
        .map(|plan| match plan {
            Err(error) => RecordResult {
                id: None,
                errors: vec![error],
                created: matches!(operation, Operation::Upsert(_)).then_some(false),
            },
            Ok(Planned::Create(object, mut values)) => {
                let store = org.store_mut(object);
                let id = store.next_id();
                values[system::ID] = Value::Text(id.clone());
                store.insert(values);
                RecordResult {
                    id: Some(id),
                    errors: Vec::new(),
                    created: matches!(operation, Operation::Upsert(_)).then_some(true),
                }
            }
            Ok(Planned::Update(object, row, values)) => {
                let store = org.store_mut(object);
                let id = values[system::ID].as_text().unwrap_or_default().to_string();
                let before = store
                    .get(row)
                    .map(|record| record.values.clone())
                    .unwrap_or_default();
                for (index, value) in values.into_iter().enumerate() {
                    if before.get(index) != Some(&value) {
                        store.set(row, index, value);
                    }
                }
                RecordResult {
                    id: Some(id),
                    errors: Vec::new(),
                    created: matches!(operation, Operation::Upsert(_)).then_some(false),
                }
            }
        })
        .collect()
}

/// Marks each id deleted; one result per id, in order.
pub fn delete(
    org: &mut Org,
    ids: &[String],
    all_or_none: bool,
    context: &WriteContext<'_>,
) -> Vec<RecordResult> {
    let mut seen = HashSet::new();
    let plans: Vec<Result<(ObjectType, u32, String), RecordError>> = ids
        .iter()
        .map(|text| {
            let Some(id) = normalize_id(text) else {
                return Err(RecordError::new(
                    "MALFORMED_ID",
                    format!("malformed id {text}"),
                    &[],
                ));
            };
            let Some((object, row, record)) = org.find(&id) else {
                return Err(RecordError::new(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    &[],
                ));
            };
            if !object.writable() {
                return Err(RecordError::new(
                    "INSUFFICIENT_ACCESS_OR_READONLY",
                    "insufficient access rights on object id",
                    &[],
                ));
            }
            if record.is_deleted() {
                return Err(RecordError::new(
                    "ENTITY_IS_DELETED",
                    "entity is deleted",
                    &[],
                ));
            }
            if !seen.insert(id.clone()) {
                return Err(RecordError::new(
                    "INVALID_FIELD",
                    format!("Duplicate id in list: {id}"),
                    &[],
                ));
            }
            Ok((object, row, id))
        })
        .collect();
    let failed = plans.iter().any(Result::is_err);
    plans
        .into_iter()
        .zip(ids)
        .map(|(plan, text)| match plan {
            Err(error) => RecordResult {
                id: None,
                errors: vec![error],
                created: None,
            },
            Ok((_, _, id)) if all_or_none && failed => RecordResult {
                id: Some(id),
                errors: vec![RecordError::new(
                    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all records were valid and the request was using AllOrNone header",
                    &[],
                )],
                created: None,
            },
            Ok((object, row, id)) => {
                org.store_mut(object).delete(row, context.now, context.user_id);
                let _ = text;
                RecordResult {
                    id: Some(id),
                    errors: Vec::new(),
                    created: None,
                }
            }
        })
        .collect()
}

/// The upsert key of `record`, as text.
fn external_value(record: &Json, object: ObjectType, field: usize) -> Option<String> {
    let name = object.field(field).name;
    let map = record.as_object()?;
    let value = map
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)?;
    match value {
        Json::String(text) if !text.is_empty() => Some(text.clone()),
        Json::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Positions of records that share an upsert key (or an update id) with another record.
fn duplicate_keys(
    object: Option<ObjectType>,
    operation: Operation,
    records: &[Json],
) -> HashSet<usize> {
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (position, record) in records.iter().enumerate() {
        let key = match (object, operation) {
            (Some(object), Operation::Upsert(field)) => {
                external_value(record, object, field).map(|value| {
                    if field == system::ID {
                        normalize_id(&value).unwrap_or(value)
                    } else {
                        value.to_lowercase()
                    }
                })
            }
            _ => None,
        };
        if let Some(key) = key {
            by_key.entry(key).or_default().push(position);
        }
    }
    by_key
        .into_values()
        .filter(|positions| positions.len() > 1)
        .flatten()
        .collect()
}

/// Plans one record: type, target row, field values, defaults, derivations, validation.
fn plan_record(
    org: &Org,
    url_object: Option<ObjectType>,
    operation: Operation,
    record: &Json,
    context: &WriteContext<'_>,
    claimed: &mut HashSet<(ObjectType, usize, String)>,
    updated_rows: &mut HashSet<(ObjectType, u32)>,
) -> Result<Planned, RecordError> {
    let Some(map) = record.as_object() else {
        return Err(RecordError::new(
            "JSON_PARSER_ERROR",
            "Each record must be a JSON object",
            &[],
        ));
    };
    let declared = map
        .get("attributes")
        .and_then(|attributes| attributes.get("type"))
        .and_then(Json::as_str);
    let object = match (url_object, declared) {
        (Some(object), Some(declared)) if !object.name().eq_ignore_ascii_case(declared) => {
            return Err(RecordError::new(
                "INVALID_TYPE",
                format!(
                    "Record type {declared} does not match the type {} of the request",
                    object.name()
                ),
                &[],
            ));
        }
        (Some(object), _) => object,
        (None, Some(declared)) => ObjectType::from_name(declared).ok_or_else(|| {
            RecordError::new(
                "INVALID_TYPE",
                format!("sObject type '{declared}' is not supported."),
                &[],
            )
        })?,
        (None, None) => {
            return Err(RecordError::new(
                "INVALID_TYPE",
                "No SObject Type defined in the attributes of the record",
                &[],
            ));
        }
    };
    if !object.writable() {
        return Err(RecordError::new(
            "INSUFFICIENT_ACCESS_OR_READONLY",
            format!(
                "insufficient access rights on object: {} records are read-only in the sandbox",
                object.name()
            ),
            &[],
        ));
    }

    // Which row, if any, the record updates.
    let target: Option<u32> = match operation {
        Operation::Create => {
            if map.keys().any(|key| key.eq_ignore_ascii_case("id")) {
                return Err(RecordError::new(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    "cannot specify Id in an insert call",
                    &["Id"],
                ));
            }
            None
        }
        Operation::Update => {
            let id = map
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case("id"))
                .and_then(|(_, value)| value.as_str())
                .ok_or_else(|| {
                    RecordError::new(
                        "MISSING_ARGUMENT",
                        "Id not specified in an update call",
                        &[],
                    )
                })?;
            Some(existing_row(org, object, id)?)
        }
        Operation::Upsert(field) => {
            let value = external_value(record, object, field).ok_or_else(|| {
                RecordError::new(
                    "MISSING_ARGUMENT",
                    format!("{} not specified", object.field(field).name),
                    &[object.field(field).name],
                )
            })?;
            if field == system::ID {
                Some(existing_row(org, object, &value)?)
            } else {
                org.store(object).row_by_unique(field, &value)
            }
        }
    };
    if let Some(row) = target
        && !updated_rows.insert((object, row))
    {
        return Err(RecordError::new(
            "INVALID_FIELD",
            format!(
                "Duplicate id in list: {}",
                org.store(object)
                    .get(row)
                    .map(|record| record.id())
                    .unwrap_or("")
            ),
            &[],
        ));
    }
    let creating = target.is_none();

    // Converted fields, permission-checked.
    let mut changes: Vec<(usize, Value)> = Vec::new();
    for (key, json_value) in map {
        if key == "attributes" || (!creating && key.eq_ignore_ascii_case("id")) {
            continue;
        }
        let Some(index) = object.field_index(key) else {
            return Err(RecordError::new(
                "INVALID_FIELD",
                format!(
                    "No such column '{key}' on sobject of type {}",
                    object.name()
                ),
                &[key.as_str()],
            ));
        };
        let field = object.field(index);
        let upsert_key = matches!(operation, Operation::Upsert(upsert) if upsert == index);
        let allowed = if creating {
            field.createable
        } else {
            field.updateable || upsert_key
        };
        if !allowed && index != system::ID {
            return Err(RecordError::new(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!(
                    "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                    field.name
                ),
                &[field.name],
            ));
        }
        if index == system::ID {
            continue;
        }
        changes.push((index, convert(field, json_value)?));
    }

    // The full record after the write.
    let before = target
        .and_then(|row| org.store(object).get(row))
        .map(|record| record.values.clone());
    let mut values = before.clone().unwrap_or_else(|| {
        let mut values = vec![Value::Null; object.fields().len()];
        values[system::IS_DELETED] = Value::Bool(false);
        values[system::CREATED_DATE] = Value::DateTime(context.now);
        values[system::CREATED_BY_ID] = Value::Text(context.user_id.to_string());
        for (index, field) in object.fields().iter().enumerate() {
            if field.defaulted_on_create {
                values[index] = match (field.name, field.field_type, field.default_value) {
                    ("OwnerId", _, _) => Value::Text(context.user_id.to_string()),
                    (_, FieldType::Boolean, default) => Value::Bool(default == Some("true")),
                    (_, _, Some(default)) => Value::Text(default.to_string()),
                    _ => Value::Null,
                };
            }
        }
        values
    });
    for (index, value) in &changes {
        let field = object.field(*index);
        // An explicit null on a defaulted field keeps (or restores) the default.
        if value.is_null() && field.defaulted_on_create && creating {
            continue;
        }
        values[*index] = value.clone();
    }
    values[system::LAST_MODIFIED_DATE] = Value::DateTime(context.now);
    values[system::LAST_MODIFIED_BY_ID] = Value::Text(context.user_id.to_string());
    values[system::SYSTEM_MODSTAMP] = Value::DateTime(context.now);
    derive(object, &mut values, before.as_deref(), context.now);

    // Validation: required fields, then each field the request set.
    let missing: Vec<&str> = object
        .fields()
        .iter()
        .enumerate()
        .filter(|(index, field)| !field.nillable && field.createable && values[*index].is_null())
        .map(|(_, field)| field.name)
        .collect();
    if !missing.is_empty() {
        return Err(RecordError::new(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", missing.join(", ")),
            &missing,
        ));
    }
    if object == ObjectType::Event {
        validate_event(&values)?;
    }
    for (index, _) in &changes {
        validate_field(org, object.field(*index), &values[*index])?;
    }

    // Unique values: against the org (other live records) and this request.
    for (index, field) in object.fields().iter().enumerate() {
        if !field.unique {
            continue;
        }
        if let Value::Text(text) = &values[index] {
            if let Some(conflict) = org
                .store(object)
                .unique_conflict(&[(index, &values[index])], target)
            {
                return Err(RecordError::new(
                    "DUPLICATE_VALUE",
                    format!(
                        "duplicate value found: {} duplicates value on record with id: {}",
                        field.name, conflict.existing_id
                    ),
                    &[field.name],
                ));
            }
            if !claimed.insert((object, index, text.to_lowercase())) {
                return Err(RecordError::new(
                    "DUPLICATE_VALUE",
                    format!(
                        "duplicate value found: {} duplicates value on another record in this request",
                        field.name
                    ),
                    &[field.name],
                ));
            }
        }
    }
    Ok(match target {
        Some(row) => Planned::Update(object, row, values),
        None => Planned::Create(object, values),
    })
}

fn existing_row(org: &Org, object: ObjectType, text: &str) -> Result<u32, RecordError> {
    let Some(id) = normalize_id(text) else {
        return Err(RecordError::new(
            "MALFORMED_ID",
            format!("malformed id {text}"),
            &[],
        ));
    };
    match org.find(&id) {
        Some((found, _, _)) if found != object => Err(RecordError::new(
            "MALFORMED_ID",
            format!("{} ID: id value of incorrect type: {id}", object.name()),
            &["Id"],
        )),
        Some((_, _, record)) if record.is_deleted() => Err(RecordError::new(
            "ENTITY_IS_DELETED",
            "entity is deleted",
            &[],
        )),
        Some((_, row, _)) => Ok(row),
        None => Err(RecordError::new(
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            &[],
        )),
    }
}

/// Converts one JSON value for `field`.
fn convert(field: &FieldDef, value: &Json) -> Result<Value, RecordError> {
    let parse_error = || {
        RecordError::new(
            "JSON_PARSER_ERROR",
            format!(
                "Cannot deserialize instance of {} from {} value {value} or request may be missing a required field",
                field.field_type.soql_name(),
                json_kind(value)
            ),
            &[field.name],
        )
    };
    Ok(match (field.field_type, value) {
        (_, Json::Null) => Value::Null,
        (kind, Json::String(text)) if kind.is_textual() => {
            if text.is_empty() {
                Value::Null
            } else if matches!(kind, FieldType::Id | FieldType::Reference) {
                Value::Text(normalize_id(text).unwrap_or_else(|| text.clone()))
            } else {
                Value::Text(text.clone())
            }
        }
        (kind, Json::Number(number)) if kind.is_textual() => Value::Text(number.to_string()),
        (kind, Json::Bool(flag)) if kind.is_textual() => Value::Text(flag.to_string()),
        (FieldType::Boolean, Json::Bool(flag)) => Value::Bool(*flag),
        (FieldType::Boolean, Json::String(text)) if text.eq_ignore_ascii_case("true") => {
            Value::Bool(true)
        }
        (FieldType::Boolean, Json::String(text)) if text.eq_ignore_ascii_case("false") => {
            Value::Bool(false)
        }
        (FieldType::Int | FieldType::Double, Json::Number(number)) => {
            let number = number.as_f64().ok_or_else(parse_error)?;
            if field.field_type == FieldType::Int && number.fract() != 0.0 {
                return Err(parse_error());
            }
            Value::Number(number)
        }
        (FieldType::Int | FieldType::Double, Json::String(text)) => {
            Value::Number(text.trim().parse().map_err(|_| parse_error())?)
        }
        (FieldType::Date, Json::String(text)) => {
            Value::Date(parse_date_text(text).ok_or_else(parse_error)?)
        }
        (FieldType::DateTime, Json::String(text)) => Value::DateTime(super::store::to_millis(
            parse_datetime_text(text).ok_or_else(parse_error)?,
        )),
        _ => return Err(parse_error()),
    })
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "VALUE_NULL",
        Json::Bool(_) => "VALUE_BOOLEAN",
        Json::Number(_) => "VALUE_NUMBER",
        Json::String(_) => "VALUE_STRING",
        Json::Array(_) => "START_ARRAY",
        Json::Object(_) => "START_OBJECT",
    }
}

/// Checks one value the request set: length, picklist, email, reference.
fn validate_field(org: &Org, field: &FieldDef, value: &Value) -> Result<(), RecordError> {
    let Value::Text(text) = value else {
        return Ok(());
    };
    let length = text.chars().count();
    if field.length > 0
        && field.field_type != FieldType::Reference
        && length > field.length as usize
    {
        let shown: String = text.chars().take(40).collect();
        return Err(RecordError::new(
            "STRING_TOO_LONG",
            format!(
                "{}: data value too large: {shown}… (max length={})",
                field.label, field.length
            ),
            &[field.name],
        ));
    }
    match field.field_type {
        FieldType::Picklist
            if field.restricted_picklist && !field.picklist_values.contains(&text.as_str()) =>
        {
            Err(RecordError::new(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                format!(
                    "{}: bad value for restricted picklist field: {text}",
                    field.label
                ),
                &[field.name],
            ))
        }
        FieldType::Email if !valid_email(text) => Err(RecordError::new(
            "INVALID_EMAIL_ADDRESS",
            format!("{}: invalid email address: {text}", field.label),
            &[field.name],
        )),
        FieldType::Reference => {
            let Some(id) = normalize_id(text) else {
                return Err(RecordError::new(
                    "MALFORMED_ID",
                    format!("{}: id value of incorrect type: {text}", field.label),
                    &[field.name],
                ));
            };
            let prefix_ok = ObjectType::from_id_prefix(&id)
                .is_some_and(|object| field.reference_to.contains(&object));
            if !prefix_ok {
                return Err(RecordError::new(
                    "FIELD_INTEGRITY_EXCEPTION",
                    format!("{}: id value of incorrect type: {id}", field.label),
                    &[field.name],
                ));
            }
            match org.find(&id) {
                Some((_, _, record)) if !record.is_deleted() => {
                    let inactive = field.name == "OwnerId"
                        && ObjectType::User
                            .field_index("IsActive")
                            .is_some_and(|index| record.values[index] == Value::Bool(false));
                    if inactive {
                        return Err(RecordError::new(
                            "INACTIVE_OWNER_OR_USER",
                            format!("operation performed with inactive user [{id}] as owner"),
                            &[field.name],
                        ));
                    }
                    Ok(())
                }
                _ => Err(RecordError::new(
                    "INVALID_CROSS_REFERENCE_KEY",
                    format!("{}: invalid cross reference id", field.label),
                    &[field.name],
                )),
            }
        }
        _ => Ok(()),
    }
}

fn valid_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.contains(char::is_whitespace)
}

fn date_time_at(values: &[Value], object: ObjectType, name: &str) -> Option<DateTime<Utc>> {
    match object.field_index(name).map(|index| &values[index]) {
        Some(Value::DateTime(at)) => Some(*at),
        _ => None,
    }
}

fn set_named(values: &mut [Value], object: ObjectType, name: &str, value: Value) {
    if let Some(index) = object.field_index(name) {
        values[index] = value;
    }
}

/// Keeps computed fields in step: full names, closed/won flags, task completion, event times.
fn derive(object: ObjectType, values: &mut [Value], before: Option<&[Value]>, now: DateTime<Utc>) {
    let text = |values: &[Value], name: &str| -> Option<String> {
        object
            .field_index(name)
            .and_then(|index| values[index].as_text().map(str::to_string))
    };
    match object {
        ObjectType::Contact | ObjectType::User => {
            let name = [text(values, "FirstName"), text(values, "LastName")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            set_named(values, object, "Name", Value::text_or_null(Some(&name)));
        }
        ObjectType::Opportunity => {
            let stage = text(values, "StageName").unwrap_or_default();
            let (closed, won) = STAGES
                .iter()
                .find(|(label, _, _)| *label == stage)
                .map_or((false, false), |(_, closed, won)| (*closed, *won));
            set_named(values, object, "IsClosed", Value::Bool(closed));
            set_named(values, object, "IsWon", Value::Bool(won));
        }
        ObjectType::Task => {
            let closed = text(values, "Status").as_deref() == Some("Completed");
            let was_closed = before
                .and_then(|before| {
                    object
                        .field_index("IsClosed")
                        .map(|index| before[index] == Value::Bool(true))
                })
                .unwrap_or(false);
            set_named(values, object, "IsClosed", Value::Bool(closed));
            if !closed {
                set_named(values, object, "CompletedDateTime", Value::Null);
            } else if !was_closed {
                set_named(values, object, "CompletedDateTime", Value::DateTime(now));
            }
        }
        ObjectType::Event => {
            let start = date_time_at(values, object, "StartDateTime")
                .or_else(|| date_time_at(values, object, "ActivityDateTime"));
            let Some(start) = start else {
                return;
            };
            set_named(values, object, "StartDateTime", Value::DateTime(start));
            set_named(values, object, "ActivityDateTime", Value::DateTime(start));
            set_named(
                values,
                object,
                "ActivityDate",
                Value::Date(start.date_naive()),
            );
            let duration =
                object
                    .field_index("DurationInMinutes")
                    .and_then(|index| match values[index] {
                        Value::Number(minutes) => Some(minutes),
                        _ => None,
                    });
            let end_changed = before.is_none_or(|before| {
                object
                    .field_index("EndDateTime")
                    .is_some_and(|index| before[index] != values[index])
            });
            match (date_time_at(values, object, "EndDateTime"), duration) {
                (Some(end), _) if end_changed || duration.is_none() => {
                    set_named(
                        values,
                        object,
                        "DurationInMinutes",
                        Value::Number((end - start).num_minutes() as f64),
                    );
                }
                (_, Some(minutes)) if (0.0..=MAX_EVENT_MINUTES).contains(&minutes) => {
                    if let Some(end) = Duration::try_minutes(minutes as i64)
                        .and_then(|duration| start.checked_add_signed(duration))
                    {
                        set_named(values, object, "EndDateTime", Value::DateTime(end));
                    }
                }
                _ => {}
            }
        }
        ObjectType::Account => {}
    }
}

fn validate_event(values: &[Value]) -> Result<(), RecordError> {
    let object = ObjectType::Event;
    let duration = object
        .field_index("DurationInMinutes")
        .map(|index| &values[index]);
    if let Some(Value::Number(minutes)) = duration
        && !(0.0..=MAX_EVENT_MINUTES).contains(minutes)
    {
        return Err(RecordError::new(
            "FIELD_INTEGRITY_EXCEPTION",
            "Duration: Event duration must be between 0 minutes and 14 days",
            &["DurationInMinutes"],
        ));
    }
    let (Some(start), Some(end)) = (
        date_time_at(values, object, "StartDateTime"),
        date_time_at(values, object, "EndDateTime"),
    ) else {
        return Err(RecordError::new(
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [StartDateTime, EndDateTime or DurationInMinutes]",
            &["StartDateTime", "EndDateTime"],
        ));
    };
    if end < start {
        return Err(RecordError::new(
            "FIELD_INTEGRITY_EXCEPTION",
            "End Date Time: End time must be after start time",
            &["EndDateTime"],
        ));
    }
    if (end - start).num_minutes() as f64 > MAX_EVENT_MINUTES {
        return Err(RecordError::new(
            "FIELD_INTEGRITY_EXCEPTION",
            "Duration: Event duration cannot exceed 14 days",
            &["DurationInMinutes"],
        ));
    }
    Ok(())
}

/// Reads a Collections body: `{allOrNone, records: [...]}` with at most 200 records.
pub fn read_collection(body: &Json) -> Result<(bool, &[Json]), ApiError> {
    let Some(map) = body.as_object() else {
        return Err(ApiError::json_parser(
            "Cannot deserialize instance of SObjectCollection from a non-object body",
        ));
    };
    let all_or_none = match map.get("allOrNone") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(flag)) => *flag,
        Some(other) => {
            return Err(ApiError::json_parser(format!(
                "allOrNone must be a boolean, not {other}"
            )));
        }
    };
    let records = match map.get("records") {
        Some(Json::Array(records)) => records.as_slice(),
        _ => {
            return Err(ApiError::bad_request(
                "INVALID_FIELD",
                "The request must carry a records array",
            ));
        }
    };
    if records.len() > MAX_COLLECTION_RECORDS {
        return Err(ApiError::bad_request(
            "EXCEEDED_ID_LIMIT",
            format!(
                "record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call"
            ),
        ));
    }
    Ok((all_or_none, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::schema::ObjectType;

    fn org_with_owner() -> Org {
        let mut org = Org::new("00DDn0000000001AAA".to_string());
        let store = org.store_mut(ObjectType::User);
        let mut values = vec![Value::Null; ObjectType::User.fields().len()];
        values[system::ID] = Value::Text(store.next_id());
        values[ObjectType::User.field_index("IsActive").unwrap()] = Value::Bool(true);
        store.insert(values);
        org.running_user_id = org.store(ObjectType::User).records[0].id().to_string();
        org
    }

    fn context(org: &Org) -> WriteContext<'_> {
        WriteContext {
            user_id: &org.running_user_id,
            now: Utc::now(),
        }
    }

    #[test]
    fn a_repeated_upsert_updates_and_never_duplicates() {
        let mut org = org_with_owner();
        let user = org.running_user_id.clone();
        let key = ObjectType::Task.field_index("Refbridge_Key__c").unwrap();
        let record = json!({"attributes": {"type": "Task"}, "Refbridge_Key__c": "k1", "Subject": "Visit Mercy", "Status": "Not Started"});
        let ctx = WriteContext {
            user_id: &user,
            now: Utc::now(),
        };
        let first = write(
            &mut org,
            Some(ObjectType::Task),
            Operation::Upsert(key),
            std::slice::from_ref(&record),
            false,
            &ctx,
        );
        assert_eq!(first[0].created, Some(true));
        let again = json!({"Refbridge_Key__c": "K1", "Status": "Completed"});
        let second = write(
            &mut org,
            Some(ObjectType::Task),
            Operation::Upsert(key),
            &[again],
            false,
            &ctx,
        );
        assert_eq!(second[0].created, Some(false));
        assert_eq!(second[0].id, first[0].id);
        let store = org.store(ObjectType::Task);
        assert_eq!(store.records.len(), 1);
        let task = &store.records[0];
        assert_eq!(
            task.values[ObjectType::Task.field_index("IsClosed").unwrap()],
            Value::Bool(true)
        );
        assert!(matches!(
            task.values[ObjectType::Task.field_index("CompletedDateTime").unwrap()],
            Value::DateTime(_)
        ));
        assert_eq!(
            task.values[ObjectType::Task.field_index("OwnerId").unwrap()],
            Value::Text(user.clone())
        );
    }

    #[test]
    fn validation_errors_name_the_field_and_all_or_none_rolls_back() {
        let mut org = org_with_owner();
        let user = org.running_user_id.clone();
        let ctx = WriteContext {
            user_id: &user,
            now: Utc::now(),
        };
        let records = [
            json!({"attributes": {"type": "Task"}, "Subject": "ok"}),
            json!({"attributes": {"type": "Task"}, "Subject": "x".repeat(256)}),
            json!({"attributes": {"type": "Task"}, "Status": "Done-ish"}),
            json!({"attributes": {"type": "Task"}, "Colour__c": "red"}),
            json!({"attributes": {"type": "Task"}, "IsClosed": true}),
            json!({"attributes": {"type": "Task"}, "WhatId": crate::sandbox::store::make_id("003", 1)}),
            json!({"attributes": {"type": "Task"}, "ActivityDate": "20-05-2026"}),
            json!({"attributes": {"type": "Contact"}, "FirstName": "No Last"}),
            json!({"Subject": "typeless"}),
        ];
        let results = write(&mut org, None, Operation::Create, &records, true, &ctx);
        let codes: Vec<&str> = results
            .iter()
            .map(|result| result.errors[0].status_code.as_str())
            .collect();
        assert_eq!(
            codes,
            [
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "STRING_TOO_LONG",
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                "INVALID_FIELD",
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                "FIELD_INTEGRITY_EXCEPTION",
                "JSON_PARSER_ERROR",
                "REQUIRED_FIELD_MISSING",
                "INVALID_TYPE",
            ]
        );
        assert_eq!(results[1].errors[0].fields, ["Subject"]);
        assert_eq!(results[7].errors[0].fields, ["LastName"]);
        assert!(org.store(ObjectType::Task).records.is_empty());
        let partial = write(&mut org, None, Operation::Create, &records, false, &ctx);
        assert!(partial[0].success() && !partial[1].success());
        assert_eq!(org.store(ObjectType::Task).records.len(), 1);
        let _ = context(&org);
    }

    #[test]
    fn duplicate_keys_in_one_request_fail_those_rows_only() {
        let mut org = org_with_owner();
        let user = org.running_user_id.clone();
        let ctx = WriteContext {
            user_id: &user,
            now: Utc::now(),
        };
        let key = ObjectType::Task.field_index("Refbridge_Key__c").unwrap();
        let records = [
            json!({"attributes": {"type": "Task"}, "Refbridge_Key__c": "a"}),
            json!({"attributes": {"type": "Task"}, "Refbridge_Key__c": "b"}),
            json!({"attributes": {"type": "Task"}, "Refbridge_Key__c": "A"}),
        ];
        let results = write(
            &mut org,
            Some(ObjectType::Task),
            Operation::Upsert(key),
            &records,
            false,
            &ctx,
        );
        assert_eq!(results[0].errors[0].status_code, "DUPLICATE_EXTERNAL_ID");
        assert!(results[1].success() && results[1].created == Some(true));
        assert_eq!(results[2].errors[0].status_code, "DUPLICATE_EXTERNAL_ID");
        // Two creates with one unique value: the second is refused.
        let creates = [
            json!({"attributes": {"type": "Task"}, "Refbridge_Key__c": "c"}),
            json!({"attributes": {"type": "Task"}, "Refbridge_Key__c": "C"}),
            json!({"attributes": {"type": "Task"}, "Refbridge_Key__c": "b"}),
        ];
        let results = write(&mut org, None, Operation::Create, &creates, false, &ctx);
        assert!(results[0].success());
        assert_eq!(results[1].errors[0].status_code, "DUPLICATE_VALUE");
        assert_eq!(results[2].errors[0].status_code, "DUPLICATE_VALUE");
    }

    #[test]
    fn events_derive_their_times() {
        let mut org = org_with_owner();
        let user = org.running_user_id.clone();
        let ctx = WriteContext {
            user_id: &user,
            now: Utc::now(),
        };
        let records = [
            json!({"attributes": {"type": "Event"}, "Subject": "Visit", "StartDateTime": "2026-05-20T15:00:00.000+0000", "DurationInMinutes": 30}),
            json!({"attributes": {"type": "Event"}, "Subject": "No end", "StartDateTime": "2026-05-20T15:00:00Z"}),
            json!({"attributes": {"type": "Event"}, "StartDateTime": "2026-05-20T15:00:00Z", "DurationInMinutes": 1e300}),
            json!({"attributes": {"type": "Event"}, "StartDateTime": "9999-12-31T23:59:00Z", "DurationInMinutes": 20000}),
        ];
        let results = write(&mut org, None, Operation::Create, &records, false, &ctx);
        assert!(results[0].success(), "{:?}", results[0]);
        assert_eq!(results[1].errors[0].status_code, "REQUIRED_FIELD_MISSING");
        assert_eq!(
            results[2].errors[0].status_code,
            "FIELD_INTEGRITY_EXCEPTION"
        );
        assert!(results[3].success(), "the year 10000 is still a date");
        let event = &org.store(ObjectType::Event).records[0];
        let end = event.values[ObjectType::Event.field_index("EndDateTime").unwrap()].clone();
        assert_eq!(
            end,
            Value::DateTime(parse_datetime_text("2026-05-20T15:30:00Z").unwrap())
        );
    }
}
