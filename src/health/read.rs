//! One pass over the ledger into per-partner counts: referrals (in and out, by window and
//! disposition), the last touch, and the CRM profile's owner.
//!
//! Referrals are read once, in storage order, and aggregated in memory: dates are compared as
//! `YYYY-MM-DD` bytes against the window bounds, never parsed per row. A partner merged into
//! another (`merged_into`) counts toward the partner it was merged into, so health is the same
//! whether identity resolution re-points a merged partner's rows or leaves them. This module
//! reads only partner ids, names, dates, directions, dispositions and owners: no patient column.

use std::collections::HashMap;

use chrono::NaiveDate;
use rusqlite::{Connection, Row};

use super::score::Windows;

/// Every referral once (EHR rows, and CRM deals no EHR row describes), exactly as the
/// `unified_referral` view defines it, read as its two halves: on 1,000,000 referrals stepping
/// the view took 0.44 s and the two halves 0.33 s (`cargo bench --bench health`).
const EHR_REFERRALS: &str = "SELECT partner_id, direction, inquiry_date, disposition FROM referral WHERE partner_id IS NOT NULL";
const CRM_REFERRALS: &str = "SELECT partner_id, direction, inquiry_date, COALESCE(disposition, 'pending')
     FROM crm_referral
     WHERE referral_id IS NULL AND deleted = 0 AND inquiry_date IS NOT NULL AND partner_id IS NOT NULL";

/// The owner as the partner's CRM profile states it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Profile {
    pub owner_id: Option<String>,
    pub owner_name: Option<String>,
    /// `None` when the CRM did not say; only an explicit 0 means inactive.
    pub owner_active: Option<bool>,
}

/// What the ledger says about one live partner as of the day.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct PartnerCounts {
    pub partner_id: i64,
    pub name: String,
    /// Any referral (either direction) in the scope window (the last 18 months).
    pub referred_in_scope: bool,
    pub first_inbound: Option<NaiveDate>,
    pub last_inbound: Option<NaiveDate>,
    pub inbound_current: u64,
    /// Inbound referrals from the nominal baseline start to its end (none can precede the
    /// partner's first referral, so clipping the start does not change the count).
    pub inbound_baseline: u64,
    pub inbound_year: u64,
    pub admitted_year: u64,
    pub decided_year: u64,
    pub outbound_year: u64,
    pub profile: Option<Profile>,
    /// The day of the latest touch on or before the as-of day, and its kind.
    pub last_touch: Option<(NaiveDate, String)>,
}

impl PartnerCounts {
    /// In scope: a referral in the last 18 months, or a CRM profile.
    pub fn in_scope(&self) -> bool {
        self.referred_in_scope || self.profile.is_some()
    }
}

/// Per-partner counts for every live partner.
#[derive(Debug, Default)]
pub(super) struct LedgerCounts {
    pub partners: Vec<PartnerCounts>,
}

impl LedgerCounts {
    /// Admitted / decided over every partner in the last 365 days; `None` when nothing was
    /// decided.
    pub fn facility_conversion(&self) -> Option<f64> {
        let (admitted, decided) = self.partners.iter().fold((0, 0), |(a, d), p| {
            (a + p.admitted_year, d + p.decided_year)
        });
        (decided > 0).then(|| admitted as f64 / decided as f64)
    }
}

/// Per-partner accumulator while scanning; dates kept as bytes until the end.
#[derive(Default)]
struct Accumulator {
    counts: PartnerCounts,
    first_inbound: Option<[u8; 10]>,
    last_inbound: Option<[u8; 10]>,
}

/// Reads the counts as of `windows.as_of`.
pub(super) fn read_ledger(
    connection: &Connection,
    windows: &Windows,
) -> rusqlite::Result<LedgerCounts> {
    let (mut accumulators, slots) = live_partners(connection)?;
    let bounds = Bounds::new(windows);

    for sql in [EHR_REFERRALS, CRM_REFERRALS] {
        let mut statement = connection.prepare(sql)?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let Some(&slot) = slots.get(&row.get::<_, i64>(0)?) else {
                continue;
            };
            let Some(date) = date_key(text(row, 2)?) else {
                continue;
            };
            if date > bounds.as_of {
                continue;
            }
            let accumulator = &mut accumulators[slot];
            let counts = &mut accumulator.counts;
            if date > bounds.scope_after {
                counts.referred_in_scope = true;
            }
            let in_year = date >= bounds.year_first;
            match text(row, 1)? {
                b"in" => {
                    if accumulator.first_inbound.is_none_or(|first| date < first) {
                        accumulator.first_inbound = Some(date);
                    }
                    if accumulator.last_inbound.is_none_or(|last| date > last) {
                        accumulator.last_inbound = Some(date);
                    }
                    if date >= bounds.current_first {
                        counts.inbound_current += 1;
                    } else if date >= bounds.baseline_first && date <= bounds.baseline_end {
                        counts.inbound_baseline += 1;
                    }
                    if in_year {
                        counts.inbound_year += 1;
                        match text(row, 3)? {
                            b"admitted" => {
                                counts.admitted_year += 1;
                                counts.decided_year += 1;
                            }
                            b"not_admitted" => counts.decided_year += 1,
                            _ => {}
                        }
                    }
                }
                b"out" if in_year => counts.outbound_year += 1,
                _ => {}
            }
        }
    }

    read_profiles(connection, &slots, &mut accumulators)?;
    read_touches(connection, &slots, &mut accumulators, windows.as_of)?;

    let partners = accumulators
        .into_iter()
        .map(|accumulator| {
            let mut counts = accumulator.counts;
            counts.first_inbound = accumulator.first_inbound.and_then(parse_key);
            counts.last_inbound = accumulator.last_inbound.and_then(parse_key);
            counts
        })
        .collect();
    Ok(LedgerCounts { partners })
}

/// Live partners (one accumulator each) and the slot every partner id counts toward: its own,
/// or, for a merged partner, the one at the end of its `merged_into` chain.
fn live_partners(
    connection: &Connection,
) -> rusqlite::Result<(Vec<Accumulator>, HashMap<i64, usize>)> {
    let mut statement = connection.prepare("SELECT id, name, merged_into FROM partner")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<i64>>(2)?,
        ))
    })?;
    let mut accumulators = Vec::new();
    let mut slots = HashMap::new();
    let mut merged: HashMap<i64, i64> = HashMap::new();
    for row in rows {
        let (id, name, merged_into) = row?;
        match merged_into {
            Some(target) => {
                merged.insert(id, target);
            }
            None => {
                slots.insert(id, accumulators.len());
                accumulators.push(Accumulator {
                    counts: PartnerCounts {
                        partner_id: id,
                        name,
                        ..PartnerCounts::default()
                    },
                    ..Accumulator::default()
                });
            }
        }
    }
    for &id in merged.keys() {
        // Follow the chain to a live partner; a chain that loops or ends nowhere counts nowhere.
        let mut target = id;
        for _ in 0..64 {
            match merged.get(&target) {
                Some(&next) => target = next,
                None => break,
            }
        }
        if let Some(&slot) = slots.get(&target) {
            slots.insert(id, slot);
        }
    }
    Ok((accumulators, slots))
}

fn read_profiles(
    connection: &Connection,
    slots: &HashMap<i64, usize>,
    accumulators: &mut [Accumulator],
) -> rusqlite::Result<()> {
    let mut statement = connection
        .prepare("SELECT partner_id, owner_id, owner_name, owner_active FROM partner_profile")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let partner_id: i64 = row.get(0)?;
        let Some(&slot) = slots.get(&partner_id) else {
            continue;
        };
        let counts = &mut accumulators[slot].counts;
        // A live partner's own profile wins over one left on a partner merged into it.
        if counts.profile.is_some() && partner_id != counts.partner_id {
            continue;
        }
        counts.profile = Some(Profile {
            owner_id: row
                .get::<_, Option<String>>(1)?
                .filter(|id| !id.trim().is_empty()),
            owner_name: row
                .get::<_, Option<String>>(2)?
                .filter(|name| !name.trim().is_empty()),
            owner_active: row.get::<_, Option<i64>>(3)?.map(|active| active != 0),
        });
    }
    Ok(())
}

fn read_touches(
    connection: &Connection,
    slots: &HashMap<i64, usize>,
    accumulators: &mut [Accumulator],
    as_of: NaiveDate,
) -> rusqlite::Result<()> {
    // `kind` is a bare column beside max(): SQLite takes it from the row holding the maximum.
    let mut statement = connection.prepare(
        "SELECT partner_id, max(substr(at, 1, 10)), kind FROM activity
         WHERE partner_id IS NOT NULL AND substr(at, 1, 10) <= ?1
         GROUP BY partner_id",
    )?;
    let mut rows = statement.query([as_of.to_string()])?;
    while let Some(row) = rows.next()? {
        let Some(&slot) = slots.get(&row.get::<_, i64>(0)?) else {
            continue;
        };
        let Some(day) = date_key(text(row, 1)?).and_then(parse_key) else {
            continue;
        };
        let kind: String = row.get(2)?;
        let touch = &mut accumulators[slot].counts.last_touch;
        if touch.as_ref().is_none_or(|(latest, _)| day > *latest) {
            *touch = Some((day, kind));
        }
    }
    Ok(())
}

/// The window bounds as `YYYY-MM-DD` bytes (inclusive unless named `_after`).
struct Bounds {
    as_of: [u8; 10],
    current_first: [u8; 10],
    baseline_first: [u8; 10],
    baseline_end: [u8; 10],
    year_first: [u8; 10],
    scope_after: [u8; 10],
}

impl Bounds {
    fn new(windows: &Windows) -> Bounds {
        let key = |day: NaiveDate| {
            let mut bytes = [0u8; 10];
            bytes.copy_from_slice(day.format("%Y-%m-%d").to_string().as_bytes());
            bytes
        };
        Bounds {
            as_of: key(windows.as_of),
            current_first: key(windows.current_first),
            baseline_first: key(windows.baseline_first),
            baseline_end: key(windows.baseline_end),
            year_first: key(windows.year_first),
            scope_after: key(windows.scope_after),
        }
    }
}

/// A text (or blob) column's bytes; NULL reads as empty.
fn text<'row>(row: &'row Row<'_>, index: usize) -> rusqlite::Result<&'row [u8]> {
    let value = row.get_ref(index)?;
    match value {
        rusqlite::types::ValueRef::Null => Ok(b""),
        _ => value.as_bytes().map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(index, value.data_type(), Box::new(error))
        }),
    }
}

/// The `YYYY-MM-DD` prefix of a stored date or timestamp, if it has that shape.
fn date_key(value: &[u8]) -> Option<[u8; 10]> {
    let prefix: [u8; 10] = value.get(..10)?.try_into().ok()?;
    (prefix[4] == b'-' && prefix[7] == b'-').then_some(prefix)
}

fn parse_key(key: [u8; 10]) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(std::str::from_utf8(&key).ok()?, "%Y-%m-%d").ok()
}
