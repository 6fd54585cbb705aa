//! The in-memory org: one append-only store per sObject, record ids, and value formatting.
//!
//! Records are never removed: a delete sets `IsDeleted` and `deleted_at`, so `queryAll` and
//! `deleted/` still see them and row numbers stay valid for open query cursors. The whole org sits
//! behind one `RwLock` in the server; nothing here locks, performs I/O or knows about HTTP.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};

use super::schema::{FieldType, ObjectType, system};

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Bool(bool),
    Number(f64),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
}

impl Value {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Text value or null, for optional strings.
    pub fn text_or_null(text: Option<&str>) -> Value {
        match text {
            Some(text) if !text.is_empty() => Value::Text(text.to_string()),
            _ => Value::Null,
        }
    }
}

/// Salesforce keeps datetimes to the millisecond.
pub fn to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(3)
}

/// `2026-05-20T20:49:32.000+0000`, the form Salesforce renders datetimes in.
pub fn format_datetime(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Reads a datetime the way Salesforce accepts one in JSON bodies and `start`/`end` parameters:
/// `2026-05-20T20:49:32.000+0000`, `…Z`, `…+00:00`, or without an offset (UTC).
pub fn parse_datetime_text(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Ok(at) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(at.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|local| local.and_utc())
}

/// Reads a `YYYY-MM-DD` date (a datetime's date part is accepted too).
pub fn parse_date_text(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    let date_part = text.get(..10)?;
    let date = NaiveDate::parse_from_str(date_part, "%Y-%m-%d").ok()?;
    (text.len() == 10 || parse_datetime_text(text).is_some()).then_some(date)
}

/// Appends `value` as JSON, formatted for a field of `field_type`.
pub fn write_json_value(out: &mut String, value: &Value, field_type: FieldType) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Text(text) => write_json_string(out, text),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => {
            if !number.is_finite() {
                out.push_str("null");
            } else if field_type == FieldType::Int {
                let _ = write!(out, "{}", *number as i64);
            } else if number.fract() == 0.0 && number.abs() < 1e15 {
                let _ = write!(out, "{number:.1}");
            } else {
                let _ = write!(out, "{number}");
            }
        }
        Value::Date(date) => {
            let _ = write!(out, "\"{}\"", date.format("%Y-%m-%d"));
        }
        Value::DateTime(at) => {
            out.push('"');
            out.push_str(&format_datetime(at));
            out.push('"');
        }
    }
}

/// Appends `text` as a JSON string literal.
pub fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if (control as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", control as u32);
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// A value as `serde_json` sees it (for the JSON built with `json!`).
pub fn to_json(value: &Value, field_type: FieldType) -> serde_json::Value {
    let mut text = String::new();
    write_json_value(&mut text, value, field_type);
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// The case-safe three-character suffix that turns a 15-character id into 18.
pub fn id_suffix(id15: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let bytes = id15.as_bytes();
    (0..3)
        .map(|chunk| {
            let flags = (0..5).fold(0usize, |flags, position| {
                let byte = bytes.get(chunk * 5 + position).copied().unwrap_or(b'0');
                if byte.is_ascii_uppercase() {
                    flags | (1 << position)
                } else {
                    flags
                }
            });
            ALPHABET[flags] as char
        })
        .collect()
}

/// The 18-character id of the `counter`th record with `prefix`: prefix, pod `Dn`, a reserved
/// `0`, nine base-62 digits, then the case-safe suffix.
pub fn make_id(prefix: &str, counter: u64) -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut digits = [b'0'; 9];
    let mut rest = counter;
    for slot in digits.iter_mut().rev() {
        *slot = DIGITS[(rest % 62) as usize];
        rest /= 62;
    }
    let mut id = String::with_capacity(18);
    id.push_str(prefix);
    id.push_str("Dn0");
    id.extend(digits.iter().map(|&byte| byte as char));
    let suffix = id_suffix(&id);
    id.push_str(&suffix);
    id
}

/// The canonical 18-character form of a 15- or 18-character id; `None` when `text` is not shaped
/// like a Salesforce id (or its suffix does not match).
pub fn normalize_id(text: &str) -> Option<String> {
    if !(text.len() == 15 || text.len() == 18)
        || !text.bytes().all(|byte| byte.is_ascii_alphanumeric())
    {
        return None;
    }
    let id15 = &text[..15];
    let suffix = id_suffix(id15);
    if text.len() == 18 && !text[15..].eq_ignore_ascii_case(&suffix) {
        return None;
    }
    Some(format!("{id15}{suffix}"))
}

/// One stored record: values in the order of its object's field table.
#[derive(Debug, Clone)]
pub struct Record {
    pub values: Vec<Value>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Record {
    pub fn id(&self) -> &str {
        self.values[system::ID].as_text().unwrap_or("")
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    pub fn system_modstamp(&self) -> Option<DateTime<Utc>> {
        match self.values[system::SYSTEM_MODSTAMP] {
            Value::DateTime(at) => Some(at),
            _ => None,
        }
    }
}

/// Why a value cannot take a unique index slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateValue {
    pub field: usize,
    pub existing_id: String,
}

/// All records of one sObject type, with the id index and one index per unique field.
#[derive(Debug)]
pub struct ObjectStore {
    pub object: ObjectType,
    pub records: Vec<Record>,
    by_id: HashMap<String, u32>,
    /// (field index, lower-cased value → row) for each unique field, live records only.
    unique: Vec<(usize, HashMap<String, u32>)>,
    next_counter: u64,
}

impl ObjectStore {
    pub fn new(object: ObjectType) -> ObjectStore {
        let unique = object
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, field)| field.unique)
            .map(|(index, _)| (index, HashMap::new()))
            .collect();
        ObjectStore {
            object,
            records: Vec::new(),
            by_id: HashMap::new(),
            unique,
            next_counter: 1,
        }
    }

    /// The id the next insert will get.
    pub fn next_id(&self) -> String {
        make_id(self.object.key_prefix(), self.next_counter)
    }

    pub fn row_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    pub fn get(&self, row: u32) -> Option<&Record> {
        self.records.get(row as usize)
    }

    /// The live row holding `value` in the unique field `field`.
    pub fn row_by_unique(&self, field: usize, value: &str) -> Option<u32> {
        self.unique
            .iter()
            .find(|(index, _)| *index == field)
            .and_then(|(_, map)| map.get(&value.to_lowercase()).copied())
    }

    /// Which unique field of `values` (if any) is already taken by a live record other than `row`.
    pub fn unique_conflict(
        &self,
        values: &[(usize, &Value)],
        row: Option<u32>,
    ) -> Option<DuplicateValue> {
        for (field, value) in values {
            if let Value::Text(text) = value
                && let Some(existing) = self.row_by_unique(*field, text)
                && Some(existing) != row
            {
                return Some(DuplicateValue {
                    field: *field,
                    existing_id: self.records[existing as usize].id().to_string(),
                });
            }
        }
        None
    }

    /// Stores a new record whose values already hold its id (from [`ObjectStore::next_id`]).
    pub fn insert(&mut self, values: Vec<Value>) -> u32 {
        let row = self.records.len() as u32;
        let record = Record {
            values,
            deleted_at: None,
        };
        self.by_id.insert(record.id().to_string(), row);
        for (field, map) in &mut self.unique {
            if let Value::Text(text) = &record.values[*field] {
                map.insert(text.to_lowercase(), row);
            }
        }
        self.records.push(record);
        self.next_counter += 1;
        row
    }

    /// Sets `field` of `row`, keeping the unique indexes in step.
    pub fn set(&mut self, row: u32, field: usize, value: Value) {
        let Some(record) = self.records.get_mut(row as usize) else {
            return;
        };
        if let Some((_, map)) = self.unique.iter_mut().find(|(index, _)| *index == field) {
            if let Value::Text(old) = &record.values[field] {
                let key = old.to_lowercase();
                if map.get(&key) == Some(&row) {
                    map.remove(&key);
                }
            }
            if let (Value::Text(new), None) = (&value, record.deleted_at) {
                map.insert(new.to_lowercase(), row);
            }
        }
        record.values[field] = value;
    }

    /// Marks `row` deleted at `at` (by `user_id`) and frees its unique values.
    pub fn delete(&mut self, row: u32, at: DateTime<Utc>, user_id: &str) {
        let Some(record) = self.records.get_mut(row as usize) else {
            return;
        };
        record.deleted_at = Some(at);
        record.values[system::IS_DELETED] = Value::Bool(true);
        record.values[system::LAST_MODIFIED_DATE] = Value::DateTime(at);
        record.values[system::LAST_MODIFIED_BY_ID] = Value::Text(user_id.to_string());
        record.values[system::SYSTEM_MODSTAMP] = Value::DateTime(at);
        for (field, map) in &mut self.unique {
            if let Value::Text(text) = &record.values[*field] {
                let key = text.to_lowercase();
                if map.get(&key) == Some(&row) {
                    map.remove(&key);
                }
            }
        }
    }

    pub fn live_count(&self) -> usize {
        self.records
            .iter()
            .filter(|record| !record.is_deleted())
            .count()
    }
}

/// The org: every object store plus the values `describe` lists for open picklists.
#[derive(Debug)]
pub struct Org {
    pub org_id: String,
    pub running_user_id: String,
    stores: Vec<ObjectStore>,
    /// Values seen in the seeded data for picklists without a fixed list (payers, levels of care).
    pub observed_picklist_values: HashMap<(ObjectType, usize), Vec<String>>,
}

impl Org {
    pub fn new(org_id: String) -> Org {
        Org {
            org_id,
            running_user_id: String::new(),
            stores: ObjectType::ALL.into_iter().map(ObjectStore::new).collect(),
            observed_picklist_values: HashMap::new(),
        }
    }

    pub fn store(&self, object: ObjectType) -> &ObjectStore {
        &self.stores[object.index()]
    }

    pub fn store_mut(&mut self, object: ObjectType) -> &mut ObjectStore {
        &mut self.stores[object.index()]
    }

    /// The record with `id` (15 or 18 characters), deleted or not, with its type and row.
    pub fn find(&self, id: &str) -> Option<(ObjectType, u32, &Record)> {
        let id = normalize_id(id)?;
        let object = ObjectType::from_id_prefix(&id)?;
        let store = self.store(object);
        let row = store.row_of(&id)?;
        Some((object, row, store.get(row)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_real_prefix_and_case_safe_suffix() {
        // A documented pair: 001A0000006Vm9r → 001A0000006Vm9rIAC.
        assert_eq!(id_suffix("001A0000006Vm9r"), "IAC");
        let id = make_id("00T", 1);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("00TDn0"));
        assert_eq!(normalize_id(&id[..15]).as_deref(), Some(id.as_str()));
        assert_eq!(normalize_id(&id).as_deref(), Some(id.as_str()));
        assert_ne!(make_id("001", 61), make_id("001", 62));
        assert_eq!(normalize_id("not an id"), None);
        assert_eq!(normalize_id("001A0000006Vm9rZZZ"), None);
    }

    #[test]
    fn values_render_like_salesforce() {
        let at = DateTime::parse_from_rfc3339("2026-05-20T20:49:32.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut out = String::new();
        write_json_value(
            &mut out,
            &Value::DateTime(to_millis(at)),
            FieldType::DateTime,
        );
        assert_eq!(out, "\"2026-05-20T20:49:32.123+0000\"");
        out.clear();
        write_json_value(&mut out, &Value::Number(60.0), FieldType::Int);
        assert_eq!(out, "60");
        out.clear();
        write_json_string(&mut out, "O'Brien \"ED\"\n\u{1}");
        assert_eq!(out, r#""O'Brien \"ED\"\n\u0001""#);
    }

    #[test]
    fn unique_fields_are_case_insensitive_and_freed_by_delete() {
        let mut store = ObjectStore::new(ObjectType::Task);
        let key = ObjectType::Task.field_index("Refbridge_Key__c").unwrap();
        let mut values = vec![Value::Null; ObjectType::Task.fields().len()];
        values[system::ID] = Value::Text(store.next_id());
        values[key] = Value::Text("Rule-1".to_string());
        let row = store.insert(values);
        assert_eq!(store.row_by_unique(key, "rule-1"), Some(row));
        let taken = Value::Text("RULE-1".to_string());
        assert!(store.unique_conflict(&[(key, &taken)], None).is_some());
        assert!(store.unique_conflict(&[(key, &taken)], Some(row)).is_none());
        store.delete(row, Utc::now(), "005");
        assert_eq!(store.row_by_unique(key, "rule-1"), None);
    }
}
