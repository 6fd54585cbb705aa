//! FHIR R4 `ServiceRequest`s → [`Record`]s, from a `Bundle` JSON file or from Bulk Data NDJSON.
//!
//! Both readers stream, so memory stays flat whatever the file size. A Bundle is walked with
//! serde's visitor API one `entry` at a time, twice: the first pass indexes the few
//! `Organization`, `Practitioner`, `PractitionerRole` and `Coverage` resources that requests point
//! at (so a reference resolves whatever the entry order), the second maps every `ServiceRequest`.
//! NDJSON is read one line at a time into a reused buffer capped at [`MAX_LINE_BYTES`]. Only the
//! fields refbridge maps are materialized, per resource type; everything else (`Patient`
//! resources, narratives, notes, reasons, instructions, supporting info) is skipped by the parser
//! without being kept. The subject's MRN becomes a [`refbridge_model::PatientToken`] inside
//! [`Mapper::service_request`] and goes no further.
//!
//! This module must not touch the ledger, keep a patient value, name a partner after a patient, or
//! put an input value in a problem's reason: reasons name the field and what is wrong with it.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use chrono::NaiveDate;
use refbridge_model::{
    Direction, Disposition, DispositionReason, LevelOfCare, Location, Npi, PartnerRef,
    PatientToken, Problem, Referral,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;
use serde_json::{Map, Value};

use crate::dates::{implausible, parse_date};
use crate::{ExportReader, ReadError, Record};

/// The longest NDJSON line read; a longer one is rejected and skipped without being buffered.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// How deep brackets may nest anywhere in a Bundle, kept or skipped values alike. It bounds the
/// parser's recursion (serde_json's own limit is disabled for Bundles).
const MAX_NESTING: usize = 512;

const READ_BUFFER_BYTES: usize = 256 * 1024;
const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];
const NPI_SYSTEM: &str = "http://hl7.org/fhir/sid/us-npi";

/// Resource types whose `display` may be stored as a partner name. A reference to anything else
/// (a `Patient` or `RelatedPerson` above all) never names a partner.
const PARTY_TYPES: [&str; 5] = [
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "HealthcareService",
    "CareTeam",
];

const SERVICE_REQUEST_FIELDS: &[&str] = &[
    "id",
    "identifier",
    "status",
    "authoredOn",
    "requester",
    "performer",
    "basedOn",
    "extension",
    "insurance",
    "code",
    "occurrenceDateTime",
    "occurrencePeriod",
    "subject",
    "contained",
];
const ORGANIZATION_FIELDS: &[&str] = &["id", "name", "identifier", "type"];
const PRACTITIONER_FIELDS: &[&str] = &["id", "name", "identifier"];
const PRACTITIONER_ROLE_FIELDS: &[&str] = &["id", "organization", "practitioner"];
const COVERAGE_FIELDS: &[&str] = &["id", "payor", "type"];

// ------------------------------------------------------------------------------------------------
// Entry points

/// Reads a FHIR `Bundle`, handing one record per entry to `sink` in file order.
pub(crate) fn read_bundle<E>(
    reader: &ExportReader,
    path: &Path,
    sink: &mut dyn FnMut(Record) -> Result<(), E>,
) -> Result<(), ReadError<E>> {
    // Pass 1: index what requests may refer to. Nothing reaches the sink.
    let mut index = ReferenceIndex::default();
    let indexed = walk_bundle::<E>(path, Wanted::Referenced, &mut |_, entry| {
        index.add(entry);
        Ok(())
    });
    match indexed {
        Ok(true) => {}
        Ok(false) => {
            return Err(ReadError::Unusable(Problem::new(
                Location::File,
                Some("resourceType"),
                "the file has no resourceType; a FHIR Bundle file must have resourceType Bundle",
            )));
        }
        // Malformed JSON: pass 2 hands over the entries before the error, then reports it.
        Err(WalkError::Json(_)) => {}
        Err(other) => return Err(other.into_read_error()),
    }

    // Pass 2: map the requests.
    let mapper = Mapper::new(reader, Some(&index));
    walk_bundle(path, Wanted::Requests, &mut |number, entry| {
        sink(mapper.bundle_entry(entry, Location::Entry(number))).map_err(Stop::Sink)
    })
    .map_err(WalkError::into_read_error)?;
    Ok(())
}

/// Reads FHIR Bulk Data NDJSON (one resource per line), handing one record per non-blank line to
/// `sink` in file order.
pub(crate) fn read_ndjson<E>(
    reader: &ExportReader,
    path: &Path,
    sink: &mut dyn FnMut(Record) -> Result<(), E>,
) -> Result<(), ReadError<E>> {
    let file = File::open(path)?;
    read_ndjson_lines(
        reader,
        BufReader::with_capacity(READ_BUFFER_BYTES, file),
        MAX_LINE_BYTES,
        sink,
    )
}

fn read_ndjson_lines<E>(
    reader: &ExportReader,
    mut input: impl BufRead,
    max_line_bytes: usize,
    sink: &mut dyn FnMut(Record) -> Result<(), E>,
) -> Result<(), ReadError<E>> {
    let mapper = Mapper::new(reader, None);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = read_capped_line(&mut input, &mut line, max_line_bytes)?;
        if read == LineRead::End {
            return Ok(());
        }
        number += 1;
        let location = Location::Line(number);
        let record = if read == LineRead::TooLong {
            Some(Record::Rejected(Problem::new(
                location,
                None,
                format!("the line is longer than the limit of {max_line_bytes} bytes"),
            )))
        } else {
            mapper.ndjson_line(&line, location)
        };
        if let Some(record) = record {
            sink(record).map_err(ReadError::Sink)?;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineRead {
    /// No more input.
    End,
    /// A line (without its `\n`) is in the buffer.
    Complete,
    /// The line was longer than the cap; it was consumed but not kept.
    TooLong,
}

/// Reads one line into `line` (which must be empty), without its `\n`. A line longer than
/// `max_bytes` is consumed up to its newline without being buffered.
fn read_capped_line(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    max_bytes: usize,
) -> io::Result<LineRead> {
    let mut read_any = false;
    let mut too_long = false;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(match (read_any, too_long) {
                (false, _) => LineRead::End,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Complete,
            });
        }
        read_any = true;
        let (content, consumed, ends_line) = match available.iter().position(|&b| b == b'\n') {
            Some(newline) => (&available[..newline], newline + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            if line.len() + content.len() > max_bytes {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(content);
            }
        }
        input.consume(consumed);
        if ends_line {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Complete
            });
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Streaming a Bundle

/// Which resources a walk materializes (whitelisted fields only); all others keep only their type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// `ServiceRequest`s: Bundle pass 2 and NDJSON.
    Requests,
    /// What requests refer to: Bundle pass 1 and a request's `contained` resources.
    Referenced,
}

impl Wanted {
    /// The fields kept for `resource_type`, or `None` when the type is not wanted.
    fn fields(self, resource_type: &str) -> Option<&'static [&'static str]> {
        match (self, resource_type) {
            (Wanted::Requests, "ServiceRequest") => Some(SERVICE_REQUEST_FIELDS),
            (Wanted::Referenced, "Organization") => Some(ORGANIZATION_FIELDS),
            (Wanted::Referenced, "Practitioner") => Some(PRACTITIONER_FIELDS),
            (Wanted::Referenced, "PractitionerRole") => Some(PRACTITIONER_ROLE_FIELDS),
            (Wanted::Referenced, "Coverage") => Some(COVERAGE_FIELDS),
            _ => None,
        }
    }

    /// Whether some wanted type keeps `key` (used before the resource's type is known).
    fn some_type_keeps(self, key: &str) -> bool {
        let lists: &[&[&str]] = match self {
            Wanted::Requests => &[SERVICE_REQUEST_FIELDS],
            Wanted::Referenced => &[
                ORGANIZATION_FIELDS,
                PRACTITIONER_FIELDS,
                PRACTITIONER_ROLE_FIELDS,
                COVERAGE_FIELDS,
            ],
        };
        lists.iter().any(|fields| fields.contains(&key))
    }
}

/// What a resource's `resourceType` said.
enum ResourceType {
    Missing,
    NotText,
    Named(String),
}

/// A resource reduced to the fields refbridge reads (none at all when its type is not wanted).
struct Resource {
    resource_type: ResourceType,
    fields: Map<String, Value>,
    /// Wanted `contained` resources (and the type and id of the others).
    contained: Vec<Resource>,
}

impl Resource {
    fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(as_text)
    }
}

/// A JSON value where a resource was expected.
enum Parsed {
    NotObject,
    Resource(Resource),
}

/// A Bundle entry as read.
enum Entry {
    NotObject,
    Object {
        full_url: Option<String>,
        resource: Option<Parsed>,
    },
}

/// Why a walk was stopped from inside the visitor (the serde error only carries the position).
enum Stop<E> {
    Sink(E),
    NotBundle,
}

enum WalkError<E> {
    Stopped(Stop<E>),
    Io(io::Error),
    /// Malformed JSON, or JSON that is not shaped like a Bundle.
    Json(Problem),
}

impl<E> WalkError<E> {
    fn into_read_error(self) -> ReadError<E> {
        match self {
            WalkError::Stopped(Stop::Sink(error)) => ReadError::Sink(error),
            WalkError::Stopped(Stop::NotBundle) => ReadError::Unusable(Problem::new(
                Location::File,
                Some("resourceType"),
                "the resourceType is not Bundle; a FHIR Bundle file must have resourceType Bundle",
            )),
            WalkError::Io(error) => ReadError::Io(error),
            WalkError::Json(problem) => ReadError::Unusable(problem),
        }
    }
}

/// Walks the Bundle at `path`, handing each entry (1-based) to `on_entry`. Returns whether the
/// Bundle's `resourceType` was seen (it is checked to be `Bundle` wherever it comes).
fn walk_bundle<E>(
    path: &Path,
    wanted: Wanted,
    on_entry: &mut dyn FnMut(u64, Entry) -> Result<(), Stop<E>>,
) -> Result<bool, WalkError<E>> {
    let file = File::open(path).map_err(WalkError::Io)?;
    // The guard sits below the buffer so that it scans whole chunks, and serde_json's byte-at-a-time
    // reads take `BufReader`'s fast path.
    let mut input = BufReader::with_capacity(READ_BUFFER_BYTES, NestingGuard::new(file));
    if input
        .fill_buf()
        .map_err(WalkError::Io)?
        .starts_with(UTF8_BOM)
    {
        input.consume(UTF8_BOM.len());
    }
    let mut deserializer = serde_json::Deserializer::from_reader(input);
    // The NestingGuard under the reader bounds depth (and so the stack) for every value, kept or
    // skipped; serde_json's own limit of 128 would end the whole Bundle at one deep entry.
    deserializer.disable_recursion_limit();
    let mut walk = BundleWalk {
        wanted,
        on_entry,
        entries: 0,
        saw_bundle_type: false,
        stop: None,
    };
    let result = (&mut deserializer)
        .deserialize_map(BundleVisitor(&mut walk))
        .and_then(|()| deserializer.end());
    match result {
        Ok(()) => Ok(walk.saw_bundle_type),
        Err(error) => Err(match walk.stop.take() {
            Some(stop) => WalkError::Stopped(stop),
            None => bundle_json_error(error),
        }),
    }
}

fn bundle_json_error<E>(error: serde_json::Error) -> WalkError<E> {
    let line = Location::Line(error.line() as u64);
    let column = error.column();
    match error.classify() {
        Category::Io => {
            let error = io::Error::from(error);
            match error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<TooDeep>())
            {
                Some(too_deep) => WalkError::Json(Problem::new(
                    Location::Line(too_deep.line),
                    None,
                    format!("the JSON nests deeper than {MAX_NESTING} levels"),
                )),
                None => WalkError::Io(error),
            }
        }
        Category::Syntax | Category::Eof => WalkError::Json(Problem::new(
            line,
            None,
            format!("not valid JSON: {} (column {column})", json_message(&error)),
        )),
        // serde's type errors can quote the input, so their text is not used.
        Category::Data => WalkError::Json(Problem::new(
            line,
            None,
            format!(
                "not a FHIR Bundle: expected an object whose entry is an array (column {column})"
            ),
        )),
    }
}

/// serde_json's message without its " at line L column C" suffix. Syntax and EOF messages never
/// quote the input.
fn json_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match message.strip_suffix(&position) {
        Some(bare) => bare.to_string(),
        None => message,
    }
}

struct BundleWalk<'w, E> {
    wanted: Wanted,
    on_entry: &'w mut dyn FnMut(u64, Entry) -> Result<(), Stop<E>>,
    entries: u64,
    saw_bundle_type: bool,
    stop: Option<Stop<E>>,
}

/// The Bundle's top-level object: `resourceType` is checked, `entry` streamed, the rest skipped.
struct BundleVisitor<'a, 'w, E>(&'a mut BundleWalk<'w, E>);

impl<'de, E> Visitor<'de> for BundleVisitor<'_, '_, E> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a FHIR Bundle object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "resourceType" => {
                    if map.next_value::<Value>()?.as_str() == Some("Bundle") {
                        self.0.saw_bundle_type = true;
                    } else {
                        self.0.stop = Some(Stop::NotBundle);
                        return Err(de::Error::custom("the resourceType is not Bundle"));
                    }
                }
                "entry" => map.next_value_seed(EntriesSeed(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `Bundle.entry`: each element is read, handed on and dropped before the next.
struct EntriesSeed<'a, 'w, E>(&'a mut BundleWalk<'w, E>);

impl<'de, E> DeserializeSeed<'de> for EntriesSeed<'_, '_, E> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, E> Visitor<'de> for EntriesSeed<'_, '_, E> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of Bundle entries")
    }

    fn visit_unit<Fail: de::Error>(self) -> Result<(), Fail> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let walk = self.0;
        while let Some(entry) = seq.next_element_seed(EntrySeed(walk.wanted))? {
            walk.entries += 1;
            if let Err(stop) = (walk.on_entry)(walk.entries, entry) {
                walk.stop = Some(stop);
                return Err(de::Error::custom("reading stopped"));
            }
        }
        Ok(())
    }
}

/// Visitor methods that accept every scalar JSON value as `$value`.
macro_rules! scalars_are {
    ($value:expr) => {
        fn visit_bool<Fail: de::Error>(self, _: bool) -> Result<Self::Value, Fail> {
            Ok($value)
        }
        fn visit_i64<Fail: de::Error>(self, _: i64) -> Result<Self::Value, Fail> {
            Ok($value)
        }
        fn visit_u64<Fail: de::Error>(self, _: u64) -> Result<Self::Value, Fail> {
            Ok($value)
        }
        fn visit_f64<Fail: de::Error>(self, _: f64) -> Result<Self::Value, Fail> {
            Ok($value)
        }
        fn visit_str<Fail: de::Error>(self, _: &str) -> Result<Self::Value, Fail> {
            Ok($value)
        }
        fn visit_unit<Fail: de::Error>(self) -> Result<Self::Value, Fail> {
            Ok($value)
        }
    };
}

/// One `Bundle.entry`: `fullUrl` and `resource` are read, the rest skipped.
struct EntrySeed(Wanted);

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = Entry;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Entry, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Bundle entry")
    }

    scalars_are!(Entry::NotObject);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entry, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Entry::NotObject)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let mut full_url = None;
        let mut resource = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "fullUrl" => {
                    full_url = match map.next_value::<Value>()? {
                        Value::String(url) => Some(url.trim().to_string()),
                        _ => None,
                    };
                }
                "resource" => {
                    let seed = ResourceSeed {
                        wanted: self.0,
                        contained: false,
                    };
                    resource = Some(map.next_value_seed(seed)?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Entry::Object { full_url, resource })
    }
}

/// A resource, reduced to the fields its type keeps under `wanted`. A contained resource of an
/// unwanted type keeps its `id`, so that a local reference to it can tell what it points at.
#[derive(Clone, Copy)]
struct ResourceSeed {
    wanted: Wanted,
    contained: bool,
}

impl<'de> DeserializeSeed<'de> for ResourceSeed {
    type Value = Parsed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Parsed, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResourceSeed {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a FHIR resource")
    }

    scalars_are!(Parsed::NotObject);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Parsed::NotObject)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut resource_type = ResourceType::Missing;
        let mut fields = Map::new();
        let mut contained = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "resourceType" {
                resource_type = match map.next_value::<Value>()? {
                    Value::String(name) => ResourceType::Named(name),
                    _ => ResourceType::NotText,
                };
                continue;
            }
            let keep = match &resource_type {
                ResourceType::Named(name) => {
                    self.wanted
                        .fields(name)
                        .is_some_and(|kept| kept.contains(&key.as_str()))
                        || (self.contained && key == "id")
                }
                // The type may come last: keep what some wanted type would, trim below.
                _ => self.wanted.some_type_keeps(&key) || (self.contained && key == "id"),
            };
            if !keep {
                map.next_value::<IgnoredAny>()?;
            } else if key == "contained" {
                contained = map.next_value_seed(ContainedSeed)?;
            } else {
                let value = map.next_value::<Value>()?;
                fields.insert(key, value);
            }
        }
        let kept = match &resource_type {
            ResourceType::Named(name) => self.wanted.fields(name),
            _ => None,
        };
        match kept {
            Some(kept) => {
                fields.retain(|key, _| kept.contains(&key.as_str()));
                if !kept.contains(&"contained") {
                    contained.clear();
                }
            }
            None => {
                contained.clear();
                if self.contained {
                    fields.retain(|key, _| key == "id");
                } else {
                    fields.clear();
                }
            }
        }
        Ok(Parsed::Resource(Resource {
            resource_type,
            fields,
            contained,
        }))
    }
}

/// `ServiceRequest.contained`: the referenced types are kept, the others reduced to type and id.
struct ContainedSeed;

impl<'de> DeserializeSeed<'de> for ContainedSeed {
    type Value = Vec<Resource>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Resource>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContainedSeed {
    type Value = Vec<Resource>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of contained resources")
    }

    scalars_are!(Vec::new());

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Resource>, A::Error> {
        let seed = ResourceSeed {
            wanted: Wanted::Referenced,
            contained: true,
        };
        let mut resources = Vec::new();
        while let Some(parsed) = seq.next_element_seed(seed)? {
            if let Parsed::Resource(resource) = parsed {
                resources.push(resource);
            }
        }
        Ok(resources)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Resource>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }
}

/// Fails the read when brackets nest deeper than [`MAX_NESTING`], so that skipped values (which
/// serde_json does not depth-limit) cannot grow its scratch buffer with the file. Tracks strings
/// and escapes so that brackets inside strings do not count. The bytes before the offending
/// bracket are still delivered, so the parser reaches it (handing over the entries before it)
/// before the error comes.
struct NestingGuard<R> {
    inner: R,
    depth: usize,
    in_string: bool,
    escaped: bool,
    line: u64,
    /// Set once the limit is passed: every later read fails.
    too_deep: Option<TooDeep>,
}

#[derive(Debug, Clone, Copy)]
struct TooDeep {
    line: u64,
}

impl fmt::Display for TooDeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JSON nested deeper than {MAX_NESTING} levels on line {}",
            self.line
        )
    }
}

impl std::error::Error for TooDeep {}

impl<R> NestingGuard<R> {
    fn new(inner: R) -> Self {
        NestingGuard {
            inner,
            depth: 0,
            in_string: false,
            escaped: false,
            line: 1,
            too_deep: None,
        }
    }

    /// Follows one byte; false when it opens one level too many.
    fn scan(&mut self, byte: u8) -> bool {
        if byte == b'\n' {
            self.line += 1;
        }
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
            }
            return true;
        }
        match byte {
            b'"' => self.in_string = true,
            b'[' | b'{' => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return false;
                }
            }
            b']' | b'}' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        true
    }
}

impl<R: Read> Read for NestingGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(too_deep) = self.too_deep {
            return Err(io::Error::new(io::ErrorKind::InvalidData, too_deep));
        }
        let count = self.inner.read(buf)?;
        for (position, &byte) in buf.iter().take(count).enumerate() {
            if !self.scan(byte) {
                let too_deep = TooDeep { line: self.line };
                self.too_deep = Some(too_deep);
                if position == 0 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, too_deep));
                }
                return Ok(position);
            }
        }
        Ok(count)
    }
}

// ------------------------------------------------------------------------------------------------
// What requests refer to

/// A referenced resource, summarized. Holds no patient value: only these four types are kept.
#[derive(Clone)]
enum Known {
    Organization {
        key: Option<String>,
        name: Option<String>,
        npi: Option<String>,
        kind: Option<String>,
    },
    Practitioner {
        key: Option<String>,
        name: Option<String>,
        npi: Option<String>,
    },
    PractitionerRole {
        key: Option<String>,
        organization: Option<Value>,
        practitioner: Option<Value>,
    },
    Coverage {
        key: Option<String>,
        payor: Option<Value>,
        plan_type: Option<String>,
    },
}

impl Known {
    fn from_resource(resource: &Resource) -> Option<Known> {
        let ResourceType::Named(type_name) = &resource.resource_type else {
            return None;
        };
        let key = resource.text("id").map(|id| format!("{type_name}/{id}"));
        let owned = |text: Option<&str>| text.map(str::to_string);
        match type_name.as_str() {
            "Organization" => Some(Known::Organization {
                key,
                name: owned(resource.text("name")),
                npi: owned(npi_identifier(resource.get("identifier"))),
                kind: items(resource.get("type"))
                    .first()
                    .and_then(concept_label)
                    .map(str::to_lowercase),
            }),
            "Practitioner" => Some(Known::Practitioner {
                key,
                name: human_name(resource.get("name")),
                npi: owned(npi_identifier(resource.get("identifier"))),
            }),
            "PractitionerRole" => Some(Known::PractitionerRole {
                key,
                organization: resource.get("organization").cloned(),
                practitioner: resource.get("practitioner").cloned(),
            }),
            "Coverage" => Some(Known::Coverage {
                key,
                payor: items(resource.get("payor")).first().cloned(),
                plan_type: resource.get("type").and_then(|concept| {
                    let code = items(concept.get("coding"))
                        .iter()
                        .find_map(|c| text(c, "code"));
                    owned(code.or_else(|| text(concept, "text")))
                }),
            }),
            _ => None,
        }
    }

    fn key(&self) -> Option<&str> {
        match self {
            Known::Organization { key, .. }
            | Known::Practitioner { key, .. }
            | Known::PractitionerRole { key, .. }
            | Known::Coverage { key, .. } => key.as_deref(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Known::Organization { .. } => "Organization",
            Known::Practitioner { .. } => "Practitioner",
            Known::PractitionerRole { .. } => "PractitionerRole",
            Known::Coverage { .. } => "Coverage",
        }
    }
}

/// Bundle pass 1's result: referenced resources by `Type/id` and by `fullUrl`.
#[derive(Default)]
struct ReferenceIndex {
    known: Vec<Known>,
    by_reference: HashMap<String, usize>,
}

impl ReferenceIndex {
    fn add(&mut self, entry: Entry) {
        let Entry::Object {
            full_url,
            resource: Some(Parsed::Resource(resource)),
        } = entry
        else {
            return;
        };
        let Some(known) = Known::from_resource(&resource) else {
            return;
        };
        let position = self.known.len();
        let keys = known.key().map(str::to_string).into_iter().chain(full_url);
        let mut reachable = false;
        for key in keys.filter(|key| !key.is_empty()) {
            self.by_reference.entry(key).or_insert(position);
            reachable = true;
        }
        if reachable {
            self.known.push(known);
        }
    }

    fn get(&self, reference: &str) -> Option<&Known> {
        let position = self
            .by_reference
            .get(reference)
            .or_else(|| relative_tail(reference).and_then(|tail| self.by_reference.get(tail)))?;
        self.known.get(*position)
    }
}

// ------------------------------------------------------------------------------------------------
// Mapping

/// Turns parsed resources into records for one read.
struct Mapper<'a> {
    reader: &'a ExportReader,
    /// The Bundle's referenced resources; `None` for NDJSON.
    index: Option<&'a ReferenceIndex>,
    facility_npi: Option<Npi>,
    facility_reference: Option<&'a str>,
}

impl<'a> Mapper<'a> {
    fn new(reader: &'a ExportReader, index: Option<&'a ReferenceIndex>) -> Self {
        Mapper {
            reader,
            index,
            // An invalid configured NPI is reported by `check-config`; here it matches nothing.
            facility_npi: reader
                .fhir
                .facility_npi
                .as_deref()
                .and_then(|npi| Npi::parse(npi).ok()),
            facility_reference: reader
                .fhir
                .facility_reference
                .as_deref()
                .map(str::trim)
                .filter(|reference| !reference.is_empty()),
        }
    }

    fn knows_facility(&self) -> bool {
        self.facility_npi.is_some() || self.facility_reference.is_some()
    }

    fn is_facility_reference(&self, reference: &str) -> bool {
        let Some(facility) = self.facility_reference else {
            return false;
        };
        reference == facility
            || relative_tail(reference).is_some_and(|tail| Some(tail) == relative_tail(facility))
    }

    fn ndjson_line(&self, line: &[u8], location: Location) -> Option<Record> {
        let line = match location {
            Location::Line(1) => line.strip_prefix(UTF8_BOM).unwrap_or(line),
            _ => line,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return Some(Record::Rejected(Problem::new(
                location,
                None,
                "the line is not valid UTF-8",
            )));
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let seed = ResourceSeed {
            wanted: Wanted::Requests,
            contained: false,
        };
        let parsed = seed
            .deserialize(&mut deserializer)
            .and_then(|parsed| deserializer.end().map(|()| parsed));
        Some(match parsed {
            Ok(parsed) => self.resource_record(parsed, location),
            Err(error) => {
                let column = error.column();
                let reason = match error.classify() {
                    Category::Syntax | Category::Eof => {
                        format!("not valid JSON: {} (column {column})", json_message(&error))
                    }
                    Category::Data | Category::Io => {
                        format!("not a FHIR resource (column {column})")
                    }
                };
                Record::Rejected(Problem::new(location, None, reason))
            }
        })
    }

    fn bundle_entry(&self, entry: Entry, location: Location) -> Record {
        match entry {
            Entry::NotObject => Record::Rejected(Problem::new(
                location,
                None,
                "the entry is not a JSON object",
            )),
            Entry::Object { resource: None, .. } => Record::Skipped {
                location,
                what: "entry without a resource".to_string(),
            },
            Entry::Object {
                resource: Some(parsed),
                ..
            } => self.resource_record(parsed, location),
        }
    }

    fn resource_record(&self, parsed: Parsed, location: Location) -> Record {
        let resource = match parsed {
            Parsed::NotObject => {
                return Record::Rejected(Problem::new(
                    location,
                    None,
                    "not a JSON object; expected a FHIR resource",
                ));
            }
            Parsed::Resource(resource) => resource,
        };
        match &resource.resource_type {
            ResourceType::Named(name) if name == "ServiceRequest" => {
                self.service_request(&resource, location)
            }
            ResourceType::Named(name) => Record::Skipped {
                location,
                what: if is_type_name(name) {
                    format!("{name} resource")
                } else {
                    "resource of an unrecognized type".to_string()
                },
            },
            ResourceType::Missing => Record::Rejected(Problem::new(
                location,
                Some("resourceType"),
                "the resourceType is missing",
            )),
            ResourceType::NotText => Record::Rejected(Problem::new(
                location,
                Some("resourceType"),
                "the resourceType is not a string",
            )),
        }
    }

    /// Maps one `ServiceRequest`. Its subject's MRN is read and tokenized here and only here.
    fn service_request(&self, request: &Resource, location: Location) -> Record {
        let reject = |field: &str, reason: &str| {
            Record::Rejected(Problem::new(location, Some(field), reason))
        };
        let status = request.text("status");
        if status == Some("entered-in-error") {
            return Record::Skipped {
                location,
                what: "ServiceRequest entered-in-error".to_string(),
            };
        }
        let inquiry_id = match self.inquiry_id(request) {
            Ok(inquiry_id) => inquiry_id,
            Err(reason) => return reject("identifier", reason),
        };
        let inquiry_date = match fhir_date(request.get("authoredOn")) {
            FhirDate::Date(date) => match implausible(date) {
                None => date,
                Some(why) => {
                    return reject("authoredOn", &format!("the inquiry date {why}"));
                }
            },
            FhirDate::Missing => return reject("authoredOn", "the inquiry date is missing"),
            FhirDate::Imprecise => {
                return reject(
                    "authoredOn",
                    "the inquiry date has only a year or a month; a full date is required",
                );
            }
            FhirDate::Invalid => {
                return reject(
                    "authoredOn",
                    "the inquiry date is not a FHIR date or dateTime",
                );
            }
        };
        let disposition = match status {
            Some("completed") => Disposition::Admitted,
            Some("revoked") => Disposition::NotAdmitted,
            Some("active" | "draft" | "on-hold") => Disposition::Pending,
            Some(_) => {
                return reject(
                    "status",
                    "not a status refbridge maps (draft, active, on-hold, revoked, completed, entered-in-error)",
                );
            }
            None => return reject("status", "the status is missing"),
        };

        let mut scope = RequestScope {
            mapper: self,
            contained: &request.contained,
            location,
            warnings: Vec::new(),
        };
        let requester = request
            .get("requester")
            .map(|reference| scope.party(reference, "requester", None, 0))
            .unwrap_or_default();
        let first_performer = items(request.get("performer")).first();
        let (direction, partner, referred_out_to, parent_inquiry_id) = if requester.is_facility {
            let performer = first_performer
                .map(|reference| scope.party(reference, "performer", None, 0))
                .unwrap_or_default();
            (Direction::Out, performer, None, parent_inquiry_id(request))
        } else {
            // Without a configured facility every performer would look like someone else.
            let referred_out_to = first_performer
                .filter(|_| self.knows_facility())
                .map(|reference| scope.party(reference, "performer", None, 0))
                .filter(|performer| !performer.is_facility)
                .and_then(|performer| performer.partner());
            (Direction::In, requester, referred_out_to, None)
        };
        let disposition_reason = scope.disposition_reason(request.get("extension"));
        let level_of_care = scope.level_of_care(request.get("code"));
        let (payer, plan_type) = scope.payer_and_plan_type(request.get("insurance"));
        let admit_date = match disposition {
            Disposition::Admitted => scope.admit_date(request),
            _ => None,
        };
        let warnings = scope.warnings;

        let referral = Referral {
            inquiry_id,
            inquiry_date,
            direction,
            referred_by: partner.clinician.clone(),
            partner: partner.partner(),
            referred_out_to,
            parent_inquiry_id,
            rep: None,
            payer,
            plan_type,
            level_of_care,
            disposition,
            disposition_reason,
            admit_date,
            patient: self.patient_token(request),
            zip3: None,
        };
        Record::Referral {
            location,
            referral,
            warnings,
        }
    }

    fn inquiry_id(&self, request: &Resource) -> Result<String, &'static str> {
        let identifiers = items(request.get("identifier"));
        let configured = self.reader.fhir.inquiry_id_system.as_deref().map(str::trim);
        if let Some(system) = configured.filter(|system| !system.is_empty()) {
            return identifiers
                .iter()
                .filter(|identifier| text(identifier, "system") == Some(system))
                .find_map(|identifier| text(identifier, "value"))
                .map(str::to_string)
                .ok_or("no identifier has the configured inquiry_id_system");
        }
        identifiers
            .iter()
            .find_map(|identifier| text(identifier, "value"))
            .or_else(|| request.text("id"))
            .map(str::to_string)
            .ok_or("the request has neither an identifier value nor an id")
    }

    /// The subject's MRN (`subject.identifier.value`), else its reference, as a token.
    fn patient_token(&self, request: &Resource) -> Option<PatientToken> {
        let subject = request.get("subject")?;
        if let Some(mrn) = subject
            .get("identifier")
            .and_then(|identifier| text(identifier, "value"))
        {
            return self.reader.patient_key.token(mrn);
        }
        // A local "#id" reference is not stable across requests, so it is no patient key.
        let reference =
            text(subject, "reference").filter(|reference| !reference.starts_with('#'))?;
        self.reader.patient_key.token(reference)
    }
}

/// `basedOn[0]`: its identifier's value, else the id part of its reference.
fn parent_inquiry_id(request: &Resource) -> Option<String> {
    let based_on = items(request.get("basedOn")).first()?;
    if let Some(value) = based_on
        .get("identifier")
        .and_then(|identifier| text(identifier, "value"))
    {
        return Some(value.to_string());
    }
    let reference = text(based_on, "reference")?;
    let path = reference
        .split_once("/_history/")
        .map_or(reference, |(path, _)| path);
    let (_, id) = path.rsplit_once('/')?;
    (!id.is_empty() && !reference.starts_with('#')).then(|| id.to_string())
}

/// Who a reference names, as far as refbridge may keep it.
#[derive(Default)]
struct Party {
    name: Option<String>,
    npi: Option<Npi>,
    source_type: Option<String>,
    /// A practitioner's name: the referring professional.
    clinician: Option<String>,
    is_facility: bool,
    /// The reference points at a patient or a related person.
    is_person: bool,
}

impl Party {
    fn partner(&self) -> Option<PartnerRef> {
        let name = self
            .name
            .clone()
            .or_else(|| self.npi.map(|npi| format!("NPI {npi}")))?;
        Some(PartnerRef {
            name,
            npi: self.npi,
            source_type: self.source_type.clone(),
        })
    }
}

/// What a reference string resolves to.
enum Target {
    Known(Known),
    /// A resource type refbridge does not summarize (a contained `Patient`, an unresolved
    /// `Organization/x`…).
    Typed(String),
    Unknown,
}

/// One request being mapped: its contained resources and the warnings collected so far.
struct RequestScope<'a> {
    mapper: &'a Mapper<'a>,
    contained: &'a [Resource],
    location: Location,
    warnings: Vec<Problem>,
}

impl RequestScope<'_> {
    fn warn(&mut self, field: &str, reason: impl Into<String>) {
        self.warnings
            .push(Problem::new(self.location, Some(field), reason));
    }

    fn lookup(&self, reference: &str) -> Target {
        if let Some(local_id) = reference.strip_prefix('#') {
            let Some(found) = self
                .contained
                .iter()
                .find(|r| r.text("id") == Some(local_id))
            else {
                return Target::Unknown;
            };
            return match (Known::from_resource(found), &found.resource_type) {
                (Some(known), _) => Target::Known(known),
                (None, ResourceType::Named(name)) => Target::Typed(name.clone()),
                (None, _) => Target::Unknown,
            };
        }
        if let Some(known) = self.mapper.index.and_then(|index| index.get(reference)) {
            return Target::Known(known.clone());
        }
        match relative_tail(reference).and_then(|tail| tail.split_once('/')) {
            Some((type_name, _)) => Target::Typed(type_name.to_string()),
            None => Target::Unknown,
        }
    }

    fn npi(&mut self, role: &str, text: &str) -> Option<Npi> {
        match Npi::parse(text) {
            Ok(npi) => Some(npi),
            Err(error) => {
                self.warn(
                    &format!("{role}.identifier"),
                    format!("invalid NPI dropped, the record is kept: {error}"),
                );
                None
            }
        }
    }

    /// Resolves a Reference to the party it names. `hint` is the type the reference must have
    /// where FHIR says so (a PractitionerRole's `organization`); `depth` stops role chains.
    fn party(&mut self, reference: &Value, role: &str, hint: Option<&str>, depth: u8) -> Party {
        let mut party = Party::default();
        let reference_text = text(reference, "reference");
        let display = text(reference, "display").map(str::to_string);
        let facility_npi = self.mapper.facility_npi;

        if let Some(identifier) = reference.get("identifier")
            && text(identifier, "system") == Some(NPI_SYSTEM)
            && let Some(value) = text(identifier, "value")
        {
            party.npi = self.npi(role, value);
            party.is_facility = party.npi.is_some() && party.npi == facility_npi;
        }
        if let Some(reference) = reference_text {
            party.is_facility |= self.mapper.is_facility_reference(reference);
        }
        let target = reference_text.map_or(Target::Unknown, |reference| self.lookup(reference));
        let is_facility_key = |key: &Option<String>| {
            key.as_deref()
                .is_some_and(|key| self.mapper.is_facility_reference(key))
        };

        match target {
            Target::Known(Known::Organization {
                key,
                name,
                npi,
                kind,
            }) => {
                party.is_facility |= is_facility_key(&key);
                party.name = name.or(display);
                if party.npi.is_none()
                    && let Some(npi) = npi
                {
                    party.npi = self.npi(role, &npi);
                }
                party.source_type = kind;
            }
            Target::Known(Known::Practitioner { key, name, npi }) => {
                party.is_facility |= is_facility_key(&key);
                party.name = name.or(display);
                if party.npi.is_none()
                    && let Some(npi) = npi
                {
                    party.npi = self.npi(role, &npi);
                }
                party.source_type = Some("physician".to_string());
                party.clinician = party.name.clone();
            }
            Target::Known(Known::PractitionerRole {
                key,
                organization,
                practitioner,
            }) if depth == 0 => {
                let role_is_facility = party.is_facility || is_facility_key(&key);
                let practitioner =
                    practitioner.map(|p| self.party(&p, role, Some("Practitioner"), depth + 1));
                let organization =
                    organization.map(|o| self.party(&o, role, Some("Organization"), depth + 1));
                let clinician = practitioner.as_ref().and_then(|p| p.clinician.clone());
                let names_someone = |p: &Party| p.name.is_some() || p.npi.is_some();
                let mut chosen = match (organization, practitioner) {
                    (Some(organization), _) if names_someone(&organization) => organization,
                    (_, Some(practitioner)) if names_someone(&practitioner) => practitioner,
                    _ => Party {
                        name: display,
                        npi: party.npi,
                        ..Party::default()
                    },
                };
                chosen.is_facility |= role_is_facility;
                chosen.clinician = clinician;
                party = chosen;
            }
            target => {
                let type_name = match &target {
                    Target::Known(known) => Some(known.type_name()),
                    Target::Typed(type_name) => Some(type_name.as_str()),
                    Target::Unknown => text(reference, "type").or(hint),
                };
                match type_name {
                    Some("Patient" | "RelatedPerson") => {
                        // A self or family referral: nothing about the person is kept.
                        return Party {
                            is_person: true,
                            ..Party::default()
                        };
                    }
                    Some(type_name) if PARTY_TYPES.contains(&type_name) => {
                        if type_name == "Practitioner" {
                            party.source_type = Some("physician".to_string());
                            party.clinician = display.clone();
                        }
                        party.name = display;
                    }
                    None if reference_text.is_none() => party.name = display,
                    _ => {
                        if display.is_some() {
                            self.warn(
                                &format!("{role}.display"),
                                "the reference does not point to an organization or practitioner refbridge can see, so its display was not used",
                            );
                        }
                    }
                }
            }
        }
        party.is_facility |= party.npi.is_some() && party.npi == facility_npi;
        party
    }

    /// The extension whose url ends with `disposition-reason`, if any.
    fn disposition_reason(&mut self, extensions: Option<&Value>) -> Option<DispositionReason> {
        let extension = items(extensions).iter().find(|extension| {
            text(extension, "url")
                .is_some_and(|url| url.to_ascii_lowercase().ends_with("disposition-reason"))
        })?;
        let concept = extension.get("valueCodeableConcept");
        let coded = concept
            .map(|concept| items(concept.get("coding")))
            .unwrap_or_default()
            .iter()
            .filter_map(|coding| text(coding, "code"));
        let mut candidates = [text(extension, "valueCode"), text(extension, "valueString")]
            .into_iter()
            .flatten()
            .chain(coded)
            .chain(concept.and_then(|concept| text(concept, "text")))
            .peekable();
        candidates.peek()?;
        let parsed = candidates.find_map(DispositionReason::parse);
        if parsed.is_none() {
            self.warn(
                "extension.disposition-reason",
                "unknown disposition reason, stored as other",
            );
        }
        Some(parsed.unwrap_or(DispositionReason::Other))
    }

    /// `code`: an ASAM coding's code, else the text, in the configured scheme.
    fn level_of_care(&mut self, code: Option<&Value>) -> Option<LevelOfCare> {
        let concept = code?;
        let scheme = self.mapper.reader.level_of_care_scheme.as_str();
        let asam_codes = items(concept.get("coding"))
            .iter()
            .filter(|coding| {
                text(coding, "system")
                    .is_some_and(|system| system.to_ascii_lowercase().contains("asam"))
            })
            .filter_map(|coding| text(coding, "code"));
        let mut candidates = asam_codes.chain(text(concept, "text")).peekable();
        candidates.peek()?;
        let parsed = candidates.find_map(|candidate| LevelOfCare::parse(candidate, scheme));
        if parsed.is_none() {
            self.warn(
                "code",
                format!("not a level of care in scheme {scheme}, not stored"),
            );
        }
        parsed
    }

    /// `insurance[0]`: a resolved Coverage's payor and type, else the reference's display.
    fn payer_and_plan_type(
        &mut self,
        insurance: Option<&Value>,
    ) -> (Option<String>, Option<String>) {
        let Some(reference) = items(insurance).first() else {
            return (None, None);
        };
        let display = text(reference, "display").map(str::to_string);
        let target = text(reference, "reference").map(|reference| self.lookup(reference));
        match target {
            Some(Target::Known(Known::Coverage {
                payor, plan_type, ..
            })) => {
                let payor =
                    payor.map(|payor| self.party(&payor, "insurance", Some("Organization"), 1));
                match payor {
                    // Self-pay: the payor is the patient, whose name must not become the payer.
                    Some(payor) if payor.is_person => (None, plan_type),
                    Some(payor) => (payor.name.or(display), plan_type),
                    None => (display, plan_type),
                }
            }
            Some(Target::Typed(type_name))
                if matches!(type_name.as_str(), "Patient" | "RelatedPerson") =>
            {
                (None, None)
            }
            _ => (display, None),
        }
    }

    /// For a completed request: `occurrenceDateTime`, else `occurrencePeriod.start`.
    fn admit_date(&mut self, request: &Resource) -> Option<NaiveDate> {
        let (field, value) = match request.get("occurrenceDateTime") {
            Some(value) => ("occurrenceDateTime", Some(value)),
            None => (
                "occurrencePeriod.start",
                request
                    .get("occurrencePeriod")
                    .and_then(|period| period.get("start")),
            ),
        };
        match fhir_date(value) {
            FhirDate::Date(date) => match implausible(date) {
                None => Some(date),
                Some(why) => {
                    self.warn(field, format!("the admit date {why}, not stored"));
                    None
                }
            },
            FhirDate::Missing => None,
            FhirDate::Imprecise => {
                self.warn(
                    field,
                    "the admit date has only a year or a month, not stored",
                );
                None
            }
            FhirDate::Invalid => {
                self.warn(
                    field,
                    "the admit date is not a FHIR date or dateTime, not stored",
                );
                None
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// FHIR value helpers

enum FhirDate {
    Missing,
    /// `YYYY` or `YYYY-MM`: valid FHIR, but not a day.
    Imprecise,
    Invalid,
    Date(NaiveDate),
}

/// A FHIR `date` or `dateTime`, reduced to its date part as written.
fn fhir_date(value: Option<&Value>) -> FhirDate {
    let text = match value {
        None | Some(Value::Null) => return FhirDate::Missing,
        Some(Value::String(text)) => text.trim(),
        Some(_) => return FhirDate::Invalid,
    };
    if text.is_empty() {
        return FhirDate::Missing;
    }
    let bytes = text.as_bytes();
    let digits = |from: usize, to: usize| {
        bytes
            .get(from..to)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let dash_at = |at: usize| bytes.get(at) == Some(&b'-');
    if (bytes.len() == 4 && digits(0, 4))
        || (bytes.len() == 7 && digits(0, 4) && dash_at(4) && digits(5, 7))
    {
        return FhirDate::Imprecise;
    }
    let iso_shaped = bytes.len() >= 10
        && dash_at(4)
        && dash_at(7)
        && (bytes.len() == 10 || bytes.get(10) == Some(&b'T'));
    match parse_date(text, &[]) {
        Some(date) if iso_shaped => FhirDate::Date(date),
        _ => FhirDate::Invalid,
    }
}

/// A non-empty, trimmed string field of a JSON object.
fn text<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(as_text)
}

fn as_text(value: &Value) -> Option<&str> {
    value
        .as_str()
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// A FHIR list field's elements (a lone object counts as a list of one).
fn items(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(values)) => values,
        None | Some(Value::Null) => &[],
        Some(other) => std::slice::from_ref(other),
    }
}

/// The value of the first identifier with the US NPI system.
fn npi_identifier(identifiers: Option<&Value>) -> Option<&str> {
    items(identifiers)
        .iter()
        .filter(|identifier| text(identifier, "system") == Some(NPI_SYSTEM))
        .find_map(|identifier| text(identifier, "value"))
}

/// A CodeableConcept's text, else its first coding's display or code.
fn concept_label(concept: &Value) -> Option<&str> {
    text(concept, "text").or_else(|| {
        items(concept.get("coding"))
            .iter()
            .find_map(|coding| text(coding, "display").or_else(|| text(coding, "code")))
    })
}

/// A practitioner's first HumanName: its text, else given names and family name.
fn human_name(names: Option<&Value>) -> Option<String> {
    let name = items(names).first()?;
    if let Some(full) = text(name, "text") {
        return Some(full.to_string());
    }
    let mut parts: Vec<&str> = items(name.get("given"))
        .iter()
        .filter_map(as_text)
        .collect();
    parts.extend(text(name, "family"));
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// `Type/id` at the end of a relative or absolute reference (a version suffix dropped).
fn relative_tail(reference: &str) -> Option<&str> {
    let path = reference
        .split_once("/_history/")
        .map_or(reference, |(path, _)| path);
    let (before_id, id) = path.rsplit_once('/')?;
    let type_name = before_id
        .rsplit_once('/')
        .map_or(before_id, |(_, type_name)| type_name);
    if id.is_empty() || !is_type_name(type_name) {
        return None;
    }
    path.get(path.len() - id.len() - 1 - type_name.len()..)
}

/// Looks like a FHIR resource type name (so it may be echoed in a `Skipped` record).
fn is_type_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use refbridge_model::PatientKey;
    use serde_json::json;

    use super::*;
    use crate::{CsvLayout, FhirOptions};

    const MRN: &str = "MRN-CANARY-4471";
    const PATIENT_NAME: &str = "Zelda Canaryfield";
    const FAMILY_NAME: &str = "Canaryfield";
    const FACILITY_REFERENCE: &str = "Organization/facility";

    fn npi(seed: u32) -> String {
        Npi::from_first_nine(seed).to_string()
    }

    fn facility_npi() -> String {
        npi(111_111_111)
    }

    fn reader() -> ExportReader {
        ExportReader {
            csv: CsvLayout::default(),
            fhir: FhirOptions {
                facility_npi: Some(facility_npi()),
                facility_reference: Some(FACILITY_REFERENCE.to_string()),
                inquiry_id_system: None,
            },
            patient_key: PatientKey::new(b"test key"),
            level_of_care_scheme: "asam3".to_string(),
        }
    }

    fn temp_file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(contents).expect("write temp file");
        file.flush().expect("flush temp file");
        file
    }

    type Outcome = (Vec<Record>, Result<(), ReadError<()>>);

    fn read_bundle_bytes(reader: &ExportReader, contents: &[u8]) -> Outcome {
        let file = temp_file(contents);
        let mut records = Vec::new();
        let result = read_bundle(reader, file.path(), &mut |record| {
            records.push(record);
            Ok(())
        });
        (records, result)
    }

    fn read_ndjson_bytes(reader: &ExportReader, contents: &[u8]) -> Outcome {
        let file = temp_file(contents);
        let mut records = Vec::new();
        let result = read_ndjson(reader, file.path(), &mut |record| {
            records.push(record);
            Ok(())
        });
        (records, result)
    }

    fn referral(record: &Record) -> (&Referral, &[Problem]) {
        match record {
            Record::Referral {
                referral, warnings, ..
            } => (referral, warnings),
            other => panic!("expected a referral, got {other:?}"),
        }
    }

    fn assert_no_patient_values(records: &[Record]) {
        let debug = format!("{records:?}");
        for secret in [
            MRN,
            PATIENT_NAME,
            FAMILY_NAME,
            "Zelda",
            "1961-07-04",
            "555-0199",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
    }

    fn subject() -> Value {
        json!({
            "reference": "Patient/p1",
            "display": PATIENT_NAME,
            "identifier": {"system": "urn:oid:1.2.3", "value": MRN}
        })
    }

    fn patient_resource() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": "urn:oid:1.2.3", "value": MRN}],
            "name": [{"family": FAMILY_NAME, "given": ["Zelda"], "text": PATIENT_NAME}],
            "birthDate": "1961-07-04",
            "telecom": [{"system": "phone", "value": "555-0199"}]
        })
    }

    fn sample_bundle() -> Value {
        json!({
            "resourceType": "Bundle",
            "type": "collection",
            "meta": {"tag": [[[["skipped", {"nested": "]]]"}]]]]},
            "entry": [
                {
                    "fullUrl": "urn:uuid:sr-in",
                    "resource": {
                        "resourceType": "ServiceRequest",
                        "id": "sr-in",
                        "text": {"div": format!("<div>{PATIENT_NAME}</div>")},
                        "identifier": [{"system": "urn:inquiry", "value": "INQ-1"}],
                        "status": "completed",
                        "authoredOn": "2026-03-07T14:05:00-05:00",
                        "subject": subject(),
                        "requester": {"reference": "Organization/mercy"},
                        "performer": [{"reference": FACILITY_REFERENCE}],
                        "insurance": [{"reference": "#cov"}],
                        "contained": [
                            {
                                "resourceType": "Coverage",
                                "id": "cov",
                                "payor": [{"display": "Aetna"}],
                                "type": {"coding": [{"code": "PPO"}]},
                                "subscriberId": MRN
                            },
                            patient_resource()
                        ],
                        "code": {"coding": [{"system": "https://www.asam.org/levels", "code": "3.7"}]},
                        "occurrenceDateTime": "2026-03-09",
                        "note": [{"text": format!("{PATIENT_NAME} called")}],
                        "reasonCode": [{"text": format!("{PATIENT_NAME} relapse")}],
                        "patientInstruction": PATIENT_NAME
                    }
                },
                {"fullUrl": "urn:uuid:p1", "resource": patient_resource()},
                {
                    "fullUrl": "http://example.org/fhir/Organization/mercy",
                    "resource": {
                        "resourceType": "Organization",
                        "id": "mercy",
                        "name": "Mercy Hospital",
                        "identifier": [{"system": NPI_SYSTEM, "value": npi(222_222_222)}],
                        "type": [{"text": "Hospital"}]
                    }
                },
                {
                    "fullUrl": "urn:uuid:sr-out",
                    "resource": {
                        "resourceType": "ServiceRequest",
                        "id": "sr-out",
                        "identifier": [{"value": "OUT-1"}],
                        "status": "revoked",
                        "authoredOn": "2026-03-10",
                        "subject": subject(),
                        "requester": {
                            "reference": "urn:uuid:facility-org",
                            "identifier": {"system": NPI_SYSTEM, "value": facility_npi()}
                        },
                        "performer": [{"reference": "urn:uuid:role-1"}],
                        "basedOn": [{"reference": "ServiceRequest/INQ-1/_history/2"}],
                        "extension": [{
                            "url": "http://refbridge.example/StructureDefinition/disposition-reason",
                            "valueCodeableConcept": {"coding": [{"code": "no-beds"}]}
                        }]
                    }
                },
                {
                    "fullUrl": "urn:uuid:role-1",
                    "resource": {
                        "resourceType": "PractitionerRole",
                        "organization": {"reference": "Organization/sunrise"},
                        "practitioner": {"reference": "Practitioner/dr-lee"}
                    }
                },
                {
                    "resource": {
                        "resourceType": "Practitioner",
                        "id": "dr-lee",
                        "name": [{"given": ["Ann", "B"], "family": "Lee"}],
                        "identifier": [{"system": NPI_SYSTEM, "value": npi(333_333_333)}]
                    }
                },
                {
                    "resource": {
                        "id": "sunrise",
                        "name": "Sunrise Recovery",
                        "type": [{"coding": [{"code": "prov", "display": "Treatment Center"}]}],
                        "resourceType": "Organization"
                    }
                },
                {
                    "resource": {
                        "resourceType": "ServiceRequest",
                        "id": "sr-error",
                        "status": "entered-in-error",
                        "subject": subject()
                    }
                },
                {
                    "resource": {
                        "resourceType": "ServiceRequest",
                        "id": "sr-bad",
                        "status": "active",
                        "subject": subject()
                    }
                }
            ]
        })
    }

    #[test]
    fn bundle_requests_resolve_references_in_any_order() {
        let contents = serde_json::to_vec_pretty(&sample_bundle()).unwrap();
        let (records, result) = read_bundle_bytes(&reader(), &contents);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(records.len(), 9, "{records:#?}");

        // Inbound, requester resolved from an Organization entry that comes after the request.
        let Record::Referral { location, .. } = &records[0] else {
            panic!("{records:#?}");
        };
        assert_eq!(*location, Location::Entry(1));
        let (inbound, warnings) = referral(&records[0]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(inbound.inquiry_id, "INQ-1");
        assert_eq!(inbound.inquiry_date.to_string(), "2026-03-07");
        assert_eq!(inbound.direction, Direction::In);
        let partner = inbound.partner.as_ref().unwrap();
        assert_eq!(partner.name, "Mercy Hospital");
        assert_eq!(partner.npi.map(|n| n.to_string()), Some(npi(222_222_222)));
        assert_eq!(partner.source_type.as_deref(), Some("hospital"));
        assert_eq!(
            inbound.referred_out_to, None,
            "the performer is the facility"
        );
        assert_eq!(inbound.disposition, Disposition::Admitted);
        assert_eq!(inbound.admit_date.unwrap().to_string(), "2026-03-09");
        assert_eq!(inbound.payer.as_deref(), Some("Aetna"));
        assert_eq!(inbound.plan_type.as_deref(), Some("PPO"));
        assert_eq!(inbound.level_of_care.as_ref().unwrap().code, "3.7");
        assert_eq!(inbound.patient, reader().patient_key.token(MRN));
        assert_eq!(inbound.zip3, None);
        assert_eq!(inbound.rep, None);

        assert!(
            matches!(&records[1], Record::Skipped { location: Location::Entry(2), what } if what == "Patient resource")
        );
        assert!(
            matches!(&records[2], Record::Skipped { what, .. } if what == "Organization resource")
        );

        // Outbound: the facility (by NPI) requested, a PractitionerRole performs.
        let (outbound, warnings) = referral(&records[3]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(outbound.direction, Direction::Out);
        assert_eq!(outbound.parent_inquiry_id.as_deref(), Some("INQ-1"));
        let partner = outbound.partner.as_ref().unwrap();
        assert_eq!(partner.name, "Sunrise Recovery");
        assert_eq!(partner.source_type.as_deref(), Some("treatment center"));
        assert_eq!(outbound.referred_by.as_deref(), Some("Ann B Lee"));
        assert_eq!(outbound.disposition, Disposition::NotAdmitted);
        assert_eq!(
            outbound.disposition_reason,
            Some(DispositionReason::Capacity)
        );
        assert_eq!(outbound.admit_date, None);

        assert!(
            matches!(&records[7], Record::Skipped { location: Location::Entry(8), what } if what == "ServiceRequest entered-in-error")
        );
        let Record::Rejected(problem) = &records[8] else {
            panic!("{records:#?}");
        };
        assert_eq!(problem.location, Location::Entry(9));
        assert_eq!(problem.field.as_deref(), Some("authoredOn"));
        assert_no_patient_values(&records);
    }

    #[test]
    fn ndjson_lines_are_mapped_skipped_or_rejected() {
        let good = json!({
            "resourceType": "ServiceRequest",
            "id": "nd-1",
            "status": "draft",
            "authoredOn": "2026-04-01",
            "subject": subject(),
            "requester": {
                "display": "County Court",
                "identifier": {"system": NPI_SYSTEM, "value": "1234567890"}
            },
            "code": {"text": "Level 2.1"},
            "extension": [{"url": "x/disposition-reason", "valueString": "because"}],
            "insurance": [{"display": "Medicaid"}]
        });
        let self_referral = json!({
            "resourceType": "ServiceRequest",
            "identifier": [{"value": "nd-2"}],
            "status": "on-hold",
            "authoredOn": "2026-04",
            "requester": {"reference": "Patient/p1", "display": PATIENT_NAME}
        });
        let self_referral_ok = json!({
            "resourceType": "ServiceRequest",
            "identifier": [{"value": "nd-3"}],
            "status": "active",
            "authoredOn": "2026-04-02",
            "requester": {"reference": "Patient/p1", "display": PATIENT_NAME},
            "performer": [{"reference": "Organization/elsewhere", "display": "Elsewhere Clinic"}],
            "subject": {"reference": "Patient/p1"}
        });
        let mut contents = Vec::new();
        contents.extend_from_slice(UTF8_BOM);
        writeln!(contents, "{good}").unwrap();
        writeln!(contents, "{}", patient_resource()).unwrap();
        writeln!(
            contents,
            "{{\"resourceType\": \"ServiceRequest\", {PATIENT_NAME}"
        )
        .unwrap();
        writeln!(contents, "   \r").unwrap();
        writeln!(contents, "[1, 2]").unwrap();
        contents.extend_from_slice(b"{\"status\": \"\xff\"}\r\n");
        writeln!(contents, "{self_referral}").unwrap();
        write!(contents, "{self_referral_ok}").unwrap();

        let (records, result) = read_ndjson_bytes(&reader(), &contents);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(records.len(), 7, "{records:#?}");

        let (first, warnings) = referral(&records[0]);
        assert_eq!(first.inquiry_id, "nd-1");
        assert_eq!(first.direction, Direction::In);
        let partner = first.partner.as_ref().unwrap();
        assert_eq!(partner.name, "County Court");
        assert_eq!(partner.npi, None);
        assert_eq!(first.disposition, Disposition::Pending);
        assert_eq!(first.disposition_reason, Some(DispositionReason::Other));
        assert_eq!(first.level_of_care.as_ref().unwrap().code, "2.1");
        assert_eq!(first.payer.as_deref(), Some("Medicaid"));
        let fields: Vec<_> = warnings
            .iter()
            .map(|w| w.field.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(
            fields,
            ["requester.identifier", "extension.disposition-reason"]
        );
        assert!(warnings.iter().all(|w| w.location == Location::Line(1)));

        assert!(
            matches!(&records[1], Record::Skipped { location: Location::Line(2), what } if what == "Patient resource")
        );
        let Record::Rejected(garbage) = &records[2] else {
            panic!("{records:#?}")
        };
        assert_eq!(garbage.location, Location::Line(3));
        assert!(
            garbage.reason.starts_with("not valid JSON: "),
            "{garbage:?}"
        );
        assert!(garbage.reason.contains("column"), "{garbage:?}");
        let Record::Rejected(array) = &records[3] else {
            panic!("{records:#?}")
        };
        assert_eq!(array.location, Location::Line(5));
        let Record::Rejected(latin1) = &records[4] else {
            panic!("{records:#?}")
        };
        assert_eq!(latin1.location, Location::Line(6));
        assert!(latin1.reason.contains("UTF-8"));
        let Record::Rejected(imprecise) = &records[5] else {
            panic!("{records:#?}")
        };
        assert_eq!(imprecise.location, Location::Line(7));
        assert_eq!(imprecise.field.as_deref(), Some("authoredOn"));

        // A patient requester names no partner; the performer is someone else: referred out.
        let (last, _) = referral(&records[6]);
        assert_eq!(last.partner, None);
        assert_eq!(last.referred_by, None);
        assert_eq!(
            last.referred_out_to.as_ref().unwrap().name,
            "Elsewhere Clinic"
        );
        assert_eq!(last.patient, reader().patient_key.token("Patient/p1"));
        assert_no_patient_values(&records);
    }

    #[test]
    fn overlong_ndjson_lines_are_rejected_and_skipped() {
        let good = json!({
            "resourceType": "ServiceRequest", "id": "after", "status": "active",
            "authoredOn": "2026-01-02"
        })
        .to_string();
        let long = format!(
            "{{\"resourceType\": \"Patient\", \"name\": \"{}\"}}",
            "x".repeat(300)
        );
        let text = format!("{good}\n{long}\n{good}\n{long}");
        let mut records = Vec::new();
        let result = read_ndjson_lines::<()>(&reader(), text.as_bytes(), 100, &mut |record| {
            records.push(record);
            Ok(())
        });
        assert!(result.is_ok());
        let summary: Vec<String> = records
            .iter()
            .map(|record| match record {
                Record::Referral { location, .. } => format!("referral {location}"),
                Record::Rejected(problem) => format!("rejected {}", problem.location),
                Record::Skipped { location, .. } => format!("skipped {location}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "referral line 1",
                "rejected line 2",
                "referral line 3",
                "rejected line 4"
            ]
        );

        // The real cap, through the file reader.
        let mut contents = b"{\"resourceType\": \"Patient\", \"x\": \"".to_vec();
        contents.resize(contents.len() + MAX_LINE_BYTES + 1024, b'a');
        contents.extend_from_slice(format!("\"}}\n{good}\n").as_bytes());
        let (records, result) = read_ndjson_bytes(&reader(), &contents);
        assert!(result.is_ok());
        assert_eq!(records.len(), 2);
        assert!(
            matches!(&records[0], Record::Rejected(p) if p.location == Location::Line(1) && p.reason.contains("longer than"))
        );
        assert_eq!(referral(&records[1]).0.inquiry_id, "after");
    }

    #[test]
    fn truncated_bundle_delivers_entries_then_fails_with_a_line() {
        let contents = serde_json::to_string_pretty(&sample_bundle()).unwrap();
        let cut = contents.find("\"urn:uuid:sr-out\"").unwrap();
        let (records, result) = read_bundle_bytes(&reader(), &contents.as_bytes()[..cut + 8]);
        assert_eq!(records.len(), 3, "{records:#?}");
        // Pass 1 indexed the entries before the cut, so the Organization still resolves.
        let (first, _) = referral(&records[0]);
        assert_eq!(first.partner.as_ref().unwrap().name, "Mercy Hospital");
        match result {
            Err(ReadError::Unusable(problem)) => {
                let Location::Line(line) = problem.location else {
                    panic!("{problem:?}")
                };
                assert!(line > 1);
                assert!(
                    problem.reason.starts_with("not valid JSON: EOF"),
                    "{problem:?}"
                );
                assert!(problem.reason.contains("column"), "{problem:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_no_patient_values(&records);
    }

    #[test]
    fn deeply_nested_json_is_refused_without_panicking() {
        let deep_open = "[".repeat(10_000);
        let deep_closed = format!("{deep_open}{}", "]".repeat(10_000));
        let inputs = [
            deep_open.clone(),
            format!("{{\"resourceType\": \"Bundle\", \"meta\": {deep_closed}}}"),
            format!(
                "{{\"resourceType\": \"Bundle\", \"entry\": [{{\"resource\": {{\"resourceType\": \"ServiceRequest\", \"code\": {deep_closed}}}}}]}}"
            ),
            format!(
                "{{\"resourceType\": \"Bundle\", \"entry\": [{{\"resource\": {deep_closed}}}]}}"
            ),
        ];
        for input in &inputs {
            let (_, result) = read_bundle_bytes(&reader(), input.as_bytes());
            assert!(
                matches!(&result, Err(ReadError::Unusable(p)) if matches!(p.location, Location::Line(_))),
                "{result:?}"
            );
        }

        // Entries before a too-deep skipped value are handed over; the error names its line.
        let good = json!({"resource": {"resourceType": "ServiceRequest", "id": "ok",
            "status": "active", "authoredOn": "2026-01-02"}});
        let input = format!(
            "{{\"resourceType\": \"Bundle\", \"entry\": [\n{good},\n{{\"request\": {deep_closed}}}]}}"
        );
        let (records, result) = read_bundle_bytes(&reader(), input.as_bytes());
        assert_eq!(records.len(), 1, "{records:?}");
        assert!(
            matches!(&result, Err(ReadError::Unusable(p)) if p.location == Location::Line(3) && p.reason.contains("deeper than")),
            "{result:?}"
        );

        let ndjson = format!(
            "{deep_open}\n{deep_closed}\n{{\"a\": {deep_closed}}}\n{{\"resourceType\": \"ServiceRequest\", \"code\": {deep_closed}}}\n"
        );
        let (records, result) = read_ndjson_bytes(&reader(), ndjson.as_bytes());
        assert!(result.is_ok());
        assert_eq!(records.len(), 4);
        assert!(
            records.iter().all(|r| matches!(r, Record::Rejected(_))),
            "{records:#?}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_bundle_is_unusable_before_anything_is_handed_over() {
        let contents =
            json!({"entry": [{"resource": patient_resource()}], "resourceType": "Patient"});
        let (records, result) = read_bundle_bytes(&reader(), contents.to_string().as_bytes());
        assert!(records.is_empty());
        assert!(matches!(result, Err(ReadError::Unusable(p)) if p.location == Location::File));

        let contents = json!({"entry": []});
        let (_, result) = read_bundle_bytes(&reader(), contents.to_string().as_bytes());
        assert!(matches!(result, Err(ReadError::Unusable(p)) if p.location == Location::File));

        let (_, result) = read_bundle_bytes(
            &reader(),
            b"{\"resourceType\": \"Bundle\", \"entry\": \"oops\"}",
        );
        assert!(matches!(result, Err(ReadError::Unusable(p)) if !p.reason.contains("oops")));
    }

    #[test]
    fn a_sink_error_stops_the_read_at_once() {
        let contents = serde_json::to_vec(&sample_bundle()).unwrap();
        let file = temp_file(&contents);
        let mut handed = 0;
        let result = read_bundle(&reader(), file.path(), &mut |_| {
            handed += 1;
            if handed == 2 {
                Err("ledger full")
            } else {
                Ok(())
            }
        });
        assert_eq!(handed, 2);
        assert!(matches!(result, Err(ReadError::Sink("ledger full"))));

        let file = temp_file(b"{\"resourceType\": \"Basic\"}\n{\"resourceType\": \"Basic\"}\n");
        let mut handed = 0;
        let result = read_ndjson(&reader(), file.path(), &mut |_| {
            handed += 1;
            Err("stop")
        });
        assert_eq!(handed, 1);
        assert!(matches!(result, Err(ReadError::Sink("stop"))));
    }

    #[test]
    fn configured_inquiry_id_system_and_contained_practitioner_role() {
        let mut reader = reader();
        reader.fhir.inquiry_id_system = Some("urn:inquiry".to_string());
        let request = |identifiers: Value| {
            json!({
                "resourceType": "ServiceRequest",
                "id": "res-id",
                "identifier": identifiers,
                "status": "active",
                "authoredOn": "2026-05-05",
                "requester": {"reference": "#role"},
                "contained": [
                    {"resourceType": "PractitionerRole", "id": "role",
                     "practitioner": {"reference": "#dr"}},
                    {"resourceType": "Practitioner", "id": "dr",
                     "name": [{"text": "Dr. Rivera"}],
                     "identifier": [{"system": NPI_SYSTEM, "value": "1234567893"}]}
                ]
            })
        };
        let text = format!(
            "{}\n{}\n",
            request(json!([{"value": "other"}, {"system": "urn:inquiry", "value": "Q-9"}])),
            request(json!([{"value": "other"}]))
        );
        let (records, _) = read_ndjson_bytes(&reader, text.as_bytes());
        let (first, _) = referral(&records[0]);
        assert_eq!(first.inquiry_id, "Q-9");
        let partner = first.partner.as_ref().unwrap();
        assert_eq!(partner.name, "Dr. Rivera");
        assert_eq!(
            partner.npi.map(|n| n.to_string()).as_deref(),
            Some("1234567893")
        );
        assert_eq!(partner.source_type.as_deref(), Some("physician"));
        assert_eq!(first.referred_by.as_deref(), Some("Dr. Rivera"));
        assert!(
            matches!(&records[1], Record::Rejected(p) if p.field.as_deref() == Some("identifier"))
        );
    }

    #[test]
    fn reference_helpers() {
        assert_eq!(relative_tail("Organization/1"), Some("Organization/1"));
        assert_eq!(
            relative_tail("http://x/fhir/Organization/1/_history/3"),
            Some("Organization/1")
        );
        assert_eq!(relative_tail("urn:uuid:abc"), None);
        assert_eq!(relative_tail("/"), None);
        assert_eq!(relative_tail("a/b"), None);
        assert!(matches!(
            fhir_date(Some(&json!("2026"))),
            FhirDate::Imprecise
        ));
        assert!(matches!(
            fhir_date(Some(&json!("2026-03"))),
            FhirDate::Imprecise
        ));
        assert!(matches!(
            fhir_date(Some(&json!("03/07/2026"))),
            FhirDate::Invalid
        ));
        assert!(matches!(
            fhir_date(Some(&json!("2026-03-07 10:00"))),
            FhirDate::Invalid
        ));
        assert!(matches!(
            fhir_date(Some(&json!("2026-02-30"))),
            FhirDate::Invalid
        ));
        assert!(matches!(
            fhir_date(Some(&json!(20260307))),
            FhirDate::Invalid
        ));
        assert!(matches!(
            fhir_date(Some(&json!("2026-03-07T10:00:00Z"))),
            FhirDate::Date(_)
        ));
    }
}
