//! CRM facts tied to ledger partners: reps (owners), CRM referrals (deals/opportunities) and
//! activities (touches, and refbridge's own tasks once completed). Each is upserted by its CRM key
//! and written only when a value changed, so a run with nothing new writes nothing. A CRM
//! referral describing the same inquiry as an EHR referral points at it (`referral_id`); one that
//! repeats another CRM's referral of the same inquiry points at that one (`duplicate_of`): the
//! `unified_referral` view then counts every referral once. Never reads a patient value (the CRMs
//! hold none) and never decides partner identity: partners come from the source records.

use std::collections::HashMap;

use refbridge_model::crm::{CrmRecordBody, TaskIntent};
use rusqlite::{Connection, OptionalExtension, params};

/// (system, CRM partner id) → ledger partner.
pub(super) type PartnerIndex = HashMap<(String, String), i64>;

/// A `SELECT count(*) …` as a count.
pub(super) fn count(connection: &Connection, sql: &str) -> rusqlite::Result<u64> {
    let value: i64 = connection.query_row(sql, [], |row| row.get(0))?;
    Ok(value.max(0) as u64)
}

struct Stored {
    system: String,
    external_id: String,
    modified_at: String,
    deleted: bool,
    body: Option<CrmRecordBody>,
}

fn load_stream(connection: &Connection, stream: &str) -> rusqlite::Result<Vec<Stored>> {
    let mut statement = connection.prepare(
        "SELECT system, external_id, modified_at, deleted, merged_into, body FROM crm_record
         WHERE stream = ?1 ORDER BY system, external_id",
    )?;
    let rows = statement.query_map([stream], |row| {
        let merged_into: Option<String> = row.get(4)?;
        Ok(Stored {
            system: row.get(0)?,
            external_id: row.get(1)?,
            modified_at: row.get(2)?,
            deleted: row.get::<_, bool>(3)? || merged_into.is_some(),
            body: serde_json::from_str(&row.get::<_, String>(5)?).ok(),
        })
    })?;
    rows.collect()
}

/// `rep` from the owners streams. Returns how many reps the ledger holds.
pub(super) fn reps(connection: &Connection) -> rusqlite::Result<u64> {
    let mut upsert = connection.prepare_cached(
        "INSERT INTO rep (system, external_id, name, email, active) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (system, external_id) DO UPDATE SET name = excluded.name,
             email = excluded.email, active = excluded.active
         WHERE name IS NOT excluded.name OR email IS NOT excluded.email
             OR active IS NOT excluded.active",
    )?;
    for stored in load_stream(connection, "owners")? {
        if let Some(CrmRecordBody::Owner(owner)) = &stored.body {
            upsert.execute(params![
                stored.system,
                stored.external_id,
                owner.name,
                owner.email,
                owner.active && !stored.deleted
            ])?;
        }
    }
    count(connection, "SELECT count(*) FROM rep")
}

/// What the CRM referral figures came to.
pub(super) struct ReferralCounts {
    pub live: u64,
    pub matched_to_ehr: u64,
}

/// `crm_referral` from the referrals streams, tied to partners and to the EHR's referrals.
pub(super) fn crm_referrals(
    connection: &Connection,
    partners: &PartnerIndex,
) -> rusqlite::Result<ReferralCounts> {
    // EHR outbound referrals by (parent inquiry, partner): a CRM deal for the same refer-out.
    let mut outbound: HashMap<(String, i64), i64> = HashMap::new();
    {
        let mut statement = connection.prepare(
            "SELECT id, parent_inquiry_id, partner_id FROM referral
             WHERE direction = 'out' AND parent_inquiry_id IS NOT NULL AND partner_id IS NOT NULL
             ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (id, parent, partner) = row?;
            outbound.entry((parent, partner)).or_insert(id);
        }
    }
    let mut inbound = connection.prepare_cached(
        "SELECT id FROM referral WHERE source_system = ?2 AND inquiry_id = ?1 AND direction = 'in'",
    )?;
    let mut upsert = connection.prepare_cached(
        "INSERT INTO crm_referral (system, crm_id, partner_id, referral_id, inquiry_id, direction,
             parent_inquiry_id, stage, disposition, disposition_reason, payer, plan_type,
             level_of_care, inquiry_date, admit_date, owner_id, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT (system, crm_id) DO UPDATE SET partner_id = excluded.partner_id,
             referral_id = excluded.referral_id, inquiry_id = excluded.inquiry_id,
             direction = excluded.direction, parent_inquiry_id = excluded.parent_inquiry_id,
             stage = excluded.stage, disposition = excluded.disposition,
             disposition_reason = excluded.disposition_reason, payer = excluded.payer,
             plan_type = excluded.plan_type, level_of_care = excluded.level_of_care,
             inquiry_date = excluded.inquiry_date, admit_date = excluded.admit_date,
             owner_id = excluded.owner_id, deleted = excluded.deleted
         WHERE partner_id IS NOT excluded.partner_id OR referral_id IS NOT excluded.referral_id
             OR inquiry_id IS NOT excluded.inquiry_id OR direction IS NOT excluded.direction
             OR parent_inquiry_id IS NOT excluded.parent_inquiry_id OR stage IS NOT excluded.stage
             OR disposition IS NOT excluded.disposition
             OR disposition_reason IS NOT excluded.disposition_reason
             OR payer IS NOT excluded.payer OR plan_type IS NOT excluded.plan_type
             OR level_of_care IS NOT excluded.level_of_care
             OR inquiry_date IS NOT excluded.inquiry_date OR admit_date IS NOT excluded.admit_date
             OR owner_id IS NOT excluded.owner_id OR deleted IS NOT excluded.deleted",
    )?;
    let mut mark_deleted = connection.prepare_cached(
        "UPDATE crm_referral SET deleted = 1 WHERE system = ?1 AND crm_id = ?2 AND deleted = 0",
    )?;
    for stored in load_stream(connection, "referrals")? {
        let Some(CrmRecordBody::Referral(deal)) = &stored.body else {
            // A deleted record keeps its stored row, marked; an unreadable one changes nothing.
            if stored.deleted {
                mark_deleted.execute(params![stored.system, stored.external_id])?;
            }
            continue;
        };
        let partner = deal
            .partner_id
            .as_ref()
            .and_then(|id| partners.get(&(stored.system.clone(), id.clone())))
            .copied();
        let referral_id: Option<i64> = match deal.direction {
            refbridge_model::Direction::In => match &deal.inquiry_id {
                Some(inquiry) => inbound
                    .query_row(params![inquiry, crate::import::EHR_SYSTEM], |row| {
                        row.get(0)
                    })
                    .optional()?,
                None => None,
            },
            refbridge_model::Direction::Out => match (&deal.parent_inquiry_id, partner) {
                (Some(parent), Some(partner)) => outbound.get(&(parent.clone(), partner)).copied(),
                _ => None,
            },
        };
        upsert.execute(params![
            stored.system,
            stored.external_id,
            partner,
            referral_id,
            deal.inquiry_id,
            deal.direction.as_str(),
            deal.parent_inquiry_id,
            deal.stage,
            deal.disposition.map(|d| d.as_str()),
            deal.disposition_reason.map(|r| r.as_str()),
            deal.payer,
            deal.plan_type,
            deal.level_of_care,
            deal.inquiry_date.map(|d| d.to_string()),
            deal.admit_date.map(|d| d.to_string()),
            deal.owner_id,
            stored.deleted,
        ])?;
    }
    mark_duplicates(connection)?;
    Ok(ReferralCounts {
        live: count(
            connection,
            "SELECT count(*) FROM crm_referral WHERE deleted = 0",
        )?,
        matched_to_ehr: count(
            connection,
            "SELECT count(*) FROM crm_referral WHERE deleted = 0 AND referral_id IS NOT NULL",
        )?,
    })
}

/// Points every live CRM referral that repeats another (same direction and inquiry; for
/// outbound, the same parent inquiry and partner) at the lowest-id one, and clears the pointer
/// of the rest.
fn mark_duplicates(connection: &Connection) -> rusqlite::Result<()> {
    #[derive(PartialEq, Eq, Hash)]
    enum Key {
        In(String),
        Out(String, i64),
        OutById(String),
    }
    let mut first: HashMap<Key, i64> = HashMap::new();
    let mut changes: Vec<(i64, Option<i64>)> = Vec::new();
    let mut statement = connection.prepare(
        "SELECT id, direction, inquiry_id, parent_inquiry_id, partner_id, deleted, duplicate_of
         FROM crm_referral ORDER BY id",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<String>>(2)?,
            row.get::<_, Option<String>>(3)?,
            row.get::<_, Option<i64>>(4)?,
            row.get::<_, bool>(5)?,
            row.get::<_, Option<i64>>(6)?,
        ))
    })?;
    for row in rows {
        let (id, direction, inquiry, parent, partner, deleted, duplicate_of) = row?;
        let key = match (direction.as_str(), inquiry, parent, partner) {
            _ if deleted => None,
            ("in", Some(inquiry), _, _) => Some(Key::In(inquiry)),
            ("out", _, Some(parent), Some(partner)) => Some(Key::Out(parent, partner)),
            ("out", Some(inquiry), _, _) => Some(Key::OutById(inquiry)),
            _ => None,
        };
        let wanted = match key {
            Some(key) => match first.get(&key) {
                Some(&original) => Some(original),
                None => {
                    first.insert(key, id);
                    None
                }
            },
            None => None,
        };
        if wanted != duplicate_of {
            changes.push((id, wanted));
        }
    }
    for (id, duplicate_of) in changes {
        connection
            .prepare_cached("UPDATE crm_referral SET duplicate_of = ?2 WHERE id = ?1")?
            .execute(params![id, duplicate_of])?;
    }
    Ok(())
}

/// `activity` from the activities streams (partner by the activity's partner, else its
/// contact's), and refbridge's own tasks once completed (partner by the task intent's
/// `about_id`; refer-out tasks are about a lead and are not touches). Returns how many activities
/// the ledger holds.
pub(super) fn activities(
    connection: &Connection,
    partners: &PartnerIndex,
) -> rusqlite::Result<u64> {
    let mut upsert = connection.prepare_cached(
        "INSERT INTO activity (system, crm_id, partner_id, kind, owner_id, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (system, crm_id) DO UPDATE SET partner_id = excluded.partner_id,
             kind = excluded.kind, owner_id = excluded.owner_id, at = excluded.at
         WHERE partner_id IS NOT excluded.partner_id OR kind IS NOT excluded.kind
             OR owner_id IS NOT excluded.owner_id OR at IS NOT excluded.at",
    )?;
    let mut remove =
        connection.prepare_cached("DELETE FROM activity WHERE system = ?1 AND crm_id = ?2")?;
    let mut contact = connection.prepare_cached(
        "SELECT body FROM crm_record WHERE system = ?1 AND stream = 'contacts' AND external_id = ?2",
    )?;
    let mut contact_partner: HashMap<(String, String), Option<i64>> = HashMap::new();
    for stored in load_stream(connection, "activities")? {
        let Some(CrmRecordBody::Activity(touch)) = &stored.body else {
            if stored.deleted {
                remove.execute(params![stored.system, stored.external_id])?;
            }
            continue;
        };
        if stored.deleted {
            remove.execute(params![stored.system, stored.external_id])?;
            continue;
        }
        let mut partner = touch
            .partner_id
            .as_ref()
            .and_then(|id| partners.get(&(stored.system.clone(), id.clone())))
            .copied();
        if partner.is_none()
            && let Some(contact_id) = &touch.contact_id
        {
            let key = (stored.system.clone(), contact_id.clone());
            partner = match contact_partner.get(&key) {
                Some(known) => *known,
                None => {
                    let body: Option<String> = contact
                        .query_row(params![stored.system, contact_id], |row| row.get(0))
                        .optional()?;
                    let found = body
                        .and_then(|body| serde_json::from_str::<CrmRecordBody>(&body).ok())
                        .and_then(|body| match body {
                            CrmRecordBody::Contact(contact) => contact.partner_id,
                            _ => None,
                        })
                        .and_then(|id| partners.get(&(stored.system.clone(), id)).copied());
                    contact_partner.insert(key, found);
                    found
                }
            };
        }
        upsert.execute(params![
            stored.system,
            stored.external_id,
            partner,
            touch.kind,
            touch.owner_id,
            touch
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ])?;
    }

    let mut intent =
        connection.prepare_cached("SELECT intent FROM outbox WHERE system = ?1 AND key = ?2")?;
    for stored in load_stream(connection, "tasks")? {
        let task = match &stored.body {
            Some(CrmRecordBody::Task(task)) if task.completed && !stored.deleted => task,
            _ => {
                remove.execute(params![stored.system, stored.external_id])?;
                continue;
            }
        };
        // A task refbridge completed itself (its condition cleared) is no rep's touch.
        let about: Option<String> = intent
            .query_row(params![stored.system, task.key], |row| {
                row.get::<_, String>(0)
            })
            .optional()?
            .and_then(|json| serde_json::from_str::<TaskIntent>(&json).ok())
            .filter(|intent| !intent.completed)
            .map(|intent| intent.about_id);
        let partner = about.and_then(|id| partners.get(&(stored.system.clone(), id)).copied());
        match partner {
            Some(partner) => {
                upsert.execute(params![
                    stored.system,
                    stored.external_id,
                    partner,
                    "task",
                    task.owner_id,
                    stored.modified_at,
                ])?;
            }
            // About a lead (a refer-out task), or a task refbridge no longer knows: no touch.
            None => {
                remove.execute(params![stored.system, stored.external_id])?;
            }
        }
    }
    count(connection, "SELECT count(*) FROM activity")
}
