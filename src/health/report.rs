//! `refbridge health`: refreshes partner health as of a day and renders it as a table (worst
//! first, one line per partner, 100 columns), JSON, CSV, or one partner in detail.
//!
//! Rendering only: the numbers come from [`super::refresh`], and nothing here decides anything a
//! rep or the rule engine acts on. Output carries partner names, ledger ids and partner-level
//! counts, never a patient value.

use std::fmt::Write as _;

use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension};

use super::{ComponentKind, HealthConfig, HealthRefresh, HealthState, PartnerHealth, score};

/// Width the table fits in.
const TABLE_WIDTH: usize = 100;
/// Width of the partner-name column.
const NAME_WIDTH: usize = 24;

/// How `refbridge health` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HealthFormat {
    /// Worst first, one line per partner, with the reason of its weakest component.
    Table,
    /// An array of partner health objects (one object with --partner).
    Json,
    /// One row per partner, each component's score and reason in its own columns.
    Csv,
}

/// One `refbridge health` invocation.
#[derive(Debug, Clone)]
pub struct HealthRequest {
    pub as_of: NaiveDate,
    pub format: HealthFormat,
    /// Show only this partner, in detail.
    pub partner: Option<i64>,
    /// RFC 3339, stamps the stored snapshots and run.
    pub now: String,
}

/// Why `refbridge health` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum HealthReportError {
    #[error("there is no partner {0} in the ledger")]
    UnknownPartner(i64),
    #[error("partner {partner} was merged into partner {into}: ask for {into}")]
    MergedPartner { partner: i64, into: i64 },
    #[error(
        "partner {0} has no referral in the 18 months before {1} and no CRM record, so it has no health to show"
    )]
    OutOfScope(i64, NaiveDate),
    #[error("cannot compute partner health")]
    Ledger(#[from] rusqlite::Error),
    #[error("cannot write the CSV")]
    Csv(#[from] csv::Error),
    #[error("cannot encode the JSON")]
    Json(#[from] serde_json::Error),
}

impl HealthReportError {
    /// A wrong partner id is a usage error (exit 2), the rest runtime failures (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            HealthReportError::UnknownPartner(_)
                | HealthReportError::MergedPartner { .. }
                | HealthReportError::OutOfScope(..)
        )
    }
}

/// Refreshes health as of `request.as_of` (storing the day's snapshots) and renders it.
pub fn run(
    connection: &Connection,
    config: &HealthConfig,
    request: &HealthRequest,
) -> Result<String, HealthReportError> {
    let refreshed = super::refresh(connection, config, request.as_of, &request.now)?;
    match request.partner {
        Some(id) => {
            let Some(partner) = refreshed.health.iter().find(|p| p.partner_id == id) else {
                return Err(missing_partner(connection, id, request.as_of)?);
            };
            Ok(match request.format {
                HealthFormat::Table => detail(partner, request.as_of),
                HealthFormat::Json => format!("{}\n", serde_json::to_string(partner)?),
                HealthFormat::Csv => csv(std::slice::from_ref(partner), request.as_of)?,
            })
        }
        None => Ok(match request.format {
            HealthFormat::Table => table(&refreshed, request.as_of),
            HealthFormat::Json => format!("{}\n", serde_json::to_string(&refreshed.health)?),
            HealthFormat::Csv => csv(&refreshed.health, request.as_of)?,
        }),
    }
}

/// Why a partner id has no health: unknown, merged, or out of scope.
fn missing_partner(
    connection: &Connection,
    id: i64,
    as_of: NaiveDate,
) -> rusqlite::Result<HealthReportError> {
    let merged: Option<Option<i64>> = connection
        .query_row(
            "SELECT merged_into FROM partner WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .optional()?;
    Ok(match merged {
        None => HealthReportError::UnknownPartner(id),
        Some(Some(into)) => HealthReportError::MergedPartner { partner: id, into },
        Some(None) => HealthReportError::OutOfScope(id, as_of),
    })
}

/// The sentence that explains a partner's line: the decline test's when it fired (it is what
/// makes the partner at risk), else the weakest component's, else the first component's (which
/// says why nothing applies).
pub fn headline(partner: &PartnerHealth) -> String {
    let component = if partner.facts.declining || partner.facts.silent {
        partner.component(ComponentKind::Decline)
    } else {
        partner.weakest()
    }
    .or(partner.components.first());
    component.map_or_else(String::new, |component| {
        format!("{}: {}", component.kind.as_str(), component.reason)
    })
}

fn table(refreshed: &HealthRefresh, as_of: NaiveDate) -> String {
    let health = &refreshed.health;
    let count = |state| health.iter().filter(|p| p.state == state).count();
    let mut out = format!(
        "Partner health as of {as_of}: {} at risk, {} watch, {} healthy ({} partner{})\n",
        count(HealthState::AtRisk),
        count(HealthState::Watch),
        count(HealthState::Healthy),
        health.len(),
        if health.len() == 1 { "" } else { "s" },
    );
    let id_width = health
        .iter()
        .map(|p| p.partner_id.to_string().len())
        .max()
        .unwrap_or(0)
        .max(2);
    let reason_width = TABLE_WIDTH - (id_width + NAME_WIDTH + 5 + 7 + 5 + 4 + 2);
    let _ = writeln!(
        out,
        "{:>id_width$} {:<NAME_WIDTH$} {:>5} {:<7} {:<5}  WHY",
        "ID", "PARTNER", "SCORE", "STATE", "TREND"
    );
    let why_column = TABLE_WIDTH - reason_width;
    for partner in health {
        // The reason is what a director reads: wrapped under WHY, never cut.
        let mut reason_lines = wrap(&headline(partner), reason_width).into_iter();
        let _ = writeln!(
            out,
            "{:>id_width$} {:<NAME_WIDTH$} {:>5} {:<7} {:<5}  {}",
            partner.partner_id,
            fit(&partner.name, NAME_WIDTH),
            score_text(partner.score),
            partner.state.as_str(),
            partner.trend.as_str(),
            reason_lines.next().unwrap_or_default()
        );
        for more in reason_lines {
            let _ = writeln!(out, "{:why_column$}{more}", "");
        }
    }
    if !refreshed.recomputed {
        out.push_str(
            "Nothing new since the last run for this day: these are its stored snapshots.\n",
        );
    }
    if !health.is_empty() {
        out.push_str("Every component and fact of one partner: refbridge health --partner ID\n");
    }
    out
}

fn detail(partner: &PartnerHealth, as_of: NaiveDate) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} (partner {}), as of {as_of}",
        partner.name, partner.partner_id
    );
    let _ = writeln!(
        out,
        "Score {}, {}, trend {}\n",
        score_text(partner.score),
        partner.state.as_str(),
        partner.trend.as_str()
    );
    let _ = writeln!(
        out,
        "{:<12} {:>5} {:>7}  REASON",
        "COMPONENT", "SCORE", "WEIGHT"
    );
    for component in &partner.components {
        let reason = match component.score {
            Some(_) => component.reason.clone(),
            None => format!("does not apply: {}", component.reason),
        };
        let _ = writeln!(
            out,
            "{:<12} {:>5} {:>7.2}  {reason}",
            component.kind.as_str(),
            score_text(component.score),
            component.weight
        );
    }
    let facts = &partner.facts;
    let day = |day: Option<NaiveDate>| day.map_or_else(|| "–".to_string(), |d| d.to_string());
    let number = |value: Option<f64>, digits: usize| {
        value.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
    };
    let days_ago = |days: Option<i64>| {
        days.map_or_else(String::new, |d| format!(" ({} ago)", score::days_text(d)))
    };
    let p = |value: Option<f64>, fired: bool| match value {
        Some(value) => format!(
            "{}{}",
            score::p_value(value),
            if fired { " (fired)" } else { "" }
        ),
        None => "not run".to_string(),
    };
    let rows = [
        (
            "baseline",
            format!(
                "{} inbound referrals a month",
                number(facts.baseline_per_month, 2)
            ),
        ),
        (
            "current window",
            format!(
                "{} inbound, {} expected",
                facts.referrals_current_window,
                number(facts.expected_current_window, 1)
            ),
        ),
        ("decline test", p(facts.decline_p, facts.declining)),
        ("silence test", p(facts.silence_p, facts.silent)),
        ("first referral", day(facts.first_referral)),
        (
            "last referral",
            format!(
                "{}{}",
                day(facts.last_referral),
                days_ago(facts.days_since_last_referral)
            ),
        ),
        (
            "last 365 days",
            format!(
                "{} inbound, {} admitted of {} decided",
                facts.referrals_last_365_days,
                facts.admitted_last_365_days,
                facts.decided_last_365_days
            ),
        ),
        (
            "last touch",
            format!(
                "{}{}",
                day(facts.last_touch),
                days_ago(facts.days_since_touch)
            ),
        ),
        (
            "owned",
            match facts.owned {
                Some(true) => "yes, by an active rep".to_string(),
                Some(false) => "no active owner".to_string(),
                None => "unknown (no CRM record)".to_string(),
            },
        ),
        (
            "reciprocity",
            format!(
                "we referred {}, they referred {} (last 365 days; shown, not scored)",
                facts.sent_last_365_days, facts.received_last_365_days
            ),
        ),
    ];
    out.push_str("\nFACTS\n");
    for (label, value) in rows {
        let _ = writeln!(out, "  {label:<16} {value}");
    }
    out
}

fn csv(health: &[PartnerHealth], as_of: NaiveDate) -> Result<String, HealthReportError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "as_of".to_string(),
        "partner_id".to_string(),
        "name".to_string(),
        "score".to_string(),
        "state".to_string(),
        "trend".to_string(),
    ];
    for kind in ComponentKind::ALL {
        header.push(format!("{}_score", kind.as_str()));
        header.push(format!("{}_reason", kind.as_str()));
    }
    writer.write_record(&header)?;
    let day = as_of.to_string();
    for partner in health {
        let mut record = vec![
            day.clone(),
            partner.partner_id.to_string(),
            partner.name.clone(),
            partner
                .score
                .map_or_else(String::new, |s| format!("{s:.1}")),
            partner.state.as_str().to_string(),
            partner.trend.as_str().to_string(),
        ];
        for kind in ComponentKind::ALL {
            let component = partner.component(kind);
            record.push(
                component
                    .and_then(|c| c.score)
                    .map_or_else(String::new, |s| format!("{s:.1}")),
            );
            record.push(component.map_or_else(String::new, |c| c.reason.clone()));
        }
        writer.write_record(&record)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A score as shown: whole points, or "–" when there is none.
fn score_text(score: Option<f64>) -> String {
    score.map_or_else(|| "–".to_string(), |s| format!("{s:.0}"))
}

/// `text` padded or cut (with "…") to `width` characters.
/// `text` in lines of at most `width` characters, broken between words (a word longer than the
/// width is cut into pieces).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(word.drain(..width).collect());
        }
        let word: String = word.into_iter().collect();
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if !line.is_empty() && needed > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        format!("{text:<width$}")
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::{fit, wrap};

    #[test]
    fn reasons_wrap_between_words_and_lose_nothing() {
        let text =
            "decline: no referral for 86 days; at 1.8/month that happens by chance with p = 0.0059";
        let lines = wrap(text, 40);
        assert!(
            lines.iter().all(|line| line.chars().count() <= 40),
            "{lines:?}"
        );
        assert_eq!(lines.join(" "), text);
        assert_eq!(wrap("short", 40), ["short"]);
        assert_eq!(wrap("abcdefgh", 3), ["abc", "def", "gh"]);
    }

    #[test]
    fn long_names_are_cut_with_an_ellipsis_and_short_ones_padded() {
        let check = |text: &str, width: usize, expected: &str| {
            assert_eq!(fit(text, width), expected);
            assert_eq!(fit(text, width).chars().count(), width);
        };
        check("Mercy", 8, "Mercy   ");
        check("Mercy Hospital Emergency", 8, "Mercy H…");
        check("Zürich", 6, "Zürich");
        check("Zürich Klinik", 5, "Züri…");
    }
}
