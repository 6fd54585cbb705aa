//! Dates as exports write them: ISO (`2026-03-07`, `2026-03-07T14:05:00Z`), US (`03/07/2026`,
//! `3/7/2026`, with or without a time), or configured chrono formats.

use chrono::format::{Item, StrftimeItems};
use chrono::{Datelike, Days, NaiveDate, Utc};

/// Checks that a configured format is a valid chrono `strftime` format with a day, month and year.
pub(crate) fn check_format(format: &str) -> Result<(), String> {
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err(format!("{format:?} is not a valid chrono strftime format"));
    }
    let has = |spec: &[&str]| spec.iter().any(|s| format.contains(s));
    if !(has(&["%Y", "%y", "%F", "%D"]) && (has(&["%d", "%e", "%F", "%D", "%j"]))) {
        return Err(format!(
            "{format:?} must contain a year and a day (e.g. %Y-%m-%d)"
        ));
    }
    Ok(())
}

/// Parses a date with the configured formats, or the ISO and US defaults when none are configured.
pub(crate) fn parse_date(text: &str, formats: &[String]) -> Option<NaiveDate> {
    let text = text.trim();
    if formats.is_empty() {
        return parse_iso(text).or_else(|| parse_us(text));
    }
    formats.iter().find_map(|format| {
        NaiveDate::parse_and_remainder(text, format)
            .ok()
            .filter(|(_, rest)| rest.is_empty() || rest.starts_with([' ', 'T']))
            .map(|(date, _)| date)
    })
}

/// Why a well-formed date cannot be a referral's, as the end of a sentence ("the inquiry date …"):
/// before 1900 (a year typed as `0000` or `0026`) or more than a year after today (a mistyped
/// year). An export dated a few days ahead (clock skew, time zones) is accepted.
pub(crate) fn implausible(date: NaiveDate) -> Option<&'static str> {
    if date.year() < 1900 {
        return Some("is before 1900");
    }
    let latest = Utc::now().date_naive() + Days::new(366);
    (date > latest).then_some("is more than a year in the future")
}

/// `YYYY-MM-DD`, optionally followed by `T` or a space and a time.
fn parse_iso(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    if bytes.len() > 10 && !matches!(bytes[10], b'T' | b' ') {
        return None;
    }
    let year = digits(&bytes[0..4])?;
    let month = digits(&bytes[5..7])?;
    let day = digits(&bytes[8..10])?;
    NaiveDate::from_ymd_opt(year as i32, month, day)
}

/// `M/D/YYYY` with one- or two-digit month and day, optionally followed by a space and a time.
fn parse_us(text: &str) -> Option<NaiveDate> {
    let date = text.split(' ').next()?;
    let mut parts = date.split('/');
    let month = parts.next().filter(|p| (1..=2).contains(&p.len()))?;
    let day = parts.next().filter(|p| (1..=2).contains(&p.len()))?;
    let year = parts.next().filter(|p| p.len() == 4)?;
    if parts.next().is_some() {
        return None;
    }
    NaiveDate::from_ymd_opt(
        digits(year.as_bytes())? as i32,
        digits(month.as_bytes())?,
        digits(day.as_bytes())?,
    )
}

fn digits(bytes: &[u8]) -> Option<u32> {
    let mut value = 0u32;
    for byte in bytes {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(byte - b'0');
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn default_formats_are_iso_and_us() {
        let none: &[String] = &[];
        assert_eq!(parse_date("2026-03-07", none), date(2026, 3, 7));
        assert_eq!(parse_date("2026-03-07T14:05:00Z", none), date(2026, 3, 7));
        assert_eq!(parse_date("2026-03-07 14:05", none), date(2026, 3, 7));
        assert_eq!(parse_date("03/07/2026", none), date(2026, 3, 7));
        assert_eq!(parse_date("3/7/2026 2:05 PM", none), date(2026, 3, 7));
        assert_eq!(parse_date("2026-02-30", none), None);
        assert_eq!(parse_date("13/01/2026", none), None);
        assert_eq!(parse_date("07.03.2026", none), None);
        assert_eq!(parse_date("2026-03-07junk", none), None);
        assert_eq!(parse_date("", none), None);
    }

    #[test]
    fn years_zero_and_far_future_are_implausible() {
        let today = Utc::now().date_naive();
        assert_eq!(implausible(date(2026, 3, 7).unwrap()), None);
        assert_eq!(implausible(today + Days::new(30)), None);
        assert_eq!(
            implausible(parse_date("0000-01-01", &[]).unwrap()),
            Some("is before 1900")
        );
        assert_eq!(
            implausible(today + Days::new(400)),
            Some("is more than a year in the future")
        );
    }

    #[test]
    fn configured_formats_replace_the_defaults() {
        let formats = vec!["%d.%m.%Y".to_string()];
        assert_eq!(parse_date("07.03.2026", &formats), date(2026, 3, 7));
        assert_eq!(parse_date("2026-03-07", &formats), None);
        assert!(check_format("%d.%m.%Y").is_ok());
        assert!(check_format("%Q").is_err());
        assert!(check_format("%H:%M").is_err());
    }
}
