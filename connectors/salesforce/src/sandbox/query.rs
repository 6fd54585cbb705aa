//! Runs parsed SOQL against the org: binds names to the schema, filters, sorts, and renders pages.
//!
//! A query is evaluated once; the matching row numbers are kept under a query locator (a
//! server-side cursor), so fetching `nextRecordsUrl` costs one page of rendering, never a
//! re-evaluation. Records are rendered from the store when their page is fetched. Only the last
//! [`MAX_CURSORS`] cursors are kept, each for [`CURSOR_IDLE`] of inactivity, like Salesforce's
//! limited number of open query cursors. This module holds no locks of its own: the caller passes
//! the org it has read-locked.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::schema::{FieldType, ObjectType};
use super::soql::{
    self, CompareOp, Condition, FieldPath, LikePiece, Literal, LiteralAt, Select, SoqlError,
    SoqlErrorKind,
};
use super::store::{Org, Record, Value, normalize_id, write_json_string, write_json_value};

/// The page size when the client asks for none.
pub const DEFAULT_BATCH_SIZE: usize = 2000;
/// The bounds of `Sforce-Query-Options: batchSize=N`.
pub const MIN_BATCH_SIZE: usize = 200;
pub const MAX_BATCH_SIZE: usize = 2000;
/// How many open cursors are kept.
pub const MAX_CURSORS: usize = 64;
/// How long an unused cursor lives.
pub const CURSOR_IDLE: Duration = Duration::from_secs(15 * 60);

/// The page size a `Sforce-Query-Options` header asks for, clamped to 200..=2000.
pub fn batch_size_from_header(header: Option<&str>) -> Option<usize> {
    let header = header?;
    header.split(',').find_map(|option| {
        let (key, value) = option.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("batchSize") {
            return None;
        }
        let size: usize = value.trim().parse().ok()?;
        Some(size.clamp(MIN_BATCH_SIZE, MAX_BATCH_SIZE))
    })
}

/// The last field of a path: fixed for a known object, or looked up by name at run time behind a
/// polymorphic relationship (`What.Name`).
#[derive(Debug, Clone, Copy)]
enum Leaf {
    Fixed(usize),
    Polymorphic(&'static str),
}

/// A field path bound to the schema: reference fields to follow, then the leaf.
#[derive(Debug, Clone)]
struct BoundPath {
    hops: Vec<(ObjectType, usize)>,
    leaf: Leaf,
    leaf_type: FieldType,
    object: ObjectType,
}

impl BoundPath {
    /// The value at the end of the path for `record`, `None` when a parent is missing.
    fn resolve<'a>(&self, org: &'a Org, record: &'a Record) -> Option<&'a Value> {
        let mut current = record;
        let mut current_type = self.object;
        for &(_, reference) in &self.hops {
            let id = current.values.get(reference)?.as_text()?;
            let (object, _, parent) = org.find(id)?;
            current = parent;
            current_type = object;
        }
        let index = match self.leaf {
            Leaf::Fixed(index) => index,
            Leaf::Polymorphic(name) => current_type.field_index(name)?,
        };
        current.values.get(index)
    }
}

fn invalid_field(text: String, position: usize) -> SoqlError {
    SoqlError::new(SoqlErrorKind::InvalidField, text, Some(position))
}

/// Binds `path` starting at `object`.
fn bind_path(object: ObjectType, path: &FieldPath) -> Result<BoundPath, SoqlError> {
    let mut current = Some(object);
    let mut hops = Vec::new();
    let last = path.parts.len() - 1;
    // A path may start with the object's own name: `SELECT Contact.Name FROM Contact`.
    let parts: &[String] = if last > 0 && path.parts[0].eq_ignore_ascii_case(object.name()) {
        &path.parts[1..]
    } else {
        &path.parts
    };
    let last = parts.len() - 1;
    for part in &parts[..last] {
        let Some(here) = current else {
            return Err(invalid_field(
                format!(
                    "Didn't understand relationship '{part}' in field path. Polymorphic relationships in the sandbox end with Id or Name."
                ),
                path.position,
            ));
        };
        let Some(reference) = here.relationship_index(part) else {
            return Err(invalid_field(
                format!(
                    "Didn't understand relationship '{part}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
                ),
                path.position,
            ));
        };
        hops.push((here, reference));
        let targets = here.field(reference).reference_to;
        if targets.len() == 1 {
            current = Some(targets[0]);
        } else {
            // Behind a polymorphic reference the type is known only per row.
            current = None;
        }
    }
    let name = &parts[last];
    match current {
        Some(here) => {
            let Some(index) = here.field_index(name) else {
                let message = if hops.is_empty() {
                    format!(
                        "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                        here.name()
                    )
                } else {
                    format!("No such column '{name}' on entity '{}'.", here.name())
                };
                return Err(invalid_field(message, path.position));
            };
            Ok(BoundPath {
                hops,
                leaf: Leaf::Fixed(index),
                leaf_type: here.field(index).field_type,
                object,
            })
        }
        None => {
            let (leaf, leaf_type) = if name.eq_ignore_ascii_case("Id") {
                ("Id", FieldType::Id)
            } else if name.eq_ignore_ascii_case("Name") {
                ("Name", FieldType::String)
            } else {
                return Err(invalid_field(
                    format!(
                        "No such column '{name}' on entity 'Name'. Polymorphic relationships offer Id and Name."
                    ),
                    path.position,
                ));
            };
            Ok(BoundPath {
                hops,
                leaf: Leaf::Polymorphic(leaf),
                leaf_type,
                object,
            })
        }
    }
}

/// A `WHERE` condition bound to the schema, literals converted to stored values.
#[derive(Debug, Clone)]
enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Compare(BoundPath, CompareOp, Value),
    In(BoundPath, Vec<Value>, bool),
    Like(BoundPath, Vec<LikePiece>),
    Includes(BoundPath, Vec<Vec<String>>, bool),
}

fn type_error(path: &FieldPath, field_type: FieldType, literal: &LiteralAt) -> SoqlError {
    let quoting = if field_type.is_textual() {
        "should be enclosed in quotes"
    } else {
        "should not be enclosed in quotes"
    };
    invalid_field(
        format!(
            "value of filter criterion for field '{}' must be of type {} and {quoting}",
            path.dotted(),
            field_type.soql_name()
        ),
        literal.position,
    )
}

/// Converts a literal for comparison with a field of `field_type`.
fn literal_value(
    path: &FieldPath,
    field_type: FieldType,
    literal: &LiteralAt,
) -> Result<Value, SoqlError> {
    let value = match (&literal.value, field_type) {
        (Literal::Null, _) => Value::Null,
        (Literal::String(text, _), FieldType::Id | FieldType::Reference) => {
            match normalize_id(text) {
                Some(id) => Value::Text(id),
                None if text.is_empty() => Value::Null,
                None => {
                    return Err(SoqlError::new(
                        SoqlErrorKind::InvalidQueryFilterOperator,
                        format!("invalid ID field: {text}"),
                        Some(literal.position),
                    ));
                }
            }
        }
        (Literal::String(text, _), kind) if kind.is_textual() => Value::Text(text.clone()),
        (Literal::Number(number), FieldType::Int | FieldType::Double) => Value::Number(*number),
        (Literal::Bool(flag), FieldType::Boolean) => Value::Bool(*flag),
        (Literal::Date(date), FieldType::Date) => Value::Date(*date),
        (Literal::DateTime(at), FieldType::DateTime) => Value::DateTime(*at),
        _ => return Err(type_error(path, field_type, literal)),
    };
    Ok(value)
}

fn bind_filter(object: ObjectType, condition: &Condition) -> Result<Filter, SoqlError> {
    Ok(match condition {
        Condition::And(terms) => Filter::And(
            terms
                .iter()
                .map(|term| bind_filter(object, term))
                .collect::<Result<_, _>>()?,
        ),
        Condition::Or(terms) => Filter::Or(
            terms
                .iter()
                .map(|term| bind_filter(object, term))
                .collect::<Result<_, _>>()?,
        ),
        Condition::Not(inner) => Filter::Not(Box::new(bind_filter(object, inner)?)),
        Condition::Compare { field, op, value } => {
            let path = bind_path(object, field)?;
            let converted = literal_value(field, path.leaf_type, value)?;
            if converted.is_null() && !matches!(op, CompareOp::Eq | CompareOp::Ne) {
                return Err(invalid_field(
                    "null may only be compared with = or !=".to_string(),
                    value.position,
                ));
            }
            Filter::Compare(path, *op, converted)
        }
        Condition::In {
            field,
            values,
            negated,
        } => {
            let path = bind_path(object, field)?;
            let converted = values
                .iter()
                .map(|value| literal_value(field, path.leaf_type, value))
                .collect::<Result<_, _>>()?;
            Filter::In(path, converted, *negated)
        }
        Condition::Like { field, pattern } => {
            let path = bind_path(object, field)?;
            if !path.leaf_type.is_textual() || path.leaf_type == FieldType::MultiPicklist {
                return Err(invalid_field(
                    format!(
                        "invalid operator on {} field: LIKE",
                        path.leaf_type.soql_name()
                    ),
                    field.position,
                ));
            }
            let Literal::String(_, pieces) = &pattern.value else {
                return Err(type_error(field, FieldType::String, pattern));
            };
            Filter::Like(path, pieces.clone())
        }
        Condition::Includes {
            field,
            values,
            negated,
        } => {
            let path = bind_path(object, field)?;
            if path.leaf_type != FieldType::MultiPicklist {
                return Err(invalid_field(
                    format!(
                        "invalid operator on {} field: INCLUDES/EXCLUDES",
                        path.leaf_type.soql_name()
                    ),
                    field.position,
                ));
            }
            let sets = values
                .iter()
                .map(|value| match &value.value {
                    Literal::String(text, _) => Ok(split_multi(text)),
                    _ => Err(type_error(field, FieldType::String, value)),
                })
                .collect::<Result<_, _>>()?;
            Filter::Includes(path, sets, *negated)
        }
    })
}

fn split_multi(text: &str) -> Vec<String> {
    text.split(';')
        .map(|part| part.trim().to_lowercase())
        .filter(|part| !part.is_empty())
        .collect()
}

/// Case-insensitive text ordering without allocating.
fn compare_text(left: &str, right: &str) -> Ordering {
    left.chars()
        .flat_map(char::to_lowercase)
        .cmp(right.chars().flat_map(char::to_lowercase))
}

/// Orders two non-null values of a field of `field_type`; `None` when they are not comparable.
/// Text compares case-insensitively, ids byte-wise (as Salesforce orders them).
fn compare_values(left: &Value, right: &Value, field_type: FieldType) -> Option<Ordering> {
    match (left, right) {
        (Value::Text(left), Value::Text(right))
            if matches!(field_type, FieldType::Id | FieldType::Reference) =>
        {
            Some(left.as_bytes().cmp(right.as_bytes()))
        }
        (Value::Text(left), Value::Text(right)) => Some(compare_text(left, right)),
        (Value::Number(left), Value::Number(right)) => left.partial_cmp(right),
        (Value::Bool(left), Value::Bool(right)) => Some(left.cmp(right)),
        (Value::Date(left), Value::Date(right)) => Some(left.cmp(right)),
        (Value::DateTime(left), Value::DateTime(right)) => Some(left.cmp(right)),
        _ => None,
    }
}

impl Filter {
    fn matches(&self, org: &Org, record: &Record) -> bool {
        match self {
            Filter::And(terms) => terms.iter().all(|term| term.matches(org, record)),
            Filter::Or(terms) => terms.iter().any(|term| term.matches(org, record)),
            Filter::Not(inner) => !inner.matches(org, record),
            Filter::Compare(path, op, wanted) => {
                let value = path.resolve(org, record).unwrap_or(&Value::Null);
                match (value.is_null(), wanted.is_null()) {
                    (true, true) => *op == CompareOp::Eq,
                    (false, true) => *op == CompareOp::Ne,
                    // SOQL's `!=` keeps rows whose field is null.
                    (true, false) => *op == CompareOp::Ne,
                    (false, false) => match compare_values(value, wanted, path.leaf_type) {
                        Some(ordering) => match op {
                            CompareOp::Eq => ordering == Ordering::Equal,
                            CompareOp::Ne => ordering != Ordering::Equal,
                            CompareOp::Lt => ordering == Ordering::Less,
                            CompareOp::Le => ordering != Ordering::Greater,
                            CompareOp::Gt => ordering == Ordering::Greater,
                            CompareOp::Ge => ordering != Ordering::Less,
                        },
                        None => *op == CompareOp::Ne,
                    },
                }
            }
            Filter::In(path, values, negated) => {
                let value = path.resolve(org, record).unwrap_or(&Value::Null);
                let found = values.iter().any(|candidate| {
                    if value.is_null() || candidate.is_null() {
                        value.is_null() && candidate.is_null()
                    } else {
                        compare_values(value, candidate, path.leaf_type) == Some(Ordering::Equal)
                    }
                });
                found != *negated
            }
            Filter::Like(path, pattern) => match path.resolve(org, record) {
                Some(Value::Text(text)) => soql::like_matches(pattern, text),
                _ => false,
            },
            Filter::Includes(path, sets, negated) => {
                let held: Vec<String> = match path.resolve(org, record) {
                    Some(Value::Text(text)) => split_multi(text),
                    _ => Vec::new(),
                };
                let any = sets
                    .iter()
                    .any(|set| set.iter().all(|value| held.contains(value)));
                any != *negated
            }
        }
    }
}

/// How one selected item is rendered: a field, or a relationship object with its own fields.
#[derive(Debug, Clone)]
enum Output {
    Field {
        name: &'static str,
        path: BoundPath,
    },
    Relationship {
        name: &'static str,
        reference: usize,
        children: Vec<Output>,
    },
}

fn canonical_leaf_name(path: &BoundPath) -> &'static str {
    match path.leaf {
        Leaf::Fixed(index) => {
            let object = path.hops.last().map_or(path.object, |&(here, reference)| {
                here.field(reference).reference_to[0]
            });
            object.field(index).name
        }
        Leaf::Polymorphic(name) => name,
    }
}

/// Adds `path` to the output tree (merging `Owner.Name` and `Owner.Email` into one `Owner`).
fn add_output(outputs: &mut Vec<Output>, path: &BoundPath, depth: usize) {
    if depth == path.hops.len() {
        let name = canonical_leaf_name(path);
        if !outputs.iter().any(
            |output| matches!(output, Output::Field { name: existing, .. } if *existing == name),
        ) {
            let mut leaf_path = path.clone();
            leaf_path.hops.drain(..depth);
            outputs.push(Output::Field {
                name,
                path: leaf_path,
            });
        }
        return;
    }
    let (object, reference) = path.hops[depth];
    let name = object.field(reference).relationship_name.unwrap_or("");
    let existing = outputs.iter_mut().position(
        |output| matches!(output, Output::Relationship { name: existing, .. } if *existing == name),
    );
    let index = existing.unwrap_or_else(|| {
        outputs.push(Output::Relationship {
            name,
            reference,
            children: Vec::new(),
        });
        outputs.len() - 1
    });
    if let Output::Relationship { children, .. } = &mut outputs[index] {
        add_output(children, path, depth + 1);
    }
}

/// What the select list becomes.
#[derive(Debug, Clone)]
enum Projection {
    Count,
    CountField(BoundPath),
    Records(Vec<Output>),
}

/// A bound, evaluated query: the rows that matched, in order, and how to render them.
#[derive(Debug)]
pub struct Cursor {
    pub object: ObjectType,
    pub rows: Vec<u32>,
    projection: Projection,
    pub version: String,
    pub batch_size: usize,
}

/// Binds and evaluates `text` against `org`.
pub fn run(
    org: &Org,
    text: &str,
    include_deleted: bool,
    version: &str,
    batch_size: usize,
) -> Result<Cursor, SoqlError> {
    let query = soql::parse(text)?;
    let Some(object) = ObjectType::from_name(&query.from) else {
        return Err(SoqlError::new(
            SoqlErrorKind::InvalidType,
            format!(
                "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                query.from
            ),
            Some(query.from_position),
        ));
    };
    let projection = match &query.select {
        Select::Count => Projection::Count,
        Select::CountField(field) => Projection::CountField(bind_path(object, field)?),
        Select::Fields(fields) => {
            let mut outputs = Vec::new();
            let mut seen = Vec::new();
            for field in fields {
                let path = bind_path(object, field)?;
                let key = field.dotted().to_lowercase();
                if seen.contains(&key) {
                    return Err(SoqlError::new(
                        SoqlErrorKind::MalformedQuery,
                        format!("duplicate field selected: {}", field.dotted()),
                        Some(field.position),
                    ));
                }
                seen.push(key);
                add_output(&mut outputs, &path, 0);
            }
            Projection::Records(outputs)
        }
    };
    let filter = query
        .filter
        .as_ref()
        .map(|condition| bind_filter(object, condition))
        .transpose()?;
    let order: Vec<(BoundPath, bool, bool)> = query
        .order_by
        .iter()
        .map(|item| {
            let path = bind_path(object, &item.field)?;
            if path.leaf_type == FieldType::MultiPicklist || (path.leaf_type == FieldType::TextArea && matches!(path.leaf, Leaf::Fixed(index) if object_of_leaf(&path).field(index).length > 255)) {
                return Err(invalid_field(
                    format!("field '{}' can not be sorted in a query call", item.field.dotted()),
                    item.field.position,
                ));
            }
            Ok((path, item.descending, item.nulls_first))
        })
        .collect::<Result<_, SoqlError>>()?;

    let store = org.store(object);
    let mut rows: Vec<u32> = store
        .records
        .iter()
        .enumerate()
        .filter(|(_, record)| include_deleted || !record.is_deleted())
        .filter(|(_, record)| {
            filter
                .as_ref()
                .is_none_or(|filter| filter.matches(org, record))
        })
        .map(|(row, _)| row as u32)
        .collect();
    if !order.is_empty() {
        rows.sort_by(|&left, &right| {
            let (left, right) = (
                &store.records[left as usize],
                &store.records[right as usize],
            );
            for (path, descending, nulls_first) in &order {
                let left_value = path.resolve(org, left).unwrap_or(&Value::Null);
                let right_value = path.resolve(org, right).unwrap_or(&Value::Null);
                let ordering = match (left_value.is_null(), right_value.is_null()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => {
                        if *nulls_first {
                            Ordering::Less
                        } else {
                            Ordering::Greater
                        }
                    }
                    (false, true) => {
                        if *nulls_first {
                            Ordering::Greater
                        } else {
                            Ordering::Less
                        }
                    }
                    (false, false) => {
                        let ordering = compare_values(left_value, right_value, path.leaf_type)
                            .unwrap_or(Ordering::Equal);
                        if *descending {
                            ordering.reverse()
                        } else {
                            ordering
                        }
                    }
                };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            Ordering::Equal
        });
    }
    let offset = query.offset.unwrap_or(0) as usize;
    rows.drain(..offset.min(rows.len()));
    if let Some(limit) = query.limit {
        rows.truncate(limit.min(usize::MAX as u64) as usize);
    }
    Ok(Cursor {
        object,
        rows,
        projection,
        version: version.to_string(),
        batch_size,
    })
}

fn object_of_leaf(path: &BoundPath) -> ObjectType {
    path.hops.last().map_or(path.object, |&(here, reference)| {
        here.field(reference).reference_to[0]
    })
}

impl Cursor {
    /// Whether every row fits in the first page (no locator needed).
    pub fn single_page(&self) -> bool {
        !matches!(self.projection, Projection::Records(_)) || self.rows.len() <= self.batch_size
    }

    /// The response body for the page starting at `offset`. `locator` names this cursor when more
    /// pages follow.
    pub fn render_page(
        &self,
        org: &Org,
        offset: usize,
        batch_size: usize,
        locator: Option<&str>,
    ) -> String {
        let total = self.rows.len();
        match &self.projection {
            Projection::Count => format!("{{\"totalSize\":{total},\"done\":true,\"records\":[]}}"),
            Projection::CountField(path) => {
                let store = org.store(self.object);
                let count = self
                    .rows
                    .iter()
                    .filter(|&&row| {
                        store
                            .get(row)
                            .and_then(|record| path.resolve(org, record))
                            .is_some_and(|value| !value.is_null())
                    })
                    .count();
                format!(
                    "{{\"totalSize\":1,\"done\":true,\"records\":[{{\"attributes\":{{\"type\":\"AggregateResult\"}},\"expr0\":{count}}}]}}"
                )
            }
            Projection::Records(outputs) => {
                let start = offset.min(total);
                let end = start.saturating_add(batch_size).min(total);
                let done = end >= total;
                let mut out = String::with_capacity(64 + (end - start) * 256);
                out.push_str(&format!("{{\"totalSize\":{total},\"done\":{done},"));
                if let (false, Some(locator)) = (done, locator) {
                    out.push_str("\"nextRecordsUrl\":");
                    write_json_string(
                        &mut out,
                        &format!("/services/data/v{}/query/{locator}-{end}", self.version),
                    );
                    out.push(',');
                }
                out.push_str("\"records\":[");
                let store = org.store(self.object);
                for (position, &row) in self.rows[start..end].iter().enumerate() {
                    if position > 0 {
                        out.push(',');
                    }
                    if let Some(record) = store.get(row) {
                        render_record(&mut out, org, self.object, record, outputs, &self.version);
                    } else {
                        out.push_str("null");
                    }
                }
                out.push_str("]}");
                out
            }
        }
    }
}

fn write_attributes(out: &mut String, object: ObjectType, id: &str, version: &str) {
    out.push_str("\"attributes\":{\"type\":\"");
    out.push_str(object.name());
    out.push_str("\",\"url\":");
    write_json_string(
        out,
        &format!("/services/data/v{version}/sobjects/{}/{id}", object.name()),
    );
    out.push('}');
}

fn render_record(
    out: &mut String,
    org: &Org,
    object: ObjectType,
    record: &Record,
    outputs: &[Output],
    version: &str,
) {
    out.push('{');
    write_attributes(out, object, record.id(), version);
    for output in outputs {
        out.push(',');
        match output {
            Output::Field { name, path } => {
                write_json_string(out, name);
                out.push(':');
                let field_type = match path.leaf {
                    Leaf::Fixed(index) => object.field(index).field_type,
                    Leaf::Polymorphic(_) => path.leaf_type,
                };
                let value = match path.leaf {
                    Leaf::Fixed(index) => record.values.get(index),
                    Leaf::Polymorphic(name) => object
                        .field_index(name)
                        .and_then(|index| record.values.get(index)),
                };
                write_json_value(out, value.unwrap_or(&Value::Null), field_type);
            }
            Output::Relationship {
                name,
                reference,
                children,
            } => {
                write_json_string(out, name);
                out.push(':');
                let parent = record
                    .values
                    .get(*reference)
                    .and_then(Value::as_text)
                    .and_then(|id| org.find(id));
                match parent {
                    Some((parent_type, _, parent)) => {
                        render_record(out, org, parent_type, parent, children, version)
                    }
                    None => out.push_str("null"),
                }
            }
        }
    }
    out.push('}');
}

/// Renders a whole record with all fields (or `fields`, already bound) for `GET /sobjects/T/id`.
pub fn render_full_record(
    object: ObjectType,
    record: &Record,
    fields: Option<&[usize]>,
    version: &str,
) -> String {
    let mut out = String::with_capacity(1024);
    out.push('{');
    write_attributes(&mut out, object, record.id(), version);
    let all: Vec<usize>;
    let indexes = match fields {
        Some(fields) => fields,
        None => {
            all = (0..object.fields().len()).collect();
            &all
        }
    };
    for &index in indexes {
        let field = object.field(index);
        out.push(',');
        write_json_string(&mut out, field.name);
        out.push(':');
        write_json_value(
            &mut out,
            record.values.get(index).unwrap_or(&Value::Null),
            field.field_type,
        );
    }
    out.push('}');
    out
}

/// The open cursors, by locator.
#[derive(Debug, Default)]
pub struct Cursors {
    open: HashMap<String, (Arc<Cursor>, Instant)>,
    order: VecDeque<String>,
    counter: u64,
}

impl Cursors {
    /// Keeps `cursor`; answers its locator and a handle to it.
    pub fn open(&mut self, cursor: Cursor) -> (String, Arc<Cursor>) {
        self.counter += 1;
        let locator = super::store::make_id("01g", self.counter);
        self.evict(Instant::now());
        while self.order.len() >= MAX_CURSORS {
            if let Some(oldest) = self.order.pop_front() {
                self.open.remove(&oldest);
            }
        }
        let cursor = Arc::new(cursor);
        self.open
            .insert(locator.clone(), (Arc::clone(&cursor), Instant::now()));
        self.order.push_back(locator.clone());
        (locator, cursor)
    }

    /// The cursor under `locator`, touched.
    pub fn get(&mut self, locator: &str) -> Option<Arc<Cursor>> {
        let now = Instant::now();
        self.evict(now);
        let (cursor, used) = self.open.get_mut(locator)?;
        *used = now;
        Some(Arc::clone(cursor))
    }

    fn evict(&mut self, now: Instant) {
        let open = &mut self.open;
        self.order.retain(|locator| {
            let keep = open
                .get(locator)
                .is_some_and(|(_, used)| now.duration_since(*used) < CURSOR_IDLE);
            if !keep {
                open.remove(locator);
            }
            keep
        });
    }
}

/// Splits `01gDn0000000001AAA-2000` into locator and offset.
pub fn parse_locator(text: &str) -> Option<(&str, usize)> {
    let (locator, offset) = text.rsplit_once('-')?;
    Some((locator, offset.parse().ok()?))
}
