//! The sandbox's in-memory CRM: one ordered record map per object type (ids → records, so that a
//! list cursor is a `BTreeMap` range, O(log n)), the property definitions and unique-value indexes
//! of each type, the association edges (both directions), owners and the deal pipeline.
//!
//! Writes go through [`TypeStore::validate`] first (nothing is applied unless every value is
//! valid), then [`TypeStore::insert`] / [`TypeStore::update`], which keep `updatedAt` and the
//! unique indexes right. Rendering to HubSpot's JSON shapes lives here too. No HTTP, no locking:
//! the server wraps one [`Store`] in a `RwLock`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};

use super::schema::{
    AssociationType, Calculated, ObjectType, PropertyDef, PropertyKind, association_type_name,
    association_types,
};

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `2026-05-20T20:49:32.123Z`, as HubSpot writes times.
pub(crate) fn iso_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Epoch milliseconds (`1716238172123`), RFC 3339 (`2026-05-20T20:49:32Z`, any offset), a naive
/// datetime taken as UTC, or a date (midnight UTC). Times chrono cannot represent are refused.
pub(crate) fn parse_time_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return DateTime::<Utc>::from_timestamp_millis(ms).map(|_| ms);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    if let Ok(time) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(time.and_utc().timestamp_millis());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc().timestamp_millis())
}

/// One invalid property value, as HubSpot lists them in "Property values were not valid".
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PropError {
    pub name: String,
    pub code: &'static str,
    pub message: String,
}

impl PropError {
    fn new(name: &str, code: &'static str, message: impl Into<String>) -> PropError {
        PropError {
            name: name.to_string(),
            code,
            message: message.into(),
        }
    }
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WriteError {
    /// 400 `VALIDATION_ERROR`, "Property values were not valid: […]".
    Invalid(Vec<PropError>),
    /// 409 `CONFLICT` (a contact with that email exists).
    Conflict { message: String },
    /// 400: an association names a type id or a record that does not exist.
    Association(String),
}

impl WriteError {
    pub(crate) fn into_api_error(self) -> super::error::ApiError {
        use super::error::ApiError;
        match self {
            WriteError::Invalid(problems) => {
                let listed: Vec<Value> = problems
                    .iter()
                    .map(|p| json!({"isValid": false, "message": p.message, "error": p.code, "name": p.name, "localizedErrorMessage": p.message}))
                    .collect();
                let errors: Vec<Value> = problems
                    .iter()
                    .map(|p| json!({"message": p.message, "code": p.code, "context": {"propertyName": [p.name]}}))
                    .collect();
                ApiError::validation(format!(
                    "Property values were not valid: {}",
                    serde_json::to_string(&listed).unwrap_or_default()
                ))
                .with_errors(Value::Array(errors))
            }
            WriteError::Conflict { message } => {
                ApiError::new(axum::http::StatusCode::CONFLICT, "CONFLICT", message)
            }
            WriteError::Association(message) => ApiError::validation(message),
        }
    }
}

/// One record. Calculated properties (id, created, modified) are derived from the fields here.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub id: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub archived_ms: Option<i64>,
    /// Stored values, sorted by property index.
    values: Vec<(u16, Box<str>)>,
}

impl Record {
    pub(crate) fn is_archived(&self) -> bool {
        self.archived_ms.is_some()
    }

    fn stored(&self, property: u16) -> Option<&str> {
        self.values
            .binary_search_by_key(&property, |(p, _)| *p)
            .ok()
            .map(|at| &*self.values[at].1)
    }

    fn set(&mut self, property: u16, value: Option<String>) -> Option<Box<str>> {
        match (
            self.values.binary_search_by_key(&property, |(p, _)| *p),
            value,
        ) {
            (Ok(at), Some(value)) => Some(std::mem::replace(
                &mut self.values[at].1,
                value.into_boxed_str(),
            )),
            (Ok(at), None) => Some(self.values.remove(at).1),
            (Err(at), Some(value)) => {
                self.values.insert(at, (property, value.into_boxed_str()));
                None
            }
            (Err(_), None) => None,
        }
    }
}

/// A validated change to one property (`None` clears it).
pub(crate) type Change = (u16, Option<String>);

/// The records and properties of one object type.
#[derive(Debug)]
pub(crate) struct TypeStore {
    pub object_type: ObjectType,
    pub properties: Vec<PropertyDef>,
    by_name: HashMap<String, u16>,
    pub records: BTreeMap<u64, Record>,
    next_id: u64,
    /// Unique properties: value → id of the live record holding it.
    unique: HashMap<u16, HashMap<Box<str>, u64>>,
    /// Seeded values that collided with an earlier record's value of a unique property.
    seed_collisions: HashMap<u16, usize>,
}

impl TypeStore {
    pub(crate) fn new(object_type: ObjectType, properties: Vec<PropertyDef>) -> TypeStore {
        let mut store = TypeStore {
            object_type,
            properties: Vec::new(),
            by_name: HashMap::new(),
            records: BTreeMap::new(),
            next_id: object_type.id_base() + 1,
            unique: HashMap::new(),
            seed_collisions: HashMap::new(),
        };
        for def in properties {
            store.push_property(def);
        }
        store
    }

    fn push_property(&mut self, def: PropertyDef) {
        let index = self.properties.len() as u16;
        self.by_name.insert(def.name.clone(), index);
        let enforced = def.has_unique_value
            || (self.object_type == ObjectType::Contacts && def.name == "email");
        if enforced {
            self.unique.insert(index, HashMap::new());
        }
        self.properties.push(def);
    }

    /// Adds a property (the properties API). `Err` names the reason.
    pub(crate) fn add_property(&mut self, def: PropertyDef) -> Result<&PropertyDef, String> {
        if self.by_name.contains_key(&def.name) {
            return Err(format!("A property named '{}' already exists.", def.name));
        }
        if self.properties.len() >= u16::MAX as usize {
            return Err("Too many properties on this object type.".to_string());
        }
        self.push_property(def);
        Ok(self.properties.last().expect("just pushed"))
    }

    pub(crate) fn property(&self, name: &str) -> Option<(u16, &PropertyDef)> {
        self.by_name
            .get(name)
            .map(|&index| (index, &self.properties[index as usize]))
    }

    /// Whether the property is enforced unique (declared `hasUniqueValue`, or a contact's email).
    pub(crate) fn is_unique(&self, property: u16) -> bool {
        self.unique.contains_key(&property)
    }

    /// The value of a property on a record, calculated ones included.
    pub(crate) fn value<'a>(&self, record: &'a Record, property: u16) -> Option<Cow<'a, str>> {
        match self.properties.get(property as usize)?.calculated {
            Some(Calculated::ObjectId) => Some(Cow::Owned(record.id.to_string())),
            Some(Calculated::CreatedAt) => Some(Cow::Owned(iso_ms(record.created_ms))),
            Some(Calculated::ModifiedAt) => Some(Cow::Owned(iso_ms(record.updated_ms))),
            None => record.stored(property).map(Cow::Borrowed),
        }
    }

    /// A time or number property's value as a number (epoch ms for dates), for comparisons.
    pub(crate) fn numeric_value(&self, record: &Record, property: u16) -> Option<f64> {
        let def = self.properties.get(property as usize)?;
        match def.calculated {
            Some(Calculated::ObjectId) => Some(record.id as f64),
            Some(Calculated::CreatedAt) => Some(record.created_ms as f64),
            Some(Calculated::ModifiedAt) => Some(record.updated_ms as f64),
            None => {
                let raw = record.stored(property)?;
                match def.kind {
                    PropertyKind::Date | PropertyKind::Datetime => {
                        parse_time_ms(raw).map(|ms| ms as f64)
                    }
                    _ => raw.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
                }
            }
        }
    }

    /// A live (not archived) record.
    pub(crate) fn live(&self, id: u64) -> Option<&Record> {
        self.records.get(&id).filter(|r| !r.is_archived())
    }

    /// Resolves an id as the client gave it: the record id, or the value of `id_property`.
    pub(crate) fn resolve(
        &self,
        id: &str,
        id_property: Option<&str>,
        archived: bool,
    ) -> Option<u64> {
        let wanted = |record: &Record| record.is_archived() == archived;
        match id_property.filter(|p| !p.is_empty() && *p != "hs_object_id") {
            None => id
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|id| self.records.get(id).is_some_and(wanted)),
            Some(name) => {
                let (property, _) = self.property(name)?;
                if !archived && let Some(index) = self.unique.get(&property) {
                    return index.get(id).copied();
                }
                self.records
                    .values()
                    .find(|record| wanted(record) && record.stored(property) == Some(id))
                    .map(|record| record.id)
            }
        }
    }

    /// Checks every property of a write. `creating` adds the create-only rules (required values).
    pub(crate) fn validate(
        &self,
        properties: &Map<String, Value>,
        owners: &[Owner],
        creating: bool,
    ) -> Result<Vec<Change>, WriteError> {
        let mut changes = Vec::with_capacity(properties.len());
        let mut problems = Vec::new();
        for (name, value) in properties {
            let Some((index, def)) = self.property(name) else {
                problems.push(PropError::new(
                    name,
                    "PROPERTY_DOESNT_EXIST",
                    format!("Property \"{name}\" does not exist"),
                ));
                continue;
            };
            if def.calculated.is_some() {
                problems.push(PropError::new(
                    name,
                    "READ_ONLY_VALUE",
                    format!("{name} is a read only property; its value cannot be set."),
                ));
                continue;
            }
            let raw = match value {
                Value::Null => None,
                Value::String(text) if text.is_empty() => None,
                Value::String(text) => Some(text.clone()),
                Value::Number(number) => Some(number.to_string()),
                Value::Bool(flag) => Some(flag.to_string()),
                Value::Array(_) | Value::Object(_) => {
                    problems.push(PropError::new(
                        name,
                        "INVALID_VALUE",
                        format!("{value} is not a valid value for {name}"),
                    ));
                    continue;
                }
            };
            match raw.map(|raw| normalize(def, &raw, owners)).transpose() {
                Ok(value) => changes.push((index, value)),
                Err(problem) => problems.push(problem),
            }
        }
        if creating && self.object_type.is_engagement() {
            let has_timestamp = self
                .property("hs_timestamp")
                .is_some_and(|(index, _)| changes.iter().any(|(p, v)| *p == index && v.is_some()));
            if !has_timestamp {
                problems.push(PropError::new(
                    "hs_timestamp",
                    "REQUIRED_FIELD",
                    "hs_timestamp is required",
                ));
            }
        }
        if problems.is_empty() {
            Ok(changes)
        } else {
            Err(WriteError::Invalid(problems))
        }
    }

    /// Refuses changes that would give a unique property a value another live record holds.
    pub(crate) fn check_unique(
        &self,
        changes: &[Change],
        record_id: Option<u64>,
    ) -> Result<(), WriteError> {
        for (property, value) in changes {
            let (Some(index), Some(value)) = (self.unique.get(property), value) else {
                continue;
            };
            if let Some(&holder) = index.get(value.as_str())
                && Some(holder) != record_id
            {
                let def = &self.properties[*property as usize];
                if self.object_type == ObjectType::Contacts && def.name == "email" {
                    return Err(WriteError::Conflict {
                        message: format!("Contact already exists. Existing ID: {holder}"),
                    });
                }
                return Err(WriteError::Invalid(vec![PropError::new(
                    &def.name,
                    "NON_UNIQUE_VALUE",
                    format!(
                        "{value} already has that value on {} {holder}; {} must be unique",
                        self.object_type.singular(),
                        def.name
                    ),
                )]));
            }
        }
        Ok(())
    }

    /// Creates a record from validated, unique-checked changes; returns its id.
    pub(crate) fn insert(&mut self, changes: Vec<Change>, now: i64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut record = Record {
            id,
            created_ms: now,
            updated_ms: now,
            archived_ms: None,
            values: Vec::new(),
        };
        self.apply(&mut record, changes);
        self.records.insert(id, record);
        id
    }

    /// Applies validated, unique-checked changes to a live record. Like HubSpot, a write that
    /// changes no value leaves the modification time alone.
    pub(crate) fn update(&mut self, id: u64, changes: Vec<Change>, now: i64) -> bool {
        let Some(mut record) = self.records.remove(&id) else {
            return false;
        };
        let changed = changes
            .iter()
            .any(|(property, value)| record.stored(*property) != value.as_deref());
        self.apply(&mut record, changes);
        if changed {
            record.updated_ms = now.max(record.created_ms);
        }
        self.records.insert(id, record);
        true
    }

    fn apply(&mut self, record: &mut Record, changes: Vec<Change>) {
        let completed_at = self.completion_change(record, &changes);
        for (property, value) in changes.into_iter().chain(completed_at) {
            let new_value = value.clone();
            let old = record.set(property, value);
            if let Some(index) = self.unique.get_mut(&property) {
                if let Some(old) = old
                    && index.get(&old) == Some(&record.id)
                {
                    index.remove(&old);
                }
                if let Some(new_value) = new_value {
                    index.insert(new_value.into_boxed_str(), record.id);
                }
            }
        }
    }

    /// A task that becomes COMPLETED gets `hs_task_completion_date`, as HubSpot sets it.
    fn completion_change(&self, record: &Record, changes: &[Change]) -> Option<Change> {
        if self.object_type != ObjectType::Tasks {
            return None;
        }
        let (status, _) = self.property("hs_task_status")?;
        let (completion, _) = self.property("hs_task_completion_date")?;
        let completes = changes
            .iter()
            .any(|(p, v)| *p == status && v.as_deref() == Some("COMPLETED"));
        let sets_completion = changes.iter().any(|(p, _)| *p == completion);
        let was_completed = record.stored(status) == Some("COMPLETED");
        (completes && !sets_completion && !was_completed)
            .then(|| (completion, Some(iso_ms(now_ms()))))
    }

    /// Archives a live record; its unique values become free.
    pub(crate) fn archive(&mut self, id: u64, now: i64) -> bool {
        let Some(record) = self.records.get_mut(&id).filter(|r| !r.is_archived()) else {
            return false;
        };
        record.archived_ms = Some(now);
        record.updated_ms = now.max(record.updated_ms);
        for (property, index) in &mut self.unique {
            if let Some(value) = record.stored(*property)
                && index.get(value) == Some(&id)
            {
                index.remove(value);
            }
        }
        true
    }

    /// Loads a seeded record as is (deterministic id, world timestamps). A value that collides
    /// with an earlier record's unique value is kept on the record but left out of the index.
    pub(crate) fn seed(
        &mut self,
        id: u64,
        created_ms: i64,
        updated_ms: i64,
        values: Vec<(&str, String)>,
    ) {
        let mut record = Record {
            id,
            created_ms,
            updated_ms: updated_ms.max(created_ms),
            archived_ms: None,
            values: Vec::with_capacity(values.len()),
        };
        for (name, value) in values {
            let Some(&property) = self.by_name.get(name) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            if let Some(index) = self.unique.get_mut(&property) {
                if index.contains_key(value.as_str()) {
                    *self.seed_collisions.entry(property).or_default() += 1;
                } else {
                    index.insert(value.clone().into_boxed_str(), id);
                }
            }
            record.set(property, Some(value));
        }
        self.next_id = self.next_id.max(id + 1);
        self.records.insert(id, record);
    }

    /// After seeding: a declared-unique property whose seeded values collide cannot be unique.
    pub(crate) fn finish_seeding(&mut self) {
        for (property, _) in std::mem::take(&mut self.seed_collisions) {
            let def = &mut self.properties[property as usize];
            if def.has_unique_value {
                def.has_unique_value = false;
                self.unique.remove(&property);
            }
        }
    }

    /// Sets the modified time of the first `count` live records to `at` (the admin endpoint).
    pub(crate) fn touch(&mut self, count: usize, at: i64) -> usize {
        let mut touched = 0;
        for record in self
            .records
            .values_mut()
            .filter(|r| !r.is_archived())
            .take(count)
        {
            record.updated_ms = at.max(record.created_ms);
            touched += 1;
        }
        touched
    }

    /// The object JSON (`id`, `properties`, `createdAt`, `updatedAt`, `archived`, `archivedAt`).
    pub(crate) fn render(&self, record: &Record, selection: &Selection<'_>) -> Value {
        let mut properties = Map::new();
        let mut put = |index: u16| {
            let name = self.properties[index as usize].name.clone();
            let value = self
                .value(record, index)
                .map(|v| Value::String(v.into_owned()))
                .unwrap_or(Value::Null);
            properties.insert(name, value);
        };
        for name in [
            self.object_type.created_property(),
            self.object_type.modified_property(),
            "hs_object_id",
        ] {
            if let Some((index, _)) = self.property(name) {
                put(index);
            }
        }
        match selection {
            Selection::Defaults => {
                for name in self.object_type.default_properties() {
                    if let Some((index, _)) = self.property(name) {
                        put(index);
                    }
                }
            }
            Selection::Named(names) => {
                for name in names.iter() {
                    if let Some((index, _)) = self.property(name) {
                        put(index);
                    }
                }
            }
            Selection::Written => {
                for (index, _) in &record.values {
                    put(*index);
                }
            }
        }
        let mut object = Map::new();
        object.insert("id".into(), json!(record.id.to_string()));
        object.insert("properties".into(), Value::Object(properties));
        object.insert("createdAt".into(), json!(iso_ms(record.created_ms)));
        object.insert("updatedAt".into(), json!(iso_ms(record.updated_ms)));
        object.insert("archived".into(), json!(record.is_archived()));
        if let Some(archived_ms) = record.archived_ms {
            object.insert("archivedAt".into(), json!(iso_ms(archived_ms)));
        }
        Value::Object(object)
    }

    /// A property definition as the properties API returns it.
    pub(crate) fn render_property(&self, def: &PropertyDef) -> Value {
        let options: Vec<Value> = def
            .options
            .iter()
            .enumerate()
            .map(|(order, option)| json!({"label": option.label, "value": option.value, "displayOrder": order, "hidden": false, "description": ""}))
            .collect();
        json!({
            "name": def.name,
            "label": def.label,
            "type": def.kind.as_str(),
            "fieldType": def.field_type,
            "description": def.description,
            "groupName": def.group_name,
            "options": options,
            "displayOrder": def.display_order,
            "calculated": def.calculated.is_some(),
            "externalOptions": def.external_options,
            "hasUniqueValue": def.has_unique_value,
            "hidden": false,
            "hubspotDefined": def.hubspot_defined,
            "formField": !def.hubspot_defined,
            "archived": false,
            "createdAt": iso_ms(def.created_ms),
            "updatedAt": iso_ms(def.created_ms),
            "modificationMetadata": {
                "archivable": !def.hubspot_defined,
                "readOnlyDefinition": def.hubspot_defined,
                "readOnlyValue": def.calculated.is_some(),
            },
        })
    }
}

/// Which properties a read returns.
#[derive(Debug, Clone)]
pub(crate) enum Selection<'a> {
    /// The type's defaults (no `properties` in the request).
    Defaults,
    /// The named ones (unknown names are skipped; requested but empty ones are `null`).
    Named(&'a [String]),
    /// Every property the record has a value for (write responses).
    Written,
}

impl<'a> Selection<'a> {
    pub(crate) fn from_names(names: &'a [String]) -> Selection<'a> {
        if names.is_empty() {
            Selection::Defaults
        } else {
            Selection::Named(names)
        }
    }
}

fn normalize(def: &PropertyDef, raw: &str, owners: &[Owner]) -> Result<String, PropError> {
    let name = def.name.as_str();
    match def.kind {
        PropertyKind::String => {
            if raw.len() > 65_536 {
                Err(PropError::new(
                    name,
                    "INVALID_STRING",
                    format!("{name} is longer than 65536 characters"),
                ))
            } else {
                Ok(raw.to_string())
            }
        }
        PropertyKind::Number => match raw.trim().parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(raw.trim().to_string()),
            _ => Err(PropError::new(
                name,
                "INVALID_LONG",
                format!("{raw} was not a valid number"),
            )),
        },
        PropertyKind::Datetime => parse_time_ms(raw).map(iso_ms).ok_or_else(|| {
            PropError::new(
                name,
                "INVALID_DATE",
                format!("{raw} is not a valid datetime (epoch milliseconds or ISO 8601)"),
            )
        }),
        PropertyKind::Date => parse_time_ms(raw)
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .map(|time| time.format("%Y-%m-%d").to_string())
            .ok_or_else(|| {
                PropError::new(name, "INVALID_DATE", format!("{raw} is not a valid date"))
            }),
        PropertyKind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok("true".into()),
            "false" => Ok("false".into()),
            _ => Err(PropError::new(
                name,
                "INVALID_BOOLEAN",
                format!("{raw} was not a valid boolean"),
            )),
        },
        PropertyKind::Enumeration if def.external_options => {
            let known = raw
                .trim()
                .parse::<u64>()
                .ok()
                .is_some_and(|id| owners.iter().any(|o| o.id == id));
            if known {
                Ok(raw.trim().to_string())
            } else {
                Err(PropError::new(
                    name,
                    "INVALID_OWNER_ID",
                    format!("{raw} is not a valid owner id"),
                ))
            }
        }
        PropertyKind::Enumeration => {
            let wanted: Vec<&str> = if def.is_multi_select() {
                raw.split(';')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .collect()
            } else {
                vec![raw]
            };
            for value in &wanted {
                if !def.options.iter().any(|o| o.value == *value) {
                    let allowed: Vec<&str> = def.options.iter().map(|o| o.value.as_str()).collect();
                    return Err(PropError::new(
                        name,
                        "INVALID_OPTION",
                        format!(
                            "{value} was not one of the allowed options: [{}]",
                            allowed.join(", ")
                        ),
                    ));
                }
            }
            Ok(wanted.join(";"))
        }
    }
}

/// The type ids of one association edge (at most four; HubSpot-defined pairs have one or two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TypeIds {
    ids: [u16; 4],
    len: u8,
}

impl TypeIds {
    fn insert(&mut self, id: u16) {
        if !self.as_slice().contains(&id) && (self.len as usize) < self.ids.len() {
            self.ids[self.len as usize] = id;
            self.len += 1;
        }
    }

    pub(crate) fn as_slice(&self) -> &[u16] {
        &self.ids[..self.len as usize]
    }
}

/// Association edges, stored in both directions: (from type, from id, to type, to id) → type ids.
#[derive(Debug, Default)]
pub(crate) struct Associations {
    edges: BTreeMap<(ObjectType, u64, ObjectType, u64), TypeIds>,
}

impl Associations {
    pub(crate) fn add(&mut self, kind: AssociationType, from_id: u64, to_id: u64) {
        self.edges
            .entry((kind.from, from_id, kind.to, to_id))
            .or_default()
            .insert(kind.id);
        self.edges
            .entry((kind.to, to_id, kind.from, from_id))
            .or_default()
            .insert(kind.inverse);
    }

    pub(crate) fn remove(
        &mut self,
        from: ObjectType,
        from_id: u64,
        to: ObjectType,
        to_id: u64,
    ) -> bool {
        let removed = self.edges.remove(&(from, from_id, to, to_id)).is_some();
        self.edges.remove(&(to, to_id, from, from_id));
        removed
    }

    /// Targets of `to` type associated with one record, from id `after` on (inclusive).
    pub(crate) fn targets(
        &self,
        from: ObjectType,
        from_id: u64,
        to: ObjectType,
        after: u64,
    ) -> impl Iterator<Item = (u64, TypeIds)> + '_ {
        self.edges
            .range((
                Bound::Included((from, from_id, to, after)),
                Bound::Included((from, from_id, to, u64::MAX)),
            ))
            .map(|(&(_, _, _, to_id), &ids)| (to_id, ids))
    }
}

/// A CRM user who can own records.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Owner {
    pub id: u64,
    pub user_id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub archived: bool,
    pub created_ms: i64,
}

impl Owner {
    pub(crate) fn render(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "userId": self.user_id,
            "userIdIncludingInactive": self.user_id,
            "type": "PERSON",
            "teams": [{"id": "1", "name": "Referral Development", "primary": true}],
            "archived": self.archived,
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.created_ms),
        })
    }
}

/// One deal stage.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stage {
    pub id: String,
    pub label: String,
    pub closed: bool,
    pub probability: &'static str,
}

/// A deal pipeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pipeline {
    pub id: String,
    pub label: String,
    pub stages: Vec<Stage>,
    pub created_ms: i64,
}

impl Pipeline {
    pub(crate) fn render_stage(&self, order: usize, stage: &Stage) -> Value {
        json!({
            "id": stage.id,
            "label": stage.label,
            "displayOrder": order,
            "metadata": {"isClosed": stage.closed.to_string(), "probability": stage.probability},
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.created_ms),
            "archived": false,
            "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
        })
    }

    pub(crate) fn render(&self) -> Value {
        let stages: Vec<Value> = self
            .stages
            .iter()
            .enumerate()
            .map(|(order, stage)| self.render_stage(order, stage))
            .collect();
        json!({
            "id": self.id,
            "label": self.label,
            "displayOrder": 0,
            "stages": stages,
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.created_ms),
            "archived": false,
        })
    }
}

/// The whole CRM.
#[derive(Debug)]
pub(crate) struct Store {
    types: Vec<TypeStore>,
    pub associations: Associations,
    pub owners: Vec<Owner>,
    pub pipelines: Vec<Pipeline>,
}

impl Store {
    pub(crate) fn new(
        types: Vec<TypeStore>,
        owners: Vec<Owner>,
        pipelines: Vec<Pipeline>,
    ) -> Store {
        let mut types = types;
        types.sort_by_key(|t| t.object_type);
        debug_assert!(
            types
                .iter()
                .enumerate()
                .all(|(i, t)| t.object_type.index() == i)
        );
        Store {
            types,
            associations: Associations::default(),
            owners,
            pipelines,
        }
    }

    pub(crate) fn of(&self, object_type: ObjectType) -> &TypeStore {
        &self.types[object_type.index()]
    }

    pub(crate) fn of_mut(&mut self, object_type: ObjectType) -> &mut TypeStore {
        &mut self.types[object_type.index()]
    }

    /// Creates a record with its inline associations; all are checked before anything is written.
    pub(crate) fn create(
        &mut self,
        object_type: ObjectType,
        properties: &Map<String, Value>,
        associations: &[Value],
        now: i64,
    ) -> Result<u64, WriteError> {
        let changes = self
            .of(object_type)
            .validate(properties, &self.owners, true)?;
        self.of(object_type).check_unique(&changes, None)?;
        let links = self.parse_inline_associations(object_type, associations)?;
        let id = self.of_mut(object_type).insert(changes, now);
        for (kind, to_id) in links {
            self.associations.add(kind, id, to_id);
        }
        Ok(id)
    }

    /// Updates a live record.
    pub(crate) fn update(
        &mut self,
        object_type: ObjectType,
        id: u64,
        properties: &Map<String, Value>,
        now: i64,
    ) -> Result<(), WriteError> {
        let changes = self
            .of(object_type)
            .validate(properties, &self.owners, false)?;
        self.of(object_type).check_unique(&changes, Some(id))?;
        self.of_mut(object_type).update(id, changes, now);
        Ok(())
    }

    /// `associations:[{to:{id}, types:[{associationCategory, associationTypeId}]}]`.
    pub(crate) fn parse_inline_associations(
        &self,
        from: ObjectType,
        associations: &[Value],
    ) -> Result<Vec<(AssociationType, u64)>, WriteError> {
        let mut links = Vec::new();
        for association in associations {
            let to_id = association
                .pointer("/to/id")
                .and_then(id_text)
                .unwrap_or_default();
            let types = association
                .get("types")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if types.is_empty() {
                return Err(WriteError::Association(
                    "Each association needs at least one type in `types`".into(),
                ));
            }
            for spec in types {
                let category = spec
                    .get("associationCategory")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let type_id = spec
                    .get("associationTypeId")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if category != "HUBSPOT_DEFINED" {
                    return Err(WriteError::Association(format!(
                        "association category {category:?} with type id {type_id} is not defined on this portal"
                    )));
                }
                let Some(kind) =
                    association_types().find(|t| t.from == from && u64::from(t.id) == type_id)
                else {
                    return Err(WriteError::Association(format!(
                        "{type_id} is not a valid association type id for {} associations",
                        from.singular()
                    )));
                };
                let exists = to_id
                    .parse::<u64>()
                    .ok()
                    .filter(|id| self.of(kind.to).live(*id).is_some());
                let Some(target) = exists else {
                    return Err(WriteError::Association(format!(
                        "One or more associations are invalid: {} {to_id:?} does not exist",
                        kind.to.singular()
                    )));
                };
                links.push((kind, target));
            }
        }
        Ok(links)
    }

    /// The v3 `associations` member of an object: `{companies: {results: [{id, type}]}}`.
    pub(crate) fn render_v3_associations(
        &self,
        from: ObjectType,
        id: u64,
        wanted: &[ObjectType],
    ) -> Option<Value> {
        let mut out = Map::new();
        for &to in wanted {
            let mut results = Vec::new();
            for (to_id, ids) in self.associations.targets(from, id, to, 0) {
                if self.of(to).live(to_id).is_none() {
                    continue;
                }
                for &type_id in ids.as_slice() {
                    if let Some(kind) = super::schema::association_type(from, to, type_id) {
                        results.push(
                            json!({"id": to_id.to_string(), "type": association_type_name(kind)}),
                        );
                    }
                }
            }
            if !results.is_empty() {
                out.insert(to.plural().to_string(), json!({ "results": results }));
            }
        }
        (!out.is_empty()).then_some(Value::Object(out))
    }
}

/// An id given as a JSON string or number.
pub(crate) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::{WorldOptions, initial_properties};
    use super::*;

    fn tasks() -> TypeStore {
        TypeStore::new(
            ObjectType::Tasks,
            initial_properties(ObjectType::Tasks, &WorldOptions::default()),
        )
    }

    fn props(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn times_parse_from_every_spelling_hubspot_accepts() {
        assert_eq!(parse_time_ms("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time_ms("2023-11-14T23:13:20.000+01:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_time_ms("2023-11-14"), Some(1_699_920_000_000));
        assert_eq!(parse_time_ms("yesterday"), None);
        assert_eq!(parse_time_ms("9223372036854775807"), None);
        assert_eq!(iso_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn writes_are_validated_whole_and_normalized() {
        let mut store = tasks();
        let bad = store.validate(
            &props(&[("hs_task_status", json!("DONE")), ("nope", json!("x"))]),
            &[],
            true,
        );
        let Err(WriteError::Invalid(problems)) = bad else {
            panic!("expected invalid: {bad:?}")
        };
        let codes: Vec<&str> = problems.iter().map(|p| p.code).collect();
        assert_eq!(
            codes,
            vec!["INVALID_OPTION", "PROPERTY_DOESNT_EXIST", "REQUIRED_FIELD"]
        );
        let changes = store
            .validate(
                &props(&[
                    ("hs_timestamp", json!(1_700_000_000_000i64)),
                    ("hs_task_subject", json!("Call Mercy")),
                ]),
                &[],
                true,
            )
            .unwrap();
        let id = store.insert(changes, 5);
        let record = store.live(id).unwrap();
        let (timestamp, _) = store.property("hs_timestamp").unwrap();
        assert_eq!(
            store.value(record, timestamp).unwrap(),
            "2023-11-14T22:13:20.000Z"
        );
        assert!(matches!(
            store.validate(&props(&[("hs_object_id", json!("1"))]), &[], false),
            Err(WriteError::Invalid(p)) if p[0].code == "READ_ONLY_VALUE"
        ));
    }

    #[test]
    fn unique_values_are_enforced_and_freed_on_archive() {
        let mut store = tasks();
        let mut key = PropertyDef::new(
            "refbridge_key",
            "Key",
            PropertyKind::String,
            "text",
            "taskinformation",
        );
        key.has_unique_value = true;
        store.add_property(key).unwrap();
        let (key, _) = store.property("refbridge_key").unwrap();
        let first = store.insert(vec![(key, Some("k1".into()))], 1);
        assert_eq!(
            store.resolve("k1", Some("refbridge_key"), false),
            Some(first)
        );
        assert!(
            store
                .check_unique(&[(key, Some("k1".into()))], None)
                .is_err()
        );
        assert!(
            store
                .check_unique(&[(key, Some("k1".into()))], Some(first))
                .is_ok()
        );
        assert!(store.archive(first, 2));
        assert!(
            store
                .check_unique(&[(key, Some("k1".into()))], None)
                .is_ok()
        );
        assert_eq!(store.resolve(&first.to_string(), None, true), Some(first));
        assert_eq!(store.resolve(&first.to_string(), None, false), None);
    }

    #[test]
    fn completing_a_task_stamps_its_completion_date() {
        let mut store = tasks();
        let (status, _) = store.property("hs_task_status").unwrap();
        let (completion, _) = store.property("hs_task_completion_date").unwrap();
        let id = store.insert(vec![(status, Some("NOT_STARTED".into()))], 1);
        assert!(store.value(store.live(id).unwrap(), completion).is_none());
        store.update(id, vec![(status, Some("COMPLETED".into()))], 2);
        assert!(store.value(store.live(id).unwrap(), completion).is_some());
    }
}
