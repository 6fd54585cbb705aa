//! `partner_profile`: what the CRMs say about each live partner, rebuilt every run from the
//! partner's live CRM records. The home record (where the partner's tasks go) is the one with a
//! rep as owner (a record owned by its CRM's team queue, `queue_owner_id`, has none), then
//! Salesforce before HubSpot, then the lowest id — never the most recently edited, so that an edit
//! does not move the partner's tasks to another CRM; address, website and phone come from it (or the
//! next record that has them); payers and levels of care are the union over all records; the
//! partner takes the home record's name. Partner-level facts only: the ZIP3 is the partner's
//! business address. Unchanged rows are not rewritten; profiles of partners without CRM records
//! (or merged away) are deleted.

use std::collections::{BTreeSet, HashMap};

use refbridge_model::crm::CrmPartner;
use rusqlite::{Connection, params};

use super::records::{Record, phone_digits, website_domain};

pub(super) fn rebuild(
    connection: &Connection,
    records: &[Record],
    partner_of: &[i64],
    queue_owners: &[(String, String)],
    now: &str,
) -> rusqlite::Result<u64> {
    // A record owned by its CRM's team queue (`queue_owner_id`) is owned by no rep.
    let rep_of = |record: &Record| -> Option<String> {
        record
            .crm
            .as_ref()
            .and_then(|c| c.owner_id.clone())
            .filter(|owner| {
                !queue_owners
                    .iter()
                    .any(|(system, queue)| *system == record.system && queue == owner)
            })
    };
    let mut by_partner: HashMap<i64, Vec<&Record>> = HashMap::new();
    for (index, record) in records.iter().enumerate() {
        if record.active && record.crm.is_some() {
            by_partner
                .entry(partner_of[index])
                .or_default()
                .push(record);
        }
    }
    let mut reps: HashMap<(String, String), (String, bool)> = HashMap::new();
    {
        let mut statement =
            connection.prepare("SELECT system, external_id, name, active FROM rep")?;
        let rows = statement.query_map([], |row| {
            Ok((
                (row.get::<_, String>(0)?, row.get::<_, String>(1)?),
                (row.get::<_, String>(2)?, row.get::<_, bool>(3)?),
            ))
        })?;
        for row in rows {
            let (key, value) = row?;
            reps.insert(key, value);
        }
    }
    let mut upsert = connection.prepare_cached(
        "INSERT INTO partner_profile (partner_id, home_system, home_crm_id, owner_id, owner_name,
             owner_active, city, state, zip3, website_domain, phone, payers, levels_of_care,
             accepting_referrals, preferred)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (partner_id) DO UPDATE SET home_system = excluded.home_system,
             home_crm_id = excluded.home_crm_id, owner_id = excluded.owner_id,
             owner_name = excluded.owner_name, owner_active = excluded.owner_active,
             city = excluded.city, state = excluded.state, zip3 = excluded.zip3,
             website_domain = excluded.website_domain, phone = excluded.phone,
             payers = excluded.payers, levels_of_care = excluded.levels_of_care,
             accepting_referrals = excluded.accepting_referrals, preferred = excluded.preferred
         WHERE home_system IS NOT excluded.home_system OR home_crm_id IS NOT excluded.home_crm_id
             OR owner_id IS NOT excluded.owner_id OR owner_name IS NOT excluded.owner_name
             OR owner_active IS NOT excluded.owner_active OR city IS NOT excluded.city
             OR state IS NOT excluded.state OR zip3 IS NOT excluded.zip3
             OR website_domain IS NOT excluded.website_domain OR phone IS NOT excluded.phone
             OR payers IS NOT excluded.payers OR levels_of_care IS NOT excluded.levels_of_care
             OR accepting_referrals IS NOT excluded.accepting_referrals
             OR preferred IS NOT excluded.preferred",
    )?;
    for (partner, mut list) in by_partner.iter().map(|(p, l)| (*p, l.clone())) {
        // Home first: owned by a rep, Salesforce before HubSpot, then by id.
        list.sort_by(|a, b| {
            let owned = |r: &Record| rep_of(r).is_some();
            // Not by recency: an edit in either CRM must not move the partner's tasks.
            owned(b)
                .cmp(&owned(a))
                .then_with(|| (a.system != "salesforce").cmp(&(b.system != "salesforce")))
                .then_with(|| a.key.cmp(&b.key))
        });
        let home = list[0];
        let first = |pick: &dyn Fn(&Record) -> Option<String>| list.iter().find_map(|r| pick(r));
        let owner_id = rep_of(home);
        let owner = owner_id
            .as_ref()
            .and_then(|id| reps.get(&(home.system.clone(), id.clone())));
        let payers: BTreeSet<&str> = list
            .iter()
            .flat_map(|r| crm(r).payers_accepted.iter().map(String::as_str))
            .collect();
        let levels: BTreeSet<&str> = list
            .iter()
            .flat_map(|r| crm(r).levels_of_care.iter().map(String::as_str))
            .collect();
        let preferred = if list.iter().any(|r| crm(r).preferred == Some(true)) {
            Some(true)
        } else if list.iter().any(|r| crm(r).preferred == Some(false)) {
            Some(false)
        } else {
            None
        };
        let json = |set: &BTreeSet<&str>| {
            serde_json::to_string(set)
                .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
        };
        // The partner is called what its home CRM record calls it.
        if !home.raw_name.is_empty() {
            connection
                .prepare_cached(
                    "UPDATE partner SET name = ?2, normalized_name = ?3, updated_at = ?4
                     WHERE id = ?1 AND (name IS NOT ?2 OR normalized_name IS NOT ?3)",
                )?
                .execute(params![partner, home.raw_name, home.normalized, now])?;
        }
        upsert.execute(params![
            partner,
            home.system,
            home.key,
            owner_id,
            owner.map(|(name, _)| name),
            owner.map(|(_, active)| *active),
            first(&|r| non_empty(crm(r).city.as_deref())),
            first(&|r| non_empty(crm(r).state.as_deref())),
            first(&|r| crm(r).zip.as_deref().and_then(zip3)),
            first(&|r| crm(r).website.as_deref().and_then(website_domain)),
            first(&|r| crm(r).phone.as_deref().and_then(phone_digits)),
            json(&payers)?,
            json(&levels)?,
            crm(home).accepting_referrals,
            preferred,
        ])?;
    }
    let stale: Vec<i64> = {
        let mut statement = connection.prepare("SELECT partner_id FROM partner_profile")?;
        let rows = statement.query_map([], |row| row.get::<_, i64>(0))?;
        rows.collect::<rusqlite::Result<Vec<i64>>>()?
            .into_iter()
            .filter(|partner| !by_partner.contains_key(partner))
            .collect()
    };
    for partner in stale {
        connection.execute(
            "DELETE FROM partner_profile WHERE partner_id = ?1",
            [partner],
        )?;
    }
    Ok(by_partner.len() as u64)
}

/// The pulled body of a CRM record (profiles are built from CRM records only).
fn crm(record: &Record) -> &CrmPartner {
    record
        .crm
        .as_deref()
        .expect("profiles are built from CRM records only")
}

fn non_empty(text: Option<&str>) -> Option<String> {
    text.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// The first three digits of a business ZIP.
fn zip3(zip: &str) -> Option<String> {
    let digits: String = zip
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .take(3)
        .collect();
    (digits.len() == 3).then_some(digits)
}
