//! Loads a synthetic [`World`] into the sandbox's [`Store`]: reps become owners, partners companies,
//! contacts contacts, referrals deals in the `admissions` pipeline, activities calls / meetings /
//! emails / notes (a visit is a meeting with `hs_activity_type` "Visit"). Tasks start empty.
//!
//! Ids are deterministic: a type's id base plus the world index (plus one), so the same world
//! always yields the same ids. No patient field of the world is read here — a CRM never holds them.

use std::collections::BTreeSet;

use refbridge_synthetic::{ActivityKind, Direction, SourceType, Stage as WorldStage, World};

use super::schema::{ObjectType, WorldOptions, association_type, initial_properties};
use super::store::{Owner, Pipeline, Stage, Store, TypeStore, iso_ms, now_ms};

/// Owner ids and user ids of the reps.
const OWNER_ID_BASE: u64 = 70_000_000;
const USER_ID_BASE: u64 = 9_000_000;

pub(crate) fn owner_id(rep: usize) -> u64 {
    OWNER_ID_BASE + rep as u64 + 1
}

pub(crate) fn record_id(object_type: ObjectType, index: usize) -> u64 {
    object_type.id_base() + index as u64 + 1
}

/// The admissions pipeline's stage ids, in board order.
pub(crate) fn stage_id(stage: WorldStage) -> &'static str {
    stage.as_str()
}

const STAGES: [WorldStage; 4] = [
    WorldStage::Pending,
    WorldStage::Admitted,
    WorldStage::NotAdmitted,
    WorldStage::ReferredOut,
];

/// Builds the whole store. Runs in O(records · log records).
pub(crate) fn seed(world: &World) -> Store {
    let world_start = world
        .reps
        .iter()
        .map(|r| r.created_at.timestamp_millis())
        .chain(
            world
                .partners
                .iter()
                .map(|p| p.created_at.timestamp_millis()),
        )
        .min()
        .unwrap_or_else(now_ms);
    let options = world_options(world);
    let mut types: Vec<TypeStore> = ObjectType::ALL
        .into_iter()
        .map(|t| {
            let mut defs = initial_properties(t, &options);
            for def in &mut defs {
                def.created_ms = world_start;
            }
            TypeStore::new(t, defs)
        })
        .collect();

    let owners: Vec<Owner> = world
        .reps
        .iter()
        .enumerate()
        .map(|(index, rep)| Owner {
            id: owner_id(index),
            user_id: USER_ID_BASE + index as u64 + 1,
            email: rep.email.clone(),
            first_name: rep.first_name.clone(),
            last_name: rep.last_name.clone(),
            archived: !rep.active,
            created_ms: rep.created_at.timestamp_millis(),
        })
        .collect();
    let owner = |rep: Option<usize>| {
        rep.filter(|r| *r < world.reps.len())
            .map(|r| owner_id(r).to_string())
    };

    let companies = &mut types[ObjectType::Companies.index()];
    for (index, partner) in world.partners.iter().enumerate() {
        let mut values = vec![
            ("name", partner.name.clone()),
            ("phone", partner.phone.clone()),
            ("address", partner.street.clone()),
            ("city", partner.city.clone()),
            ("state", partner.state.clone()),
            ("zip", partner.zip.clone()),
            ("country", "United States".to_string()),
            (
                "referral_source_type",
                partner.source_type.as_str().to_string(),
            ),
            ("payers_accepted", partner.payers_accepted.join(";")),
            ("levels_of_care", partner.levels_of_care.join(";")),
            (
                "accepting_referrals",
                partner.accepting_referrals.to_string(),
            ),
            ("preferred", partner.preferred.to_string()),
        ];
        if let Some(website) = &partner.website {
            values.push(("website", website.clone()));
            values.push(("domain", domain_of(website)));
        }
        if let Some(npi) = &partner.npi {
            values.push(("npi", npi.clone()));
        }
        if let Some(owner) = owner(partner.owner) {
            values.push(("hubspot_owner_id", owner));
        }
        companies.seed(
            record_id(ObjectType::Companies, index),
            partner.created_at.timestamp_millis(),
            partner.modified_at.timestamp_millis(),
            values,
        );
    }

    let contacts = &mut types[ObjectType::Contacts.index()];
    for (index, contact) in world.contacts.iter().enumerate() {
        let mut values = vec![
            ("firstname", contact.first_name.clone()),
            ("lastname", contact.last_name.clone()),
            ("email", contact.email.clone()),
            ("phone", contact.phone.clone()),
            ("jobtitle", contact.title.clone()),
        ];
        if let Some(partner) = world.partners.get(contact.partner) {
            values.push(("company", partner.name.clone()));
            values.push((
                "associatedcompanyid",
                record_id(ObjectType::Companies, contact.partner).to_string(),
            ));
        }
        if let Some(owner) = owner(contact.owner) {
            values.push(("hubspot_owner_id", owner));
        }
        contacts.seed(
            record_id(ObjectType::Contacts, index),
            contact.created_at.timestamp_millis(),
            contact.modified_at.timestamp_millis(),
            values,
        );
    }

    let deals = &mut types[ObjectType::Deals.index()];
    for (index, referral) in world.referrals.iter().enumerate() {
        let (direction, name) = match referral.direction {
            Direction::In => ("in", format!("Inquiry {}", referral.inquiry_id)),
            Direction::Out => ("out", format!("Referral out {}", referral.inquiry_id)),
        };
        let mut values = vec![
            ("dealname", name),
            ("pipeline", "admissions".to_string()),
            ("dealstage", stage_id(referral.stage).to_string()),
            ("inquiry_id", referral.inquiry_id.clone()),
            ("referral_direction", direction.to_string()),
            ("payer", referral.payer.clone()),
            ("plan_type", referral.plan_type.clone()),
            ("level_of_care", referral.level_of_care.clone()),
        ];
        if let Some(reason) = referral.reason {
            values.push(("disposition_reason", reason.to_string()));
        }
        if let Some(admit_date) = referral.admit_date {
            values.push(("admit_date", admit_date.format("%Y-%m-%d").to_string()));
        }
        if let Some(parent) = referral.parent.and_then(|p| world.referrals.get(p)) {
            values.push(("parent_inquiry_id", parent.inquiry_id.clone()));
        }
        if referral.stage != WorldStage::Pending {
            let closed = referral
                .admit_date
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis())
                .unwrap_or_else(|| referral.modified_at.timestamp_millis());
            values.push(("closedate", iso_ms(closed)));
        }
        if let Some(owner) = owner(referral.rep) {
            values.push(("hubspot_owner_id", owner));
        }
        deals.seed(
            record_id(ObjectType::Deals, index),
            referral.inquiry_at.timestamp_millis(),
            referral.modified_at.timestamp_millis(),
            values,
        );
    }

    let mut next_index = [0usize; 8];
    let mut activity_links = Vec::with_capacity(world.activities.len());
    for activity in &world.activities {
        let (object_type, values) = activity_values(
            activity.kind,
            &activity.subject,
            activity.at.timestamp_millis(),
        );
        let slot = &mut next_index[object_type.index()];
        let id = record_id(object_type, *slot);
        *slot += 1;
        let mut values = values;
        if let Some(owner) = owner(Some(activity.rep)) {
            values.push(("hubspot_owner_id", owner));
        }
        types[object_type.index()].seed(
            id,
            activity.at.timestamp_millis(),
            activity.modified_at.timestamp_millis(),
            values,
        );
        activity_links.push((object_type, id, activity.partner, activity.contact));
    }

    for t in &mut types {
        t.finish_seeding();
    }
    let pipeline = Pipeline {
        id: "admissions".to_string(),
        label: "Admissions".to_string(),
        stages: STAGES
            .iter()
            .map(|&stage| Stage {
                id: stage_id(stage).to_string(),
                label: stage.label().to_string(),
                closed: stage != WorldStage::Pending,
                probability: match stage {
                    WorldStage::Admitted => "1.0",
                    WorldStage::Pending => "0.5",
                    _ => "0.0",
                },
            })
            .collect(),
        created_ms: world_start,
    };
    let mut store = Store::new(types, owners, vec![pipeline]);

    let link = |store: &mut Store,
                from: ObjectType,
                from_id: u64,
                to: ObjectType,
                to_id: u64,
                type_id: u16| {
        if let Some(kind) = association_type(from, to, type_id)
            && store.of(to).live(to_id).is_some()
        {
            store.associations.add(kind, from_id, to_id);
        }
    };
    for (index, contact) in world.contacts.iter().enumerate() {
        let (from, to) = (
            record_id(ObjectType::Contacts, index),
            record_id(ObjectType::Companies, contact.partner),
        );
        link(
            &mut store,
            ObjectType::Contacts,
            from,
            ObjectType::Companies,
            to,
            1,
        );
        link(
            &mut store,
            ObjectType::Contacts,
            from,
            ObjectType::Companies,
            to,
            279,
        );
    }
    for (index, referral) in world.referrals.iter().enumerate() {
        let deal = record_id(ObjectType::Deals, index);
        let company = record_id(ObjectType::Companies, referral.partner);
        link(
            &mut store,
            ObjectType::Deals,
            deal,
            ObjectType::Companies,
            company,
            5,
        );
        link(
            &mut store,
            ObjectType::Deals,
            deal,
            ObjectType::Companies,
            company,
            341,
        );
        if let Some(contact) = referral.contact {
            link(
                &mut store,
                ObjectType::Deals,
                deal,
                ObjectType::Contacts,
                record_id(ObjectType::Contacts, contact),
                3,
            );
        }
    }
    for (object_type, id, partner, contact) in activity_links {
        let company_type =
            super::schema::default_association_type(object_type, ObjectType::Companies)
                .map(|t| t.id);
        if let Some(type_id) = company_type {
            link(
                &mut store,
                object_type,
                id,
                ObjectType::Companies,
                record_id(ObjectType::Companies, partner),
                type_id,
            );
        }
        let contact_type =
            super::schema::default_association_type(object_type, ObjectType::Contacts)
                .map(|t| t.id);
        if let (Some(contact), Some(type_id)) = (contact, contact_type) {
            link(
                &mut store,
                object_type,
                id,
                ObjectType::Contacts,
                record_id(ObjectType::Contacts, contact),
                type_id,
            );
        }
    }
    store
}

/// The engagement type and properties of one activity.
fn activity_values(
    kind: ActivityKind,
    subject: &str,
    at_ms: i64,
) -> (ObjectType, Vec<(&'static str, String)>) {
    let at = iso_ms(at_ms);
    match kind {
        ActivityKind::Call => (
            ObjectType::Calls,
            vec![
                ("hs_timestamp", at),
                ("hs_call_title", subject.to_string()),
                ("hs_call_direction", "OUTBOUND".into()),
                ("hs_call_status", "COMPLETED".into()),
            ],
        ),
        ActivityKind::Meeting | ActivityKind::Visit => {
            let (activity_type, minutes, location) = if kind == ActivityKind::Visit {
                ("Visit", 60, "On site")
            } else {
                ("Meeting", 30, "Video call")
            };
            (
                ObjectType::Meetings,
                vec![
                    ("hs_timestamp", at.clone()),
                    ("hs_meeting_title", subject.to_string()),
                    ("hs_meeting_start_time", at),
                    ("hs_meeting_end_time", iso_ms(at_ms + minutes * 60_000)),
                    ("hs_meeting_outcome", "COMPLETED".into()),
                    ("hs_meeting_location", location.into()),
                    ("hs_activity_type", activity_type.into()),
                ],
            )
        }
        ActivityKind::Email => (
            ObjectType::Emails,
            vec![
                ("hs_timestamp", at),
                ("hs_email_subject", subject.to_string()),
                ("hs_email_direction", "EMAIL".into()),
                ("hs_email_status", "SENT".into()),
            ],
        ),
        ActivityKind::Note => (
            ObjectType::Notes,
            vec![("hs_timestamp", at), ("hs_note_body", subject.to_string())],
        ),
    }
}

/// The option lists of the world's enumerations: every value that occurs, sorted.
fn world_options(world: &World) -> WorldOptions {
    let payers: BTreeSet<String> = world
        .partners
        .iter()
        .flat_map(|p| p.payers_accepted.iter().cloned())
        .chain(world.facility.payers_in_network.iter().cloned())
        .collect();
    let levels: BTreeSet<String> = world
        .partners
        .iter()
        .flat_map(|p| p.levels_of_care.iter().cloned())
        .chain(world.facility.levels_of_care.iter().cloned())
        .collect();
    WorldOptions {
        payers: payers
            .into_iter()
            .filter(|v| !v.is_empty() && !v.contains(';'))
            .collect(),
        levels_of_care: levels
            .into_iter()
            .filter(|v| !v.is_empty() && !v.contains(';'))
            .collect(),
        source_types: SourceType::ALL
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        stages: STAGES
            .iter()
            .map(|s| (stage_id(*s).to_string(), s.label().to_string()))
            .collect(),
    }
}

/// `https://www.mercy-hospital.org/ed` → `mercy-hospital.org`.
fn domain_of(website: &str) -> String {
    let without_scheme = website
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(website);
    let host = without_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    host.strip_prefix("www.")
        .unwrap_or(host)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_come_from_websites() {
        assert_eq!(
            domain_of("https://www.Mercy-Hospital.org/ed?x=1"),
            "mercy-hospital.org"
        );
        assert_eq!(domain_of("clinic.example"), "clinic.example");
    }
}
