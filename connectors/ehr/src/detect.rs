//! Which kind of export a file is: CSV, a FHIR `Bundle`, or FHIR NDJSON — or none of them.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use refbridge_model::{Location, Problem};

/// The export formats refbridge reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    FhirBundle,
    FhirNdjson,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::FhirBundle => "fhir-bundle",
            Format::FhirNdjson => "fhir-ndjson",
        }
    }
}

const SNIFF_BYTES: usize = 64 * 1024;

/// Decides the format from the extension (`.csv`, `.json`, `.ndjson`/`.jsonl`) and the first bytes.
/// A file that is binary, UTF-16/32, empty, or whose content contradicts its extension is refused
/// with a problem that says why.
pub fn detect_format(path: &Path) -> Result<Format, DetectError> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    File::open(path)?
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    detect_from_head(path, &head)
        .map_err(|reason| DetectError::Unusable(Problem::new(Location::File, None, reason)))
}

/// Why a file's format could not be decided.
#[derive(Debug)]
pub enum DetectError {
    Io(std::io::Error),
    Unusable(Problem),
}

impl From<std::io::Error> for DetectError {
    fn from(error: std::io::Error) -> Self {
        DetectError::Io(error)
    }
}

fn detect_from_head(path: &Path, head: &[u8]) -> Result<Format, String> {
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err("the file is UTF-16 or UTF-32 encoded; export it as UTF-8".to_string());
    }
    if head.contains(&0) {
        return Err(
            "the file is binary (it contains NUL bytes), not CSV, JSON or NDJSON".to_string(),
        );
    }
    let text = head.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(head);
    let first = text.iter().copied().find(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err("the file is empty".to_string());
    };
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let json_like = first == b'{';
    let looks_ndjson = json_like && first_line_is_complete_object(text);
    match extension.as_str() {
        "ndjson" | "jsonl" => {
            if json_like {
                Ok(Format::FhirNdjson)
            } else {
                Err("an .ndjson file must hold one JSON object per line".to_string())
            }
        }
        "json" => {
            if json_like {
                Ok(Format::FhirBundle)
            } else {
                Err("a .json file must hold a FHIR Bundle object".to_string())
            }
        }
        "csv" | "txt" | "tsv" => {
            if json_like || first == b'[' {
                Err("the file has a .csv name but holds JSON".to_string())
            } else {
                Ok(Format::Csv)
            }
        }
        _ if looks_ndjson => Ok(Format::FhirNdjson),
        _ if json_like => Ok(Format::FhirBundle),
        _ if first == b'[' => Err("a JSON array is not a FHIR Bundle or NDJSON export".to_string()),
        _ => Ok(Format::Csv),
    }
}

/// True when the first line parses as a JSON object on its own (and so the file is NDJSON).
fn first_line_is_complete_object(text: &[u8]) -> bool {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let line = text[start..]
        .split(|b| *b == b'\n')
        .next()
        .unwrap_or_default();
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, head: &[u8], expected: Result<Format, &str>) {
        let got = detect_from_head(Path::new(name), head);
        match expected {
            Ok(format) => assert_eq!(got, Ok(format), "{name}"),
            Err(fragment) => {
                let message = got.expect_err(name);
                assert!(message.contains(fragment), "{name}: {message}");
            }
        }
    }

    #[test]
    fn formats_follow_extension_and_content() {
        check("a.csv", b"inquiry_id,inquiry_date\n", Ok(Format::Csv));
        check("a.csv", b"\xEF\xBB\xBFinquiry_id\n", Ok(Format::Csv));
        check(
            "a.json",
            b"{\"resourceType\":\"Bundle\"}",
            Ok(Format::FhirBundle),
        );
        check(
            "a.ndjson",
            b"{\"a\":1}\n{\"a\":2}\n",
            Ok(Format::FhirNdjson),
        );
        check("export", b"{\"a\":1}\n{\"a\":2}\n", Ok(Format::FhirNdjson));
        check(
            "export",
            b"{\n \"resourceType\": \"Bundle\"\n}",
            Ok(Format::FhirBundle),
        );
        check("a.csv", b"\x89PNG\r\n\x1a\n\0\0\0", Err("binary"));
        check("a.csv", b"\xFF\xFEi\0n\0", Err("UTF-16"));
        check("a.csv", b"  \n\n", Err("empty"));
        check("a.csv", b"{\"a\":1}", Err("holds JSON"));
        check("a.json", b"inquiry_id\n", Err("FHIR Bundle"));
    }
}
