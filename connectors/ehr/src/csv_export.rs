//! The streaming CSV reader: one reused record buffer, so memory stays flat whatever the file size.
//!
//! Handles a UTF-8 BOM, CRLF, quoted commas and newlines, blank rows, and Latin-1 text in an
//! otherwise UTF-8 export. Patient columns other than the MRN and ZIP are never looked at; the MRN
//! becomes a token and the ZIP a ZIP3 inside [`parse_row`], and neither survives it.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use refbridge_model::{
    Direction, Disposition, DispositionReason, LevelOfCare, Location, Npi, PartnerRef, Problem,
    Referral, zip3,
};

use crate::dates::{implausible, parse_date};
use crate::layout::{Column, fold_key, folded};
use crate::{ExportReader, ReadError, Record};

/// A column's position in the file, per [`Column`].
struct ColumnIndex([Option<usize>; Column::ALL.len()]);

impl ColumnIndex {
    fn get(&self, column: Column) -> Option<usize> {
        self.0[column as usize]
    }
}

/// The layout's value maps with folded keys.
struct ValueLookups {
    disposition: HashMap<String, String>,
    disposition_reason: HashMap<String, String>,
    payer: HashMap<String, String>,
    level_of_care: HashMap<String, String>,
}

pub(crate) fn read<E>(
    reader: &ExportReader,
    path: &Path,
    sink: &mut dyn FnMut(Record) -> Result<(), E>,
) -> Result<(), ReadError<E>> {
    let file = File::open(path)?;
    read_from(reader, BufReader::with_capacity(256 * 1024, file), sink)
}

pub(crate) fn read_from<E, R: Read>(
    reader: &ExportReader,
    input: R,
    sink: &mut dyn FnMut(Record) -> Result<(), E>,
) -> Result<(), ReadError<E>> {
    let mut csv_reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(QuoteTracker::new(input));
    let mut record = csv::ByteRecord::new();

    // The header: the first non-blank record.
    let header_line;
    loop {
        match csv_reader.read_byte_record(&mut record) {
            Ok(true) if is_blank(&record) => continue,
            Ok(true) => {
                header_line = record
                    .position()
                    .map_or(1, |p| csv_reader.get_mut().line_at(p.byte()));
                break;
            }
            Ok(false) => {
                return Err(ReadError::Unusable(Problem::new(
                    Location::File,
                    None,
                    "the file has no header row",
                )));
            }
            Err(error) => return Err(csv_error(error)),
        }
    }
    let columns = index_header(reader, &record, header_line)?;
    let header_len = record.len();
    let lookups = ValueLookups {
        disposition: folded(&reader.csv.values.disposition),
        disposition_reason: folded(&reader.csv.values.disposition_reason),
        payer: folded(&reader.csv.values.payer),
        level_of_care: folded(&reader.csv.values.level_of_care),
    };

    loop {
        match csv_reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(error) => {
                // An I/O error ends the file; anything else is one bad record (the reader resumes).
                if matches!(error.kind(), csv::ErrorKind::Io(_)) {
                    return Err(csv_error(error));
                }
                let line = error
                    .position()
                    .map_or(0, |p| csv_reader.get_mut().line_at(p.byte()));
                sink(Record::Rejected(Problem::new(
                    Location::Line(line),
                    None,
                    "the row is not valid CSV",
                )))
                .map_err(ReadError::Sink)?;
                continue;
            }
        }
        let location = Location::Line(
            record
                .position()
                .map_or(0, |p| csv_reader.get_mut().line_at(p.byte())),
        );
        if csv_reader.get_ref().ends_inside_quotes() {
            // The last row, and the file ended inside one of its quoted values: the export was
            // cut off, and the value (and any columns after it) are incomplete.
            sink(Record::Rejected(Problem::new(
                location,
                None,
                "the file ends inside a quoted value: the row is cut off (was the export truncated?)",
            )))
            .map_err(ReadError::Sink)?;
            continue;
        }
        if is_blank(&record) {
            continue;
        }
        let item = if record.len() != header_len {
            Record::Rejected(Problem::new(
                location,
                None,
                format!(
                    "the row has {} fields but the header has {header_len}; a quote or delimiter is probably missing",
                    record.len()
                ),
            ))
        } else {
            match parse_row(reader, &columns, &lookups, &record, location) {
                Ok((referral, warnings)) => Record::Referral {
                    location,
                    referral,
                    warnings,
                },
                Err(problem) => Record::Rejected(problem),
            }
        };
        sink(item).map_err(ReadError::Sink)?;
    }
}

/// Watches the raw bytes under the `csv` reader's own buffer, for two things the `csv` crate gets
/// wrong or does not say:
/// - a file that ends inside a quoted value (RFC 4180 with doubled quotes, as the reader is built):
///   the crate hands such a last row over as if the quote had been closed. The tracker sees the
///   end of the input only once every row but the last has been handed over.
/// - line numbers: after a CRLF the crate reports a row's line one too low (its position points
///   at the `\n`). A row's line here is one more than the newlines before its first byte; only the
///   line ends of the bytes buffered ahead are kept, so memory stays flat.
struct QuoteTracker<R> {
    inner: R,
    state: QuoteState,
    at_end: bool,
    /// Bytes read so far.
    offset: u64,
    /// Offsets of the `\r` and `\n` bytes read but not yet counted into `lines_before`.
    line_ends: VecDeque<(u64, u8)>,
    lines_before: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted value: the closing one, or the first of a doubled pair.
    QuoteInQuoted,
}

impl<R: Read> QuoteTracker<R> {
    fn new(inner: R) -> QuoteTracker<R> {
        QuoteTracker {
            inner,
            state: QuoteState::FieldStart,
            at_end: false,
            offset: 0,
            line_ends: VecDeque::new(),
            lines_before: 0,
        }
    }

    /// The line (from 1) of the row the `csv` reader says starts at byte `start`. Rows are asked
    /// for in file order.
    fn line_at(&mut self, start: u64) -> u64 {
        // The reader may place a row's start on the line ends before it: skip a run of them.
        let mut next = start;
        while let Some(&(at, byte)) = self.line_ends.front() {
            if at > next {
                break;
            }
            if at == next {
                next += 1;
            }
            self.line_ends.pop_front();
            self.lines_before += u64::from(byte == b'\n');
        }
        self.lines_before + 1
    }

    /// True once the input has ended inside a quoted value.
    fn ends_inside_quotes(&self) -> bool {
        self.at_end && self.state == QuoteState::Quoted
    }
}

impl<R: Read> Read for QuoteTracker<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if read == 0 && !buffer.is_empty() {
            self.at_end = true;
        }
        let bytes = &buffer[..read];
        for at in memchr::memchr2_iter(b'\n', b'\r', bytes) {
            self.line_ends
                .push_back((self.offset + at as u64, bytes[at]));
        }
        // Only quotes matter inside a quoted value, and only a delimiter or line end inside an
        // unquoted one: those runs are skipped with memchr (this reads every byte of a
        // million-row export); the bytes that open or close a value step through the table.
        let mut state = self.state;
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            match state {
                QuoteState::Quoted => match memchr::memchr(b'"', rest) {
                    Some(found) => {
                        at += found + 1;
                        state = QuoteState::QuoteInQuoted;
                    }
                    None => at = bytes.len(),
                },
                QuoteState::Unquoted => match memchr::memchr3(b',', b'\n', b'\r', rest) {
                    Some(found) => {
                        at += found + 1;
                        state = QuoteState::FieldStart;
                    }
                    None => at = bytes.len(),
                },
                QuoteState::FieldStart | QuoteState::QuoteInQuoted => {
                    // An opening quote, or the second of a doubled pair: back inside quotes.
                    state = match rest[0] {
                        b'"' => QuoteState::Quoted,
                        b',' | b'\n' | b'\r' => QuoteState::FieldStart,
                        _ => QuoteState::Unquoted,
                    };
                    at += 1;
                }
            }
        }
        self.state = state;
        self.offset += read as u64;
        Ok(read)
    }
}

fn csv_error<E>(error: csv::Error) -> ReadError<E> {
    match error.into_kind() {
        csv::ErrorKind::Io(io) => ReadError::Io(io),
        other => ReadError::Unusable(Problem::new(Location::File, None, format!("{other:?}"))),
    }
}

fn is_blank(record: &csv::ByteRecord) -> bool {
    record
        .iter()
        .all(|field| field.iter().all(u8::is_ascii_whitespace))
}

/// Finds every column read; refuses duplicated headers and missing required columns.
fn index_header<E>(
    reader: &ExportReader,
    header: &csv::ByteRecord,
    line: u64,
) -> Result<ColumnIndex, ReadError<E>> {
    // Header cells are compared with the names of the columns refbridge reads; nothing else of
    // the header is kept, because a file without a header row has patient values there.
    let wanted: HashMap<String, Column> = Column::ALL
        .iter()
        .map(|column| (fold_key(reader.csv.columns.header_for(*column)), *column))
        .collect();
    let mut index = ColumnIndex([None; Column::ALL.len()]);
    for (position, name) in header.iter().enumerate() {
        let name = decode(if position == 0 { strip_bom(name) } else { name });
        let Some(column) = wanted.get(&fold_key(&name)).copied() else {
            continue;
        };
        if let Some(first) = index.0[column as usize].replace(position) {
            return Err(ReadError::Unusable(Problem::new(
                Location::Line(line),
                Some(reader.csv.columns.header_for(column)),
                format!(
                    "the header names this column twice (columns {} and {})",
                    first + 1,
                    position + 1
                ),
            )));
        }
    }
    let missing: Vec<&str> = Column::REQUIRED
        .iter()
        .filter(|column| index.get(**column).is_none())
        .map(|column| reader.csv.columns.header_for(*column))
        .collect();
    if !missing.is_empty() {
        let delimiter_hint = if header.len() == 1
            && header
                .get(0)
                .is_some_and(|cell| cell.contains(&b';') || cell.contains(&b'\t'))
        {
            " (the header looks semicolon- or tab-separated: export comma-separated values)"
        } else {
            ""
        };
        return Err(ReadError::Unusable(Problem::new(
            Location::Line(line),
            None,
            format!(
                "the header lacks the required column(s) {}; rename them under [connectors.ehr.csv.columns] if the export calls them otherwise{delimiter_hint}",
                missing.join(", ")
            ),
        )));
    }
    Ok(index)
}

/// The longest value accepted in a column refbridge reads.
const MAX_FIELD_BYTES: usize = 1024;

/// Source types and source names that mean the patient or their family referred themselves.
fn is_personal_source(text: &str) -> bool {
    const PERSONAL: &[&str] = &[
        "self",
        "self referral",
        "self-referral",
        "selfreferral",
        "patient",
        "family",
        "family member",
        "relative",
        "parent",
        "mother",
        "father",
        "spouse",
        "partner/spouse",
        "friend",
        "walk-in",
        "walk in",
    ];
    let folded = text.trim().to_lowercase();
    PERSONAL.contains(&folded.as_str())
        || folded
            .strip_prefix("self")
            .is_some_and(|rest| rest.starts_with(|c: char| !c.is_alphanumeric()))
}

/// A value map lookup; most layouts configure no maps, so the empty case costs nothing.
fn lookup<'m>(map: &'m HashMap<String, String>, text: &str) -> Option<&'m String> {
    if map.is_empty() {
        return None;
    }
    map.get(&fold_key(text))
}

fn strip_bom(field: &[u8]) -> &[u8] {
    field.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(field)
}

/// UTF-8, or Latin-1 when the bytes are not UTF-8 (every byte is then one character).
fn decode(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// Turns one record into a referral. Patient columns are read here and only here.
fn parse_row(
    reader: &ExportReader,
    columns: &ColumnIndex,
    lookups: &ValueLookups,
    record: &csv::ByteRecord,
    location: Location,
) -> Result<(Referral, Vec<Problem>), Problem> {
    let field = |column: Column| -> Option<Cow<'_, str>> {
        let bytes = record.get(columns.get(column)?)?;
        let text = decode(bytes);
        let trimmed = text.trim();
        if trimmed.is_empty() {
            None
        } else if trimmed.len() == text.len() {
            Some(text)
        } else {
            Some(Cow::Owned(trimmed.to_string()))
        }
    };
    let name = |column: Column| reader.csv.columns.header_for(column);
    let reject = |column: Column, reason: &str| Problem::new(location, Some(name(column)), reason);
    let mut warnings = Vec::new();
    // No field refbridge reads is this long in a real export: the row is shifted or corrupt.
    for column in Column::ALL {
        if let Some(bytes) = columns
            .get(column)
            .and_then(|position| record.get(position))
            && bytes.len() > MAX_FIELD_BYTES
        {
            return Err(reject(
                column,
                &format!("the value is longer than {MAX_FIELD_BYTES} bytes; the row looks corrupt"),
            ));
        }
    }

    let inquiry_id = field(Column::InquiryId)
        .ok_or_else(|| reject(Column::InquiryId, "the inquiry id is missing"))?
        .into_owned();
    let inquiry_date = field(Column::InquiryDate)
        .ok_or_else(|| reject(Column::InquiryDate, "the inquiry date is missing"))?;
    let inquiry_date = parse_date(&inquiry_date, &reader.csv.date_formats).ok_or_else(|| {
        reject(
            Column::InquiryDate,
            "the inquiry date is not a date in a known format",
        )
    })?;
    if let Some(why) = implausible(inquiry_date) {
        return Err(reject(
            Column::InquiryDate,
            &format!("the inquiry date {why}"),
        ));
    }
    let disposition_text = field(Column::Disposition)
        .ok_or_else(|| reject(Column::Disposition, "the disposition is missing"))?;
    let disposition = match lookup(&lookups.disposition, &disposition_text) {
        Some(mapped) => Disposition::parse(mapped),
        None => Disposition::parse(&disposition_text),
    }
    .ok_or_else(|| {
        reject(
            Column::Disposition,
            "unknown disposition; map it under [connectors.ehr.csv.values.disposition]",
        )
    })?;
    let admit_date = match field(Column::AdmitDate) {
        Some(text) => {
            let date = parse_date(&text, &reader.csv.date_formats).ok_or_else(|| {
                reject(
                    Column::AdmitDate,
                    "the admit date is not a date in a known format",
                )
            })?;
            if let Some(why) = implausible(date) {
                return Err(reject(Column::AdmitDate, &format!("the admit date {why}")));
            }
            Some(date)
        }
        None => None,
    };

    let disposition_reason = field(Column::DispositionReason).map(|text| {
        let parsed = match lookup(&lookups.disposition_reason, &text) {
            Some(mapped) => DispositionReason::parse(mapped),
            None => DispositionReason::parse(&text),
        };
        parsed.unwrap_or_else(|| {
            warnings.push(reject(
                Column::DispositionReason,
                "unknown disposition reason, stored as other; map it under [connectors.ehr.csv.values.disposition_reason]",
            ));
            DispositionReason::Other
        })
    });

    let level_of_care = field(Column::LevelOfCare).and_then(|text| {
        let code = lookup(&lookups.level_of_care, &text).map(String::as_str).unwrap_or(&text);
        let parsed = LevelOfCare::parse(code, &reader.level_of_care_scheme);
        if parsed.is_none() {
            warnings.push(reject(
                Column::LevelOfCare,
                "unknown level of care, not stored; map it under [connectors.ehr.csv.values.level_of_care]",
            ));
        }
        parsed
    });

    let payer = field(Column::Payer).map(|text| match lookup(&lookups.payer, &text) {
        Some(mapped) => mapped.clone(),
        None => text.into_owned(),
    });

    let npi = field(Column::ReferralSourceNpi).and_then(|text| match Npi::parse(&text) {
        Ok(npi) => Some(npi),
        Err(error) => {
            warnings.push(reject(
                Column::ReferralSourceNpi,
                &format!("invalid NPI dropped, the row is kept: {error}"),
            ));
            None
        }
    });
    let source_type = field(Column::ReferralSourceType).map(|t| t.to_lowercase());
    // A self or family referral names the patient or a relative: no partner, no referring person.
    let personal = source_type.as_deref().is_some_and(is_personal_source)
        || field(Column::ReferralSource).is_some_and(|source| is_personal_source(&source));
    // A source known only by its NPI is still a partner, named after the NPI.
    let source_name = field(Column::ReferralSource)
        .map(Cow::into_owned)
        .or_else(|| npi.map(|npi| format!("NPI {npi}")));
    let partner = source_name.filter(|_| !personal).map(|name| PartnerRef {
        name,
        npi,
        source_type,
    });
    let referred_out_to = field(Column::ReferredOutTo).map(|target| PartnerRef {
        name: target.into_owned(),
        npi: None,
        source_type: None,
    });

    let patient = field(Column::Mrn).and_then(|mrn| reader.patient_key.token(&mrn));
    let zip3 = field(Column::PatientZip).and_then(|zip| {
        let kept = zip3(&zip);
        if kept.is_none() {
            warnings.push(reject(
                Column::PatientZip,
                "not a US ZIP code; no ZIP3 kept",
            ));
        }
        kept
    });

    let referral = Referral {
        inquiry_id,
        inquiry_date,
        direction: Direction::In,
        partner,
        referred_out_to,
        parent_inquiry_id: None,
        referred_by: field(Column::ReferredBy)
            .filter(|_| !personal)
            .map(Cow::into_owned),
        rep: field(Column::Rep).map(Cow::into_owned),
        payer,
        plan_type: field(Column::PlanType).map(Cow::into_owned),
        level_of_care,
        disposition,
        disposition_reason,
        admit_date,
        patient,
        zip3,
    };
    Ok((referral, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{CsvLayout, GENERIC_HEADER};
    use crate::{FhirOptions, ReadError};
    use refbridge_model::PatientKey;

    fn reader(csv: CsvLayout) -> ExportReader {
        ExportReader {
            csv,
            fhir: FhirOptions::default(),
            patient_key: PatientKey::new(b"test key"),
            level_of_care_scheme: "asam3".to_string(),
        }
    }

    fn read_all(reader: &ExportReader, text: &[u8]) -> (Vec<Record>, Option<Problem>) {
        let mut records = Vec::new();
        let result = read_from::<(), _>(reader, text, &mut |record| {
            records.push(record);
            Ok(())
        });
        match result {
            Ok(()) => (records, None),
            Err(ReadError::Unusable(problem)) => (records, Some(problem)),
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }

    fn referrals(records: &[Record]) -> Vec<&Referral> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Referral { referral, .. } => Some(referral),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn generic_rows_with_bom_crlf_quotes_and_blank_rows() {
        let text = format!(
            "\u{feff}{GENERIC_HEADER}\r\n\
             A-1,2026-03-07,\"Mercy Hospital, ED\",1234567893,hospital,Dr. Lee,Pat Rep,Aetna,PPO,3.7,Admitted,,,03/09/2026,MRN1,Jane Doe,1980-01-01,555-0100,\"1 Main St\nApt 2\",12345-6789,\"note, with comma\"\r\n\
             ,,,,,,,,,,,,,,,,,,,,\r\n\
             \r\n\
             A-2,3/8/2026,Dr. Smith,,physician,,,,,,not admitted,Out of Network,Other Place,,MRN2,,,,,,\r\n"
        );
        let (records, problem) = read_all(&reader(CsvLayout::default()), text.as_bytes());
        assert!(problem.is_none());
        let got = referrals(&records);
        assert_eq!(got.len(), 2, "{records:?}");
        assert_eq!(got[0].inquiry_id, "A-1");
        assert_eq!(got[0].partner.as_ref().unwrap().name, "Mercy Hospital, ED");
        assert_eq!(
            got[0].partner.as_ref().unwrap().npi.unwrap().to_string(),
            "1234567893"
        );
        assert_eq!(got[0].disposition, Disposition::Admitted);
        assert_eq!(got[0].zip3.as_deref(), Some("123"));
        assert_eq!(got[0].level_of_care.as_ref().unwrap().code, "3.7");
        assert_eq!(got[0].admit_date.unwrap().to_string(), "2026-03-09");
        assert_eq!(got[1].inquiry_date.to_string(), "2026-03-08");
        assert_eq!(
            got[1].disposition_reason,
            Some(DispositionReason::OutOfNetwork)
        );
        assert_eq!(got[1].referred_out_to.as_ref().unwrap().name, "Other Place");
        let debug = format!("{records:?}");
        for secret in [
            "Jane Doe",
            "1980-01-01",
            "555-0100",
            "Main St",
            "note, with",
            "MRN1",
            "12345-6789",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked");
        }
    }

    #[test]
    fn bad_rows_are_rejected_with_line_and_field_and_good_rows_kept() {
        let text = format!(
            "{GENERIC_HEADER}\n\
             ,2026-03-07,X,,,,,,,,admitted,,,,,,,,,,\n\
             B-2,someday,X,,,,,,,,admitted,,,,,,,,,,\n\
             B-3,2026-03-07,X,,,,,,,,maybe,,,,,,,,,,\n\
             B-4,2026-03-07,X,1234567890,,,,,,,admitted,,,,,,,,,,\n\
             B-5,2026-03-07,X\n"
        );
        let (records, _) = read_all(&reader(CsvLayout::default()), text.as_bytes());
        let rejected: Vec<String> = records
            .iter()
            .filter_map(|r| match r {
                Record::Rejected(p) => Some(p.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            rejected,
            [
                "line 2, field inquiry_id: the inquiry id is missing",
                "line 3, field inquiry_date: the inquiry date is not a date in a known format",
                "line 4, field disposition: unknown disposition; map it under [connectors.ehr.csv.values.disposition]",
                "line 6: the row has 3 fields but the header has 21; a quote or delimiter is probably missing",
            ]
        );
        let Record::Referral {
            referral, warnings, ..
        } = &records[3]
        else {
            panic!("B-4 should be kept: {records:?}");
        };
        assert_eq!(referral.inquiry_id, "B-4");
        assert_eq!(referral.partner.as_ref().unwrap().npi, None);
        assert!(
            warnings[0]
                .to_string()
                .starts_with("line 5, field referral_source_npi: invalid NPI dropped")
        );
    }

    #[test]
    fn renamed_columns_formats_and_value_maps() {
        let layout: CsvLayout = toml::from_str(
            r#"
            date_formats = ["%d.%m.%Y"]
            [columns]
            inquiry_id = "Inquiry #"
            inquiry_date = "Date"
            disposition = "Outcome"
            level_of_care = "Program"
            [values.disposition]
            "Admit - Complete" = "admitted"
            [values.level_of_care]
            "Residential" = "3.5"
            "#,
        )
        .unwrap();
        assert!(layout.problems("asam3").is_empty());
        let text = "Inquiry #;Date;Outcome;Program\n";
        let _ = text;
        let text = "Inquiry #,Date,Outcome,Program\nQ-1,07.03.2026,admit - complete,residential\n";
        let (records, problem) = read_all(&reader(layout), text.as_bytes());
        assert!(problem.is_none(), "{problem:?}");
        let got = referrals(&records);
        assert_eq!(got[0].inquiry_date.to_string(), "2026-03-07");
        assert_eq!(got[0].disposition, Disposition::Admitted);
        assert_eq!(got[0].level_of_care.as_ref().unwrap().code, "3.5");
    }

    #[test]
    fn unusable_headers_say_why() {
        let (_, problem) = read_all(&reader(CsvLayout::default()), b"inquiry_id,foo\n1,2\n");
        assert!(
            problem
                .unwrap()
                .reason
                .contains("inquiry_date, disposition")
        );
        let (_, problem) = read_all(
            &reader(CsvLayout::default()),
            b"inquiry_id,inquiry_date,disposition,Inquiry_ID\n",
        );
        assert!(
            problem
                .unwrap()
                .to_string()
                .contains("twice (columns 1 and 4)")
        );
        let (_, problem) = read_all(&reader(CsvLayout::default()), b"\n\n");
        assert!(problem.unwrap().reason.contains("no header"));
    }

    #[test]
    fn self_and_family_referrals_name_no_partner_and_no_referring_person() {
        let text = format!(
            "{GENERIC_HEADER}\n\
             F-1,2026-01-02,Mother - Joan Canarymom,,family,Joan Canarymom,,,,,pending,,,,,,,,,,\n\
             F-2,2026-01-02,Self (walk-in),,,Pat Canaryself,,,,,pending,,,,,,,,,,\n\
             F-3,2026-01-02,Family Health Center,,community,Dr. Real,,,,,pending,,,,,,,,,,\n"
        );
        let (records, _) = read_all(&reader(CsvLayout::default()), text.as_bytes());
        let got = referrals(&records);
        assert_eq!(
            (got[0].partner.as_ref(), got[0].referred_by.as_ref()),
            (None, None)
        );
        assert_eq!(
            (got[1].partner.as_ref(), got[1].referred_by.as_ref()),
            (None, None)
        );
        assert_eq!(
            got[2].partner.as_ref().unwrap().name,
            "Family Health Center"
        );
        assert!(!format!("{records:?}").contains("Canary"));
    }

    #[test]
    fn a_headerless_file_never_echoes_its_cells_and_huge_fields_are_refused() {
        let (records, problem) = read_all(
            &reader(CsvLayout::default()),
            b"Z2,2026-09-01,Admitted,M2,Jane Canaryleak,Jane Canaryleak\n",
        );
        assert!(records.is_empty());
        assert!(!problem.unwrap().to_string().contains("Canary"));
        let huge = "x".repeat(5_000);
        let text = format!(
            "inquiry_id,inquiry_date,disposition,referral_source\nH-1,2026-01-02,pending,{huge}\nH-2,2026-01-02,pending,ok\n"
        );
        let (records, _) = read_all(&reader(CsvLayout::default()), text.as_bytes());
        let Record::Rejected(problem) = &records[0] else {
            panic!("{records:?}")
        };
        assert_eq!(problem.field.as_deref(), Some("referral_source"));
        assert_eq!(referrals(&records)[0].inquiry_id, "H-2");
        let (_, problem) = read_all(
            &reader(CsvLayout::default()),
            b"inquiry_id;inquiry_date;disposition\n1;2;3\n",
        );
        assert!(problem.unwrap().reason.contains("semicolon"));
    }

    #[test]
    fn a_file_cut_inside_a_quoted_value_quarantines_its_last_row() {
        let reader = reader(CsvLayout::default());
        let header = "inquiry_id,inquiry_date,disposition,notes\n";
        for (tail, cut) in [
            ("Q-2,2026-03-02,admitted,\"a note that was cu", true),
            ("Q-2,2026-03-02,\"admit", true),
            ("Q-2,2026-03-02,admitted,\"a \"\"quoted\"\" note\"", false),
            ("Q-2,2026-03-02,admitted,\"done\"\n", false),
            ("Q-2,2026-03-02,admitted,5'10\" tall", false),
        ] {
            let text = format!("{header}Q-1,2026-03-01,admitted,\"x, y\"\n{tail}");
            let (records, stopped) = read_all(&reader, text.as_bytes());
            assert!(stopped.is_none(), "{tail}");
            assert!(matches!(&records[0], Record::Referral { .. }), "{tail}");
            match &records[1] {
                Record::Rejected(problem) if cut => {
                    assert_eq!(problem.location, Location::Line(3), "{tail}");
                    assert!(problem.reason.contains("cut off"), "{tail}");
                }
                Record::Referral { .. } if !cut => {}
                other => panic!("{tail}: {other:?}"),
            }
            assert_eq!(records.len(), 2, "{tail}");
        }
    }

    #[test]
    fn line_numbers_hold_with_crlf_lf_and_quoted_newlines() {
        let reader = reader(CsvLayout::default());
        let text = "inquiry_id,inquiry_date,disposition\r\nA-1,2026-01-01,admitted\r\nA-2,2026-01-xx,admitted\nA-3,2026-01-xx,\"admitted\r\n\"\r\n\r\nA-4,2026-01-xx,admitted\n";
        let (records, stopped) = read_all(&reader, text.as_bytes());
        assert!(stopped.is_none());
        let lines: Vec<Location> = records
            .iter()
            .map(|record| match record {
                Record::Rejected(problem) => problem.location,
                Record::Referral { location, .. } => *location,
                Record::Skipped { location, .. } => *location,
            })
            .collect();
        assert_eq!(
            lines,
            [
                Location::Line(2),
                Location::Line(3),
                Location::Line(4),
                Location::Line(7)
            ]
        );
    }

    #[test]
    fn latin1_text_is_decoded_not_dropped() {
        let text = b"inquiry_id,inquiry_date,disposition,referral_source\nL-1,2026-01-02,pending,Cl\xednica Sol\n";
        let (records, _) = read_all(&reader(CsvLayout::default()), text);
        assert_eq!(
            referrals(&records)[0].partner.as_ref().unwrap().name,
            "Cl\u{ed}nica Sol"
        );
    }
}
