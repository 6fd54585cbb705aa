//! `POST /crm/v3/objects/{type}/search`: filter groups (OR of ANDs) with HubSpot's operators,
//! one sort, free-text `query`, offset paging in `after` — and HubSpot's limits: at most 5 groups,
//! 6 filters a group, 18 filters in all, 200 results a page, and no paging past 10,000 results
//! (HTTP 400). Archived records never match.
//!
//! Dates and datetimes compare as epoch milliseconds (filter values in ms or ISO 8601), numbers
//! numerically, everything else case-insensitively as text. A search is a filtered scan of one
//! object type under the read lock; only the page is rendered.

use std::cmp::Ordering;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, json_response};
use super::schema::{ObjectType, PropertyKind};
use super::server::{AppState, object_type, parse_json};
use super::store::{Record, Selection, TypeStore, parse_time_ms};

/// HubSpot's search limits.
pub(crate) const MAX_FILTER_GROUPS: usize = 5;
pub(crate) const MAX_FILTERS_PER_GROUP: usize = 6;
pub(crate) const MAX_FILTERS: usize = 18;
pub(crate) const MAX_LIMIT: usize = 200;
pub(crate) const MAX_RESULTS: usize = 10_000;

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SearchRequest {
    filter_groups: Option<Vec<FilterGroupRequest>>,
    sorts: Option<Vec<Value>>,
    properties: Option<Vec<String>>,
    limit: Option<Value>,
    after: Option<Value>,
    query: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct FilterGroupRequest {
    filters: Option<Vec<FilterRequest>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct FilterRequest {
    property_name: Option<String>,
    operator: Option<String>,
    value: Option<Value>,
    high_value: Option<Value>,
    values: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Between,
    In,
    NotIn,
    HasProperty,
    NotHasProperty,
    ContainsToken,
    NotContainsToken,
}

impl Operator {
    fn parse(text: &str) -> Option<Operator> {
        Some(match text {
            "EQ" => Operator::Eq,
            "NEQ" => Operator::Neq,
            "LT" => Operator::Lt,
            "LTE" => Operator::Lte,
            "GT" => Operator::Gt,
            "GTE" => Operator::Gte,
            "BETWEEN" => Operator::Between,
            "IN" => Operator::In,
            "NOT_IN" => Operator::NotIn,
            "HAS_PROPERTY" => Operator::HasProperty,
            "NOT_HAS_PROPERTY" => Operator::NotHasProperty,
            "CONTAINS_TOKEN" => Operator::ContainsToken,
            "NOT_CONTAINS_TOKEN" => Operator::NotContainsToken,
            _ => return None,
        })
    }
}

/// A comparable value: numbers (and times, in ms) or lower-cased text.
#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Number(f64),
    Text(String),
}

impl Operand {
    fn compare(&self, other: &Operand) -> Option<Ordering> {
        match (self, other) {
            (Operand::Number(a), Operand::Number(b)) => a.partial_cmp(b),
            (Operand::Text(a), Operand::Text(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Filter {
    property: u16,
    numeric: bool,
    multi: bool,
    operator: Operator,
    value: Option<Operand>,
    high_value: Option<Operand>,
    values: Vec<Operand>,
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn operand(
    property_name: &str,
    numeric: bool,
    kind: PropertyKind,
    value: &Value,
) -> Result<Operand, ApiError> {
    let text = value_text(value).ok_or_else(|| {
        ApiError::validation(format!(
            "The filter value for {property_name} must be a string or a number"
        ))
    })?;
    if !numeric {
        return Ok(Operand::Text(text.to_lowercase()));
    }
    let parsed = match kind {
        PropertyKind::Date | PropertyKind::Datetime => parse_time_ms(&text).map(|ms| ms as f64),
        _ => text.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
    };
    parsed.map(Operand::Number).ok_or_else(|| {
        ApiError::validation(format!(
            "{text:?} is not a valid {} value for {property_name} (use epoch milliseconds for dates)",
            kind.as_str()
        ))
    })
}

fn compile_filter(types: &TypeStore, request: &FilterRequest) -> Result<Filter, ApiError> {
    let name = request.property_name.as_deref().unwrap_or_default();
    let (property, def) = types.property(name).ok_or_else(|| {
        ApiError::validation(format!(
            "There was a problem with the request: property {name:?} does not exist on {}",
            types.object_type
        ))
    })?;
    let operator_text = request.operator.as_deref().unwrap_or_default();
    let operator = Operator::parse(operator_text).ok_or_else(|| {
        ApiError::validation(format!("{operator_text:?} is not a valid filter operator"))
    })?;
    let numeric = matches!(
        def.kind,
        PropertyKind::Number | PropertyKind::Date | PropertyKind::Datetime
    );
    let to_operand = |value: &Value| operand(name, numeric, def.kind, value);
    let needs_value = !matches!(
        operator,
        Operator::HasProperty | Operator::NotHasProperty | Operator::In | Operator::NotIn
    );
    let value = match (&request.value, needs_value) {
        (Some(value), true) if !value.is_null() => Some(to_operand(value)?),
        (_, true) => {
            return Err(ApiError::validation(format!(
                "The {operator_text} filter on {name} needs a `value`"
            )));
        }
        _ => None,
    };
    let high_value = match (&request.high_value, operator) {
        (Some(value), Operator::Between) if !value.is_null() => Some(to_operand(value)?),
        (_, Operator::Between) => {
            return Err(ApiError::validation(format!(
                "The BETWEEN filter on {name} needs a `highValue`"
            )));
        }
        _ => None,
    };
    let values = match operator {
        Operator::In | Operator::NotIn => {
            let values = request.values.as_deref().unwrap_or_default();
            if values.is_empty() {
                return Err(ApiError::validation(format!(
                    "The {operator_text} filter on {name} needs `values`"
                )));
            }
            values
                .iter()
                .map(to_operand)
                .collect::<Result<Vec<_>, _>>()?
        }
        _ => Vec::new(),
    };
    Ok(Filter {
        property,
        numeric,
        multi: def.is_multi_select(),
        operator,
        value,
        high_value,
        values,
    })
}

/// The record's value(s) of a property as operands (several for a multi-select).
fn record_operands(
    types: &TypeStore,
    record: &Record,
    property: u16,
    numeric: bool,
    multi: bool,
) -> Vec<Operand> {
    if numeric {
        return types
            .numeric_value(record, property)
            .map(Operand::Number)
            .into_iter()
            .collect();
    }
    let Some(text) = types.value(record, property) else {
        return Vec::new();
    };
    let lower = text.to_lowercase();
    if multi {
        lower
            .split(';')
            .map(|v| Operand::Text(v.trim().to_string()))
            .collect()
    } else {
        vec![Operand::Text(lower)]
    }
}

fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '@' || c == '.' || c == '_' || c == '-'))
        .filter(|t| !t.is_empty())
}

/// `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn contains_token(haystack: &Operand, needle: &Operand) -> bool {
    let (Operand::Text(haystack), Operand::Text(needle)) = (haystack, needle) else {
        return false;
    };
    let words: Vec<&str> = needle.split_whitespace().collect();
    !words.is_empty()
        && words.iter().all(|word| {
            glob(word, haystack)
                || tokens(haystack)
                    .any(|token| glob(word, token) || glob(word, token.trim_matches('.')))
        })
}

impl Filter {
    fn matches(&self, types: &TypeStore, record: &Record) -> bool {
        let present = record_operands(types, record, self.property, self.numeric, self.multi);
        let any = |test: &dyn Fn(&Operand) -> bool| present.iter().any(test);
        let compare = |operand: &Operand, wanted: &[Ordering]| {
            self.value
                .as_ref()
                .and_then(|value| operand.compare(value))
                .is_some_and(|order| wanted.contains(&order))
        };
        match self.operator {
            Operator::HasProperty => !present.is_empty(),
            Operator::NotHasProperty => present.is_empty(),
            Operator::Eq => any(&|o| compare(o, &[Ordering::Equal])),
            Operator::Neq => !any(&|o| compare(o, &[Ordering::Equal])),
            Operator::Lt => any(&|o| compare(o, &[Ordering::Less])),
            Operator::Lte => any(&|o| compare(o, &[Ordering::Less, Ordering::Equal])),
            Operator::Gt => any(&|o| compare(o, &[Ordering::Greater])),
            Operator::Gte => any(&|o| compare(o, &[Ordering::Greater, Ordering::Equal])),
            Operator::Between => any(&|o| {
                compare(o, &[Ordering::Greater, Ordering::Equal])
                    && self
                        .high_value
                        .as_ref()
                        .and_then(|high| o.compare(high))
                        .is_some_and(|order| order != Ordering::Greater)
            }),
            Operator::In => any(&|o| {
                self.values
                    .iter()
                    .any(|v| o.compare(v) == Some(Ordering::Equal))
            }),
            Operator::NotIn => !any(&|o| {
                self.values
                    .iter()
                    .any(|v| o.compare(v) == Some(Ordering::Equal))
            }),
            Operator::ContainsToken => self
                .value
                .as_ref()
                .is_some_and(|needle| any(&|o| contains_token(o, needle))),
            Operator::NotContainsToken => !self
                .value
                .as_ref()
                .is_some_and(|needle| any(&|o| contains_token(o, needle))),
        }
    }
}

#[derive(Debug)]
struct Sort {
    property: u16,
    numeric: bool,
    descending: bool,
}

fn compile_sort(types: &TypeStore, sorts: &[Value]) -> Result<Option<Sort>, ApiError> {
    let Some(first) = sorts.first() else {
        return Ok(None);
    };
    let (name, direction) = match first {
        Value::String(text) => match text.strip_prefix('-') {
            Some(name) => (name.to_string(), "DESCENDING".to_string()),
            None => (text.clone(), "ASCENDING".to_string()),
        },
        Value::Object(sort) => (
            sort.get("propertyName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            sort.get("direction")
                .and_then(Value::as_str)
                .unwrap_or("ASCENDING")
                .to_string(),
        ),
        _ => {
            return Err(ApiError::validation(
                "Each sort must be {propertyName, direction}",
            ));
        }
    };
    let (property, def) = types.property(&name).ok_or_else(|| {
        ApiError::validation(format!(
            "Cannot sort by {name:?}: no such property on {}",
            types.object_type
        ))
    })?;
    let descending = match direction.as_str() {
        "ASCENDING" => false,
        "DESCENDING" => true,
        other => {
            return Err(ApiError::validation(format!(
                "{other:?} is not a sort direction (ASCENDING or DESCENDING)"
            )));
        }
    };
    let numeric = matches!(
        def.kind,
        PropertyKind::Number | PropertyKind::Date | PropertyKind::Datetime
    ) || def.calculated.is_some();
    Ok(Some(Sort {
        property,
        numeric,
        descending,
    }))
}

fn offset(after: Option<&Value>) -> Result<usize, ApiError> {
    let Some(after) = after.filter(|a| !a.is_null()) else {
        return Ok(0);
    };
    let text = value_text(after).unwrap_or_default();
    if text.trim().is_empty() {
        return Ok(0);
    }
    text.trim().parse::<usize>().map_err(|_| {
        ApiError::validation(format!(
            "Unable to parse after {text:?}: expected the `after` of a previous page"
        ))
    })
}

fn limit(limit: Option<&Value>) -> Result<usize, ApiError> {
    match limit.filter(|l| !l.is_null()) {
        None => Ok(10),
        Some(value) => value_text(value)
            .and_then(|t| t.trim().parse::<i64>().ok())
            .map(|n| n.clamp(1, MAX_LIMIT as i64) as usize)
            .ok_or_else(|| {
                ApiError::validation(format!("limit must be a number up to {MAX_LIMIT}"))
            }),
    }
}

/// The page of a search, with its total and the next offset.
#[derive(Debug)]
pub(crate) struct SearchPage {
    pub total: usize,
    pub results: Vec<Value>,
    pub next_after: Option<usize>,
}

/// Runs a parsed search body against one object type.
pub(crate) fn run(types: &TypeStore, body: &Value) -> Result<SearchPage, ApiError> {
    let request: SearchRequest = serde_json::from_value(body.clone())
        .map_err(|e| ApiError::validation(format!("Invalid search request: {e}")))?;
    let groups = request.filter_groups.unwrap_or_default();
    if groups.len() > MAX_FILTER_GROUPS {
        return Err(ApiError::validation(format!(
            "Too many filter groups: {} (the maximum is {MAX_FILTER_GROUPS})",
            groups.len()
        )));
    }
    let mut compiled: Vec<Vec<Filter>> = Vec::with_capacity(groups.len());
    let mut filter_count = 0;
    for group in &groups {
        let filters = group.filters.as_deref().unwrap_or_default();
        if filters.len() > MAX_FILTERS_PER_GROUP {
            return Err(ApiError::validation(format!(
                "Too many filters in one filter group: {} (the maximum is {MAX_FILTERS_PER_GROUP})",
                filters.len()
            )));
        }
        filter_count += filters.len();
        compiled.push(
            filters
                .iter()
                .map(|f| compile_filter(types, f))
                .collect::<Result<_, _>>()?,
        );
    }
    if filter_count > MAX_FILTERS {
        return Err(ApiError::validation(format!(
            "Too many filters: {filter_count} (the maximum is {MAX_FILTERS})"
        )));
    }
    let sort = compile_sort(types, request.sorts.as_deref().unwrap_or_default())?;
    let after = offset(request.after.as_ref())?;
    let limit = limit(request.limit.as_ref())?;
    if after >= MAX_RESULTS {
        return Err(ApiError::validation(format!(
            "Cannot page past {MAX_RESULTS} results (after={after}). Narrow the search, for example to a smaller time window, and page within it."
        ))
        .with_context(json!({ "after": [after.to_string()] })));
    }
    let query_words: Vec<String> = request
        .query
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let searchable: Vec<u16> = types
        .object_type
        .searchable_properties()
        .iter()
        .filter_map(|name| types.property(name).map(|(index, _)| index))
        .collect();
    let matches = |record: &Record| {
        let filters_match = compiled.is_empty()
            || compiled
                .iter()
                .any(|group| group.iter().all(|f| f.matches(types, record)));
        filters_match
            && (query_words.is_empty()
                || query_words.iter().all(|word| {
                    searchable.iter().any(|p| {
                        types
                            .value(record, *p)
                            .is_some_and(|v| v.to_lowercase().contains(word.as_str()))
                    })
                }))
    };
    let live = types.records.values().filter(|r| !r.is_archived());
    let end_cap = (after + limit).min(MAX_RESULTS);
    let (total, page): (usize, Vec<&Record>) = match &sort {
        None => {
            let mut total = 0;
            let mut page = Vec::with_capacity(limit);
            for record in live.filter(|r| matches(r)) {
                if total >= after && total < end_cap {
                    page.push(record);
                }
                total += 1;
            }
            (total, page)
        }
        Some(sort) => {
            let mut keyed: Vec<(Option<Operand>, &Record)> = live
                .filter(|r| matches(r))
                .map(|r| {
                    (
                        record_operands(types, r, sort.property, sort.numeric, false)
                            .into_iter()
                            .next(),
                        r,
                    )
                })
                .collect();
            keyed.sort_by(|(a, ra), (b, rb)| {
                let order = match (a, b) {
                    (Some(a), Some(b)) => a.compare(b).unwrap_or(Ordering::Equal),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                };
                let order = if sort.descending && a.is_some() && b.is_some() {
                    order.reverse()
                } else {
                    order
                };
                order.then(ra.id.cmp(&rb.id))
            });
            let total = keyed.len();
            let page = keyed
                .into_iter()
                .skip(after)
                .take(end_cap.saturating_sub(after))
                .map(|(_, r)| r)
                .collect();
            (total, page)
        }
    };
    let names = request.properties.unwrap_or_default();
    let selection = Selection::from_names(&names);
    let results = page
        .iter()
        .map(|record| types.render(record, &selection))
        .collect();
    let end = (after + limit).min(MAX_RESULTS);
    let next_after = (end < total).then_some(end);
    Ok(SearchPage {
        total,
        results,
        next_after,
    })
}

/// `POST /crm/v3/objects/{type}/search`.
pub(crate) async fn search(
    shared: AppState,
    Path(type_text): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let object_type: ObjectType = object_type(&type_text)?;
    let body = parse_json(&body)?;
    if !body.is_object() {
        return Err(ApiError::validation(
            "The search request must be a JSON object",
        ));
    }
    let page = run(shared.read().of(object_type), &body)?;
    let mut response = json!({ "total": page.total, "results": page.results });
    if let Some(next) = page.next_after {
        response["paging"] = json!({"next": {"after": next.to_string()}});
    }
    Ok(json_response(StatusCode::OK, &response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_tokens_match_like_hubspot() {
        assert!(glob("*@mercy.org", "ann@mercy.org"));
        assert!(glob("mer*", "mercy"));
        assert!(!glob("mer*y", "merc"));
        assert!(glob("a*b*c", "axxbyyc"));
        let haystack = Operand::Text("mercy hospital ed".into());
        assert!(contains_token(&haystack, &Operand::Text("hospital".into())));
        assert!(!contains_token(&haystack, &Operand::Text("hosp".into())));
        assert!(contains_token(&haystack, &Operand::Text("hosp*".into())));
    }
}
