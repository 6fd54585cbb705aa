//! Finds where a key path sits in the TOML text, so every config problem gets a `line:column`.

use toml::de::{DeTable, DeValue};

/// The config text, parsed with spans.
pub(super) struct Locator {
    text: String,
    /// Line start offsets, for offset → line:column.
    line_starts: Vec<usize>,
}

impl Locator {
    pub(super) fn new(text: &str) -> Locator {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(at, _)| at + 1));
        Locator {
            text: text.to_string(),
            line_starts,
        }
    }

    /// 1-based line and column of a byte offset.
    pub(super) fn line_column(&self, offset: usize) -> (usize, usize) {
        let line = self
            .line_starts
            .partition_point(|start| *start <= offset)
            .max(1);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    /// The position of `path`'s key, or of the deepest part of it that exists. Array indices are
    /// given as decimal segments.
    pub(super) fn locate(&self, path: &[&str]) -> (usize, usize) {
        let Ok(root) = DeTable::parse(&self.text) else {
            return (1, 1);
        };
        let mut offset = 0;
        let mut table = Some(root.get_ref());
        let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
        for segment in path {
            let value = if let Some(items) = array.take() {
                match segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| items.get(index))
                {
                    Some(item) => {
                        offset = item.span().start;
                        item
                    }
                    None => break,
                }
            } else if let Some(current) = table.take() {
                match current
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == *segment)
                {
                    Some((key, value)) => {
                        offset = key.span().start;
                        value
                    }
                    None => break,
                }
            } else {
                break;
            };
            match value.get_ref() {
                DeValue::Table(inner) => table = Some(inner),
                DeValue::Array(items) => array = Some(&items[..]),
                _ => {}
            }
        }
        self.line_column(offset)
    }
}

/// `connectors.ehr.csv.date_formats[0]`, with keys that are not bare words quoted.
pub(super) fn display_path(path: &[&str]) -> String {
    let mut out = String::new();
    for segment in path {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        let bare = !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if bare {
            out.push_str(segment);
        } else {
            out.push_str(&format!("{segment:?}"));
        }
    }
    out
}
