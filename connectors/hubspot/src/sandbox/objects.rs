//! The CRM's read and single-write endpoints: object list (cursor paging over the id-ordered
//! store), get, create (with inline associations), update, archive; v4 associations; the
//! properties API; owners; pipelines.
//!
//! Each handler takes the store lock once, renders its JSON while holding it, and never clones a
//! whole object store. Search and batch endpoints live in their own modules.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::error::{ApiError, json_response};
use super::schema::{
    FIELD_TYPES, ObjectType, OptionDef, PropertyDef, PropertyKind, association_type,
    default_association_type,
};
use super::server::{AppState, no_content, object_type, parse_json};
use super::store::{Selection, iso_ms, now_ms};

/// A query string as HubSpot reads it: repeated keys and comma-separated lists both work.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.map(|raw| {
                form_urlencoded::parse(raw.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    pub(crate) fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of a list parameter (`properties=a&properties=b,c`).
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        self.first(name)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }

    /// `limit`, clamped to `1..=max`; 400 when it is not a number.
    pub(crate) fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.first("limit") {
            None | Some("") => Ok(default),
            Some(text) => text
                .trim()
                .parse::<i64>()
                .map(|limit| limit.clamp(1, max as i64) as usize)
                .map_err(|_| {
                    ApiError::validation(format!("Unable to parse limit {text:?} as a number"))
                }),
        }
    }

    /// The same query with `after` replaced, for `paging.next.link`.
    fn with_after(&self, after: &str) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (key, value) in self.0.iter().filter(|(key, _)| key != "after") {
            out.append_pair(key, value);
        }
        out.append_pair("after", after);
        out.finish()
    }
}

fn after_id(query: &Query) -> Result<u64, ApiError> {
    match query.first("after") {
        None | Some("") => Ok(0),
        Some(text) => text.trim().parse::<u64>().map_err(|_| {
            ApiError::validation(format!(
                "Unable to parse after {text:?}: expected the `after` of a previous page"
            ))
        }),
    }
}

fn association_types_wanted(query: &Query) -> Vec<ObjectType> {
    query
        .all("associations")
        .iter()
        .filter_map(|t| ObjectType::parse(t))
        .collect()
}

fn paging(base_url: &str, path: &str, query: &Query, after: Option<String>) -> Option<Value> {
    after.map(|after| {
        let link = format!("{base_url}{path}?{}", query.with_after(&after));
        json!({"next": {"after": after, "link": link}})
    })
}

/// `GET /crm/v3/objects/{type}`.
pub(crate) async fn list(
    shared: AppState,
    Path(type_text): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let object_type = object_type(&type_text)?;
    let query = Query::parse(raw.as_deref());
    let limit = query.limit(10, 100)?;
    let after = after_id(&query)?;
    let archived = query.flag("archived");
    let names = query.all("properties");
    let selection = Selection::from_names(&names);
    let wanted = association_types_wanted(&query);
    let (results, next) = {
        let store = shared.read();
        let types = store.of(object_type);
        let mut records = types
            .records
            .range(after..)
            .map(|(_, r)| r)
            .filter(|r| r.is_archived() == archived);
        let mut results = Vec::with_capacity(limit);
        for record in records.by_ref().take(limit) {
            let mut object = types.render(record, &selection);
            if !wanted.is_empty()
                && let Some(associations) =
                    store.render_v3_associations(object_type, record.id, &wanted)
            {
                object["associations"] = associations;
            }
            results.push(object);
        }
        (results, records.next().map(|r| r.id.to_string()))
    };
    let mut body = json!({ "results": results });
    let path = format!("/crm/v3/objects/{type_text}");
    if let Some(paging) = paging(&shared.base_url, &path, &query, next) {
        body["paging"] = paging;
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /crm/v3/objects/{type}/{id}` (`idProperty`, `properties`, `archived`, `associations`).
pub(crate) async fn get_one(
    shared: AppState,
    Path((type_text, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let object_type = object_type(&type_text)?;
    let query = Query::parse(raw.as_deref());
    let names = query.all("properties");
    let wanted = association_types_wanted(&query);
    let store = shared.read();
    let types = store.of(object_type);
    let record = types
        .resolve(&id, query.first("idProperty"), query.flag("archived"))
        .and_then(|found| types.records.get(&found))
        .ok_or_else(|| ApiError::not_found(&id))?;
    let mut object = types.render(record, &Selection::from_names(&names));
    if let Some(associations) = store.render_v3_associations(object_type, record.id, &wanted) {
        object["associations"] = associations;
    }
    Ok(json_response(StatusCode::OK, &object))
}

fn properties_of(body: &Value) -> Result<Map<String, Value>, ApiError> {
    match body.get("properties") {
        Some(Value::Object(properties)) => Ok(properties.clone()),
        None | Some(Value::Null) => Ok(Map::new()),
        Some(_) => Err(ApiError::validation(
            "`properties` must be an object of property names to values",
        )),
    }
}

fn associations_of(body: &Value) -> Result<Vec<Value>, ApiError> {
    match body.get("associations") {
        Some(Value::Array(list)) => Ok(list.clone()),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => Err(ApiError::validation("`associations` must be a list")),
    }
}

/// `POST /crm/v3/objects/{type}`.
pub(crate) async fn create(
    shared: AppState,
    Path(type_text): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let object_type = object_type(&type_text)?;
    let body = parse_json(&body)?;
    let properties = properties_of(&body)?;
    let associations = associations_of(&body)?;
    let mut store = shared.write();
    let id = store
        .create(object_type, &properties, &associations, now_ms())
        .map_err(|e| e.into_api_error())?;
    let types = store.of(object_type);
    let record = types
        .live(id)
        .ok_or_else(|| ApiError::not_found(&id.to_string()))?;
    Ok(json_response(
        StatusCode::CREATED,
        &types.render(record, &Selection::Written),
    ))
}

/// `PATCH /crm/v3/objects/{type}/{id}` (`idProperty` supported).
pub(crate) async fn update(
    shared: AppState,
    Path((type_text, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let object_type = object_type(&type_text)?;
    let query = Query::parse(raw.as_deref());
    let body = parse_json(&body)?;
    let properties = properties_of(&body)?;
    let mut store = shared.write();
    let found = store
        .of(object_type)
        .resolve(&id, query.first("idProperty"), false)
        .ok_or_else(|| ApiError::not_found(&id))?;
    store
        .update(object_type, found, &properties, now_ms())
        .map_err(|e| e.into_api_error())?;
    let types = store.of(object_type);
    let record = types.live(found).ok_or_else(|| ApiError::not_found(&id))?;
    Ok(json_response(
        StatusCode::OK,
        &types.render(record, &Selection::Written),
    ))
}

/// `DELETE /crm/v3/objects/{type}/{id}`: archives; 204 whether or not it existed.
pub(crate) async fn archive(
    shared: AppState,
    Path((type_text, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let object_type = object_type(&type_text)?;
    if let Ok(id) = id.trim().parse::<u64>() {
        shared.write().of_mut(object_type).archive(id, now_ms());
    }
    Ok(no_content())
}

/// `GET /crm/v4/objects/{type}/{id}/associations/{toType}`.
pub(crate) async fn list_associations(
    shared: AppState,
    Path((type_text, id, to_text)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let from = object_type(&type_text)?;
    let to = object_type(&to_text)?;
    let query = Query::parse(raw.as_deref());
    let limit = query.limit(500, 500)?;
    let after = after_id(&query)?;
    let from_id = id
        .trim()
        .parse::<u64>()
        .map_err(|_| ApiError::not_found(&id))?;
    let (results, next) = {
        let store = shared.read();
        let mut targets = store
            .associations
            .targets(from, from_id, to, after)
            .filter(|(to_id, _)| store.of(to).live(*to_id).is_some());
        let results: Vec<Value> = targets
            .by_ref()
            .take(limit)
            .map(|(to_id, ids)| {
                let types: Vec<Value> = ids
                    .as_slice()
                    .iter()
                    .map(|&type_id| {
                        let label = association_type(from, to, type_id).and_then(|t| t.label);
                        json!({"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": label})
                    })
                    .collect();
                json!({"toObjectId": to_id, "associationTypes": types})
            })
            .collect();
        (results, targets.next().map(|(to_id, _)| to_id.to_string()))
    };
    let mut body = json!({ "results": results });
    let path = format!("/crm/v4/objects/{type_text}/{id}/associations/{to_text}");
    if let Some(paging) = paging(&shared.base_url, &path, &query, next) {
        body["paging"] = paging;
    }
    Ok(json_response(StatusCode::OK, &body))
}

fn live_pair(
    shared: &AppState,
    from: ObjectType,
    from_id: &str,
    to: ObjectType,
    to_id: &str,
) -> Result<(u64, u64), ApiError> {
    let store = shared.read();
    let from_id = from_id
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|id| store.of(from).live(*id).is_some());
    let to_id = to_id
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|id| store.of(to).live(*id).is_some());
    match (from_id, to_id) {
        (Some(from_id), Some(to_id)) => Ok((from_id, to_id)),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!(
                "One or more associations are invalid: a {} or {} does not exist",
                from.singular(),
                to.singular()
            ),
        )),
    }
}

/// The largest v4 association batch.
const MAX_ASSOCIATION_INPUTS: usize = 1000;

fn association_inputs(body: &Value) -> Result<Vec<Value>, ApiError> {
    let inputs = body
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::validation("`inputs` must be a list"))?;
    if inputs.len() > MAX_ASSOCIATION_INPUTS {
        return Err(ApiError::validation(format!(
            "Batch input size {} exceeds the limit of {MAX_ASSOCIATION_INPUTS} inputs",
            inputs.len()
        )));
    }
    Ok(inputs.clone())
}

/// A batch answer: 200 when every input worked, else 207 with `errors` (ids in `context`).
fn batch_answer(results: Vec<Value>, errors: Vec<Value>, started: &str) -> Response {
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": iso_ms(now_ms()),
    });
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
        StatusCode::MULTI_STATUS
    };
    json_response(status, &body)
}

fn input_id(input: &Value, pointer: &str) -> String {
    input
        .pointer(pointer)
        .and_then(super::store::id_text)
        .unwrap_or_default()
}

/// `POST /crm/v4/associations/{from}/{to}/batch/read` with `{inputs:[{id}]}`: each record's
/// associations to `to`; records without any are listed in `errors` (HubSpot's 207).
pub(crate) async fn batch_read_associations(
    shared: AppState,
    Path((type_text, to_text)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let from = object_type(&type_text)?;
    let to = object_type(&to_text)?;
    let body = parse_json(&body)?;
    let inputs = association_inputs(&body)?;
    let started = iso_ms(now_ms());
    let store = shared.read();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in &inputs {
        let id = input_id(input, "/id");
        let targets: Vec<Value> = id
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|id| store.of(from).live(*id).is_some())
            .map(|from_id| {
                store
                    .associations
                    .targets(from, from_id, to, 0)
                    .filter(|(to_id, _)| store.of(to).live(*to_id).is_some())
                    .map(|(to_id, ids)| {
                        let types: Vec<Value> = ids
                            .as_slice()
                            .iter()
                            .map(|&type_id| {
                                let label = association_type(from, to, type_id).and_then(|t| t.label);
                                json!({"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": label})
                            })
                            .collect();
                        json!({"toObjectId": to_id, "associationTypes": types})
                    })
                    .collect()
            })
            .unwrap_or_default();
        if targets.is_empty() {
            errors.push(json!({
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                "message": format!("No {} is associated with {} {id}.", to.singular(), from.singular()),
                "context": {"fromObjectId": [id]},
            }));
        } else {
            results.push(json!({"from": {"id": id}, "to": targets}));
        }
    }
    Ok(batch_answer(results, errors, &started))
}

/// `POST /crm/v4/associations/{from}/{to}/batch/associate/default` with
/// `{inputs:[{from:{id}, to:{id}}]}`: the default (unlabeled) association for each pair; pairs
/// naming a record that does not exist are listed in `errors` (207).
pub(crate) async fn batch_associate_default(
    shared: AppState,
    Path((type_text, to_text)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let from = object_type(&type_text)?;
    let to = object_type(&to_text)?;
    let kind = default_association_type(from, to).ok_or_else(|| {
        ApiError::validation(format!(
            "{} objects cannot be associated with {} objects",
            from.singular(),
            to.singular()
        ))
    })?;
    let body = parse_json(&body)?;
    let inputs = association_inputs(&body)?;
    let started = iso_ms(now_ms());
    let mut store = shared.write();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in &inputs {
        let (from_text, to_text) = (input_id(input, "/from/id"), input_id(input, "/to/id"));
        let live = |store: &super::store::Store, object_type, text: &str| {
            text.trim()
                .parse::<u64>()
                .ok()
                .filter(|id| store.of(object_type).live(*id).is_some())
        };
        match (live(&store, from, &from_text), live(&store, to, &to_text)) {
            (Some(from_id), Some(to_id)) => {
                store.associations.add(kind, from_id, to_id);
                results.push(json!({
                    "from": {"id": from_id.to_string()},
                    "to": {"id": to_id.to_string()},
                    "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": kind.id},
                }));
            }
            _ => errors.push(json!({
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": format!(
                    "One or more associations are invalid: {} {from_text} or {} {to_text} does not exist",
                    from.singular(),
                    to.singular()
                ),
                "context": {"fromObjectId": [from_text], "toObjectId": [to_text]},
            })),
        }
    }
    Ok(batch_answer(results, errors, &started))
}

/// `PUT /crm/v4/objects/{from}/{id}/associations/default/{to}/{toId}`.
pub(crate) async fn associate_default(
    shared: AppState,
    Path((type_text, id, to_text, to_id)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let from = object_type(&type_text)?;
    let to = object_type(&to_text)?;
    let kind = default_association_type(from, to).ok_or_else(|| {
        ApiError::validation(format!(
            "{} objects cannot be associated with {} objects",
            from.singular(),
            to.singular()
        ))
    })?;
    let (from_id, to_id) = live_pair(&shared, from, &id, to, &to_id)?;
    let started = iso_ms(now_ms());
    shared.write().associations.add(kind, from_id, to_id);
    let result = |a: u64, b: u64, type_id: u16| json!({"from": {"id": a.to_string()}, "to": {"id": b.to_string()}, "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}});
    let body = json!({
        "status": "COMPLETE",
        "results": [result(from_id, to_id, kind.id), result(to_id, from_id, kind.inverse)],
        "startedAt": started,
        "completedAt": iso_ms(now_ms()),
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// `PUT /crm/v4/objects/{from}/{id}/associations/{to}/{toId}` with `[{associationCategory, associationTypeId}]`.
pub(crate) async fn associate_labeled(
    shared: AppState,
    Path((type_text, id, to_text, to_id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let from = object_type(&type_text)?;
    let to = object_type(&to_text)?;
    let specs = parse_json(&body)?;
    let specs = specs
        .as_array()
        .ok_or_else(|| ApiError::validation("The body must be a list of association types"))?;
    let mut kinds = Vec::new();
    for spec in specs {
        let type_id = spec
            .get("associationTypeId")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let category = spec
            .get("associationCategory")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = u16::try_from(type_id)
            .ok()
            .and_then(|id| association_type(from, to, id))
            .filter(|_| category == "HUBSPOT_DEFINED")
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "{category} {type_id} is not a valid association type from {from} to {to}"
                ))
            })?;
        kinds.push(kind);
    }
    let (from_id, to_id) = live_pair(&shared, from, &id, to, &to_id)?;
    let mut store = shared.write();
    for kind in &kinds {
        store.associations.add(*kind, from_id, to_id);
    }
    let labels: Vec<Value> = kinds
        .iter()
        .filter_map(|k| k.label)
        .map(|l| json!(l))
        .collect();
    let body = json!({
        "fromObjectTypeId": from.type_id(),
        "fromObjectId": from_id,
        "toObjectTypeId": to.type_id(),
        "toObjectId": to_id,
        "labels": labels,
    });
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `DELETE /crm/v4/objects/{from}/{id}/associations/{to}/{toId}`.
pub(crate) async fn remove_association(
    shared: AppState,
    Path((type_text, id, to_text, to_id)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let from = object_type(&type_text)?;
    let to = object_type(&to_text)?;
    if let (Ok(from_id), Ok(to_id)) = (id.trim().parse::<u64>(), to_id.trim().parse::<u64>()) {
        shared.write().associations.remove(from, from_id, to, to_id);
    }
    Ok(no_content())
}

/// `GET /crm/v3/properties/{type}`.
pub(crate) async fn list_properties(
    shared: AppState,
    Path(type_text): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let object_type = object_type(&type_text)?;
    let query = Query::parse(raw.as_deref());
    let store = shared.read();
    let types = store.of(object_type);
    let results: Vec<Value> = if query.flag("archived") {
        Vec::new()
    } else {
        types
            .properties
            .iter()
            .map(|def| types.render_property(def))
            .collect()
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results }),
    ))
}

/// `GET /crm/v3/properties/{type}/{name}`.
pub(crate) async fn get_property(
    shared: AppState,
    Path((type_text, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let object_type = object_type(&type_text)?;
    let store = shared.read();
    let types = store.of(object_type);
    let (_, def) = types.property(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            format!(
                "Unable to find property {name} for object type {}",
                object_type.type_id()
            ),
        )
    })?;
    Ok(json_response(StatusCode::OK, &types.render_property(def)))
}

fn valid_property_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 100
}

/// `POST /crm/v3/properties/{type}` (`name, label, type, fieldType, groupName, hasUniqueValue, options, description`).
pub(crate) async fn create_property(
    shared: AppState,
    Path(type_text): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let object_type = object_type(&type_text)?;
    let body = parse_json(&body)?;
    let text = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    let mut missing: Vec<&str> = ["name", "label", "type", "fieldType", "groupName"]
        .into_iter()
        .filter(|key| text(key).is_empty())
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        return Err(ApiError::validation(format!(
            "Missing required fields: {}",
            missing.join(", ")
        )));
    }
    let name = text("name");
    if !valid_property_name(&name) {
        return Err(ApiError::validation(format!(
            "Property name {name:?} is invalid: use lowercase letters, digits and underscores, starting with a letter"
        )));
    }
    let kind_text = text("type");
    let kind = PropertyKind::parse(&kind_text).ok_or_else(|| {
        ApiError::validation(format!("{kind_text:?} is not a valid property type"))
    })?;
    let field_type = text("fieldType");
    if !FIELD_TYPES.contains(&field_type.as_str()) {
        return Err(ApiError::validation(format!(
            "{field_type:?} is not a valid field type"
        )));
    }
    let has_unique_value = body
        .get("hasUniqueValue")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if has_unique_value && !matches!(kind, PropertyKind::String | PropertyKind::Number) {
        return Err(ApiError::validation(
            "Only string and number properties can require unique values",
        ));
    }
    let mut options = Vec::new();
    for option in body
        .get("options")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let value = option
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let label = option.get("label").and_then(Value::as_str).unwrap_or(value);
        if value.is_empty() {
            return Err(ApiError::validation("Every option needs a value"));
        }
        options.push(OptionDef {
            label: label.to_string(),
            value: value.to_string(),
        });
    }
    if kind == PropertyKind::Enumeration && options.is_empty() {
        return Err(ApiError::validation(
            "An enumeration property needs at least one option",
        ));
    }
    let mut def = PropertyDef::new(&name, &text("label"), kind, &field_type, &text("groupName"));
    def.description = text("description");
    def.has_unique_value = has_unique_value;
    def.options = options;
    def.hubspot_defined = false;
    def.created_ms = now_ms();
    let mut store = shared.write();
    let types = store.of_mut(object_type);
    def.display_order = body
        .get("displayOrder")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    let created = types
        .add_property(def)
        .map_err(|message| ApiError::new(StatusCode::CONFLICT, "OBJECT_ALREADY_EXISTS", message))?
        .clone();
    Ok(json_response(
        StatusCode::CREATED,
        &types.render_property(&created),
    ))
}

/// `GET /crm/v3/owners` (`limit` ≤ 500, `after`, `email`, `archived`).
pub(crate) async fn list_owners(
    shared: AppState,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref());
    let limit = query.limit(100, 500)?;
    let after = after_id(&query)?;
    let archived = query.flag("archived");
    let email = query.first("email").map(str::to_ascii_lowercase);
    let store = shared.read();
    let mut owners = store
        .owners
        .iter()
        .filter(|o| o.id >= after && o.archived == archived)
        .filter(|o| {
            email
                .as_ref()
                .is_none_or(|e| o.email.eq_ignore_ascii_case(e))
        });
    let results: Vec<Value> = owners.by_ref().take(limit).map(|o| o.render()).collect();
    let next = owners.next().map(|o| o.id.to_string());
    let mut body = json!({ "results": results });
    if let Some(paging) = paging(&shared.base_url, "/crm/v3/owners/", &query, next) {
        body["paging"] = paging;
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /crm/v3/owners/{ownerId}` (`idProperty=id|userId`, `archived`).
pub(crate) async fn get_owner(
    shared: AppState,
    Path(owner_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(raw.as_deref());
    let by_user = query.first("idProperty") == Some("userId");
    let archived = query.flag("archived");
    let wanted = owner_id.trim().parse::<u64>().ok();
    let store = shared.read();
    let owner = store
        .owners
        .iter()
        .find(|o| Some(if by_user { o.user_id } else { o.id }) == wanted && o.archived == archived)
        .ok_or_else(ApiError::resource_not_found)?;
    Ok(json_response(StatusCode::OK, &owner.render()))
}

fn pipelines_of(type_text: &str) -> Result<bool, ApiError> {
    Ok(object_type(type_text)? == ObjectType::Deals)
}

/// `GET /crm/v3/pipelines/{type}`.
pub(crate) async fn list_pipelines(
    shared: AppState,
    Path(type_text): Path<String>,
) -> Result<Response, ApiError> {
    let results: Vec<Value> = if pipelines_of(&type_text)? {
        shared.read().pipelines.iter().map(|p| p.render()).collect()
    } else {
        Vec::new()
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results }),
    ))
}

fn pipeline_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "OBJECT_NOT_FOUND",
        format!("Unable to find pipeline with id {id}"),
    )
}

/// `GET /crm/v3/pipelines/{type}/{pipelineId}`.
pub(crate) async fn get_pipeline(
    shared: AppState,
    Path((type_text, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !pipelines_of(&type_text)? {
        return Err(pipeline_not_found(&id));
    }
    let store = shared.read();
    let pipeline = store
        .pipelines
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| pipeline_not_found(&id))?;
    Ok(json_response(StatusCode::OK, &pipeline.render()))
}

/// `GET /crm/v3/pipelines/{type}/{pipelineId}/stages`.
pub(crate) async fn list_stages(
    shared: AppState,
    Path((type_text, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !pipelines_of(&type_text)? {
        return Err(pipeline_not_found(&id));
    }
    let store = shared.read();
    let pipeline = store
        .pipelines
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| pipeline_not_found(&id))?;
    let results: Vec<Value> = pipeline
        .stages
        .iter()
        .enumerate()
        .map(|(order, stage)| pipeline.render_stage(order, stage))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results }),
    ))
}
