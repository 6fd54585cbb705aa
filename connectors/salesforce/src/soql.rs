//! Building SOQL text safely: checked identifiers, quoted string literals, unquoted datetime
//! literals, and the pull's window query.
//!
//! Every name that enters a query passes [`is_valid_identifier`] and every value is rendered as a
//! literal here ([`quote_string`], [`datetime_literal`]); nothing else is concatenated into SOQL.
//! This module builds text only: it sends nothing and does not know which fields an org has
//! (`health.rs` checks that). The sandbox's SOQL parser is a different module.

use chrono::{DateTime, SecondsFormat, Utc};
use refbridge_model::crm::Cursor;

use crate::config::{FilterCondition, FilterValue};

/// The longest API name Salesforce allows (custom names are 40 plus a namespace and `__c`).
const MAX_IDENTIFIER_LEN: usize = 80;

/// A Salesforce API name: a letter, then letters, digits and underscores (so `NPI__c`,
/// `ns__Field__c`, `Account`), at most 80 characters. Anything else — spaces, dots, quotes,
/// parentheses — is refused, so an identifier cannot carry SOQL of its own.
pub fn is_valid_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(first) if first.is_ascii_alphabetic())
        && name.len() <= MAX_IDENTIFIER_LEN
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        && !name.ends_with('_')
}

/// A record id: 15 or 18 ASCII letters and digits.
pub fn is_valid_record_id(id: &str) -> bool {
    (id.len() == 15 || id.len() == 18) && id.bytes().all(|byte| byte.is_ascii_alphanumeric())
}

/// A string literal: single quotes, with backslash, quotes and control characters escaped as
/// SOQL wants them (`\\`, `\'`, `\"`, `\n`, `\r`, `\t`, `\b`, `\f`).
pub fn quote_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for character in value.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            other => out.push(other),
        }
    }
    out.push('\'');
    out
}

/// A datetime literal, unquoted, in UTC with milliseconds: `2026-05-20T20:49:32.000Z`.
pub fn datetime_literal(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A filter's value as a literal.
fn value_literal(value: &FilterValue) -> String {
    match value {
        FilterValue::Bool(flag) => flag.to_string(),
        FilterValue::Integer(number) => number.to_string(),
        FilterValue::Float(number) if number.is_finite() => number.to_string(),
        FilterValue::Float(_) => "null".to_string(),
        FilterValue::Text(text) => quote_string(text),
    }
}

/// A name that failed [`is_valid_identifier`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid Salesforce API name")]
pub struct InvalidIdentifier(pub String);

fn checked(name: &str) -> Result<&str, InvalidIdentifier> {
    if is_valid_identifier(name) {
        Ok(name)
    } else {
        Err(InvalidIdentifier(name.to_string()))
    }
}

/// One condition of a WHERE clause, rendered from checked parts only.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `Field op literal` from a configured filter.
    Filter(FilterCondition),
    /// `Field = true|false`.
    IsBool(String, bool),
    /// `Field = null` (`true`) or `Field != null` (`false`).
    IsNull(String, bool),
}

impl Condition {
    fn render(&self) -> Result<String, InvalidIdentifier> {
        Ok(match self {
            Condition::Filter(filter) => format!(
                "{} {} {}",
                checked(&filter.field)?,
                filter.op.as_soql(),
                value_literal(&filter.value)
            ),
            Condition::IsBool(field, flag) => format!("{} = {flag}", checked(field)?),
            Condition::IsNull(field, true) => format!("{} = null", checked(field)?),
            Condition::IsNull(field, false) => format!("{} != null", checked(field)?),
        })
    }
}

/// The pull's query: `SELECT fields FROM object WHERE <window> [AND conditions] ORDER BY
/// SystemModstamp, Id`, where the window is `(SystemModstamp > t OR (SystemModstamp = t AND
/// Id > 'id')) AND SystemModstamp <= until` (only the upper bound without a cursor).
pub fn window_query(
    object: &str,
    fields: &[&str],
    after: Option<&Cursor>,
    until: DateTime<Utc>,
    conditions: &[Condition],
) -> Result<String, InvalidIdentifier> {
    let mut clauses = Vec::new();
    if let Some(cursor) = after {
        let at = datetime_literal(cursor.modified_at);
        clauses.push(format!(
            "(SystemModstamp > {at} OR (SystemModstamp = {at} AND Id > {}))",
            quote_string(&cursor.id)
        ));
    }
    clauses.push(format!("SystemModstamp <= {}", datetime_literal(until)));
    for condition in conditions {
        clauses.push(condition.render()?);
    }
    Ok(format!(
        "{} WHERE {} ORDER BY SystemModstamp, Id",
        select_from(object, fields)?,
        clauses.join(" AND ")
    ))
}

/// `SELECT Id FROM object [WHERE conditions] ORDER BY Id`: the reconciliation pass.
pub fn ids_query(object: &str, conditions: &[Condition]) -> Result<String, InvalidIdentifier> {
    let mut text = select_from(object, &["Id"])?;
    if !conditions.is_empty() {
        let rendered = conditions
            .iter()
            .map(Condition::render)
            .collect::<Result<Vec<_>, _>>()?;
        text.push_str(" WHERE ");
        text.push_str(&rendered.join(" AND "));
    }
    text.push_str(" ORDER BY Id");
    Ok(text)
}

/// `SELECT fields FROM object WHERE field = 'value'` (tests and one-off look-ups).
pub fn lookup_query(
    object: &str,
    fields: &[&str],
    field: &str,
    value: &str,
) -> Result<String, InvalidIdentifier> {
    Ok(format!(
        "{} WHERE {} = {}",
        select_from(object, fields)?,
        checked(field)?,
        quote_string(value)
    ))
}

fn select_from(object: &str, fields: &[&str]) -> Result<String, InvalidIdentifier> {
    let mut seen: Vec<String> = Vec::new();
    for field in fields {
        let field = checked(field)?;
        if !seen.iter().any(|known| known.eq_ignore_ascii_case(field)) {
            seen.push(field.to_string());
        }
    }
    Ok(format!(
        "SELECT {} FROM {}",
        seen.join(", "),
        checked(object)?
    ))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::config::FilterOp;

    #[test]
    fn identifiers_are_api_names_and_nothing_else() {
        for good in ["Account", "NPI__c", "ns__Field__c", "Id", "A1_b"] {
            assert!(is_valid_identifier(good), "{good}");
        }
        for bad in [
            "",
            "1Field",
            "_x",
            "Name ",
            "Owner.Name",
            "Name'",
            "Id) OR (Id",
            "Field__",
            "Naïve",
            &"A".repeat(81),
        ] {
            assert!(!is_valid_identifier(bad), "{bad:?}");
        }
        assert!(is_valid_record_id("001000000000001AAA"));
        assert!(!is_valid_record_id("001' OR Id != '"));
    }

    #[test]
    fn string_literals_escape_backslash_quotes_and_newlines() {
        assert_eq!(quote_string("St. Mary's"), r"'St. Mary\'s'");
        assert_eq!(quote_string(r"A\B"), r"'A\\B'");
        assert_eq!(quote_string("a\nb\r\t\"c\""), r#"'a\nb\r\t\"c\"'"#);
        assert_eq!(quote_string(r"\'"), r"'\\\''");
    }

    #[test]
    fn datetimes_are_unquoted_utc_with_milliseconds() {
        let at = Utc.with_ymd_and_hms(2026, 5, 20, 20, 49, 32).unwrap();
        assert_eq!(datetime_literal(at), "2026-05-20T20:49:32.000Z");
    }

    #[test]
    fn the_window_query_has_the_tie_break_the_bound_and_the_order() {
        let at = Utc.with_ymd_and_hms(2026, 5, 20, 20, 49, 32).unwrap();
        let cursor = Cursor {
            modified_at: at,
            id: "001000000000001AAA".to_string(),
        };
        let until = at + chrono::Duration::hours(1);
        let text = window_query(
            "Account",
            &["Id", "Name", "id", "SystemModstamp"],
            Some(&cursor),
            until,
            &[
                Condition::IsBool("IsClosed".into(), true),
                Condition::IsNull("Refbridge_Key__c".into(), true),
                Condition::Filter(FilterCondition {
                    field: "Name".into(),
                    op: FilterOp::Ne,
                    value: FilterValue::Text("O'Brien \\ Co".into()),
                }),
            ],
        )
        .unwrap();
        assert_eq!(
            text,
            "SELECT Id, Name, SystemModstamp FROM Account WHERE (SystemModstamp > 2026-05-20T20:49:32.000Z OR (SystemModstamp = 2026-05-20T20:49:32.000Z AND Id > '001000000000001AAA')) AND SystemModstamp <= 2026-05-20T21:49:32.000Z AND IsClosed = true AND Refbridge_Key__c = null AND Name != 'O\\'Brien \\\\ Co' ORDER BY SystemModstamp, Id"
        );
        let first = window_query("User", &["Id"], None, until, &[]).unwrap();
        assert_eq!(
            first,
            "SELECT Id FROM User WHERE SystemModstamp <= 2026-05-20T21:49:32.000Z ORDER BY SystemModstamp, Id"
        );
        assert_eq!(
            window_query("Account WHERE", &["Id"], None, until, &[]),
            Err(InvalidIdentifier("Account WHERE".into()))
        );
        assert_eq!(
            ids_query(
                "Task",
                &[Condition::IsNull("Refbridge_Key__c".into(), false)]
            )
            .unwrap(),
            "SELECT Id FROM Task WHERE Refbridge_Key__c != null ORDER BY Id"
        );
    }
}
