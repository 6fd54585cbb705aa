//! Loads a [`World`] into a fresh org: users, accounts, contacts, opportunities, tasks and events.
//!
//! Ids are deterministic: the n-th seeded record of a type gets counter n, so the same world always
//! yields the same ids. The mapping, field by field:
//! - User ← the integration user `refbridge@sandbox.example` (the running user, first), then reps;
//!   username = email.
//! - Account ← partners. Partners without an owner ("unowned") are owned by the integration user,
//!   whose name is "Integration User" — the state of an org where nobody claimed the account.
//! - Contact ← contacts (owner: the contact's rep, else the integration user).
//! - Opportunity ← referrals: `Name` `"Inquiry <inquiry id>"`, `StageName` the stage label,
//!   `CloseDate` the admit date or else the inquiry date, `Inquiry_Id__c` the inquiry id (unique:
//!   an outbound referral that shares its parent's inquiry id gets the suffix `-OUT`),
//!   `Referral_Source__c` (inbound) or `Referred_Out_To__c` (outbound) the partner's account.
//!   No patient field is ever written into the CRM.
//! - Task ← calls, emails and notes (Completed, closed); Event ← meetings and visits (one hour).
//!
//! This module only builds records; it must not read anything but the world.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};
use refbridge_synthetic::{ActivityKind, Direction, World};

use super::schema::{ObjectType, STAGES, system};
use super::store::{Org, Value, make_id, to_millis};

/// The running user of the sandbox.
pub const INTEGRATION_USERNAME: &str = "refbridge@sandbox.example";

/// A record under construction.
struct Draft {
    object: ObjectType,
    values: Vec<Value>,
}

impl Draft {
    fn new(
        org: &Org,
        object: ObjectType,
        created: DateTime<Utc>,
        modified: DateTime<Utc>,
        by: &str,
    ) -> Draft {
        let mut values = vec![Value::Null; object.fields().len()];
        let created = to_millis(created);
        let modified = to_millis(modified.max(created));
        values[system::ID] = Value::Text(org.store(object).next_id());
        values[system::IS_DELETED] = Value::Bool(false);
        values[system::CREATED_DATE] = Value::DateTime(created);
        values[system::CREATED_BY_ID] = Value::Text(by.to_string());
        values[system::LAST_MODIFIED_DATE] = Value::DateTime(modified);
        values[system::LAST_MODIFIED_BY_ID] = Value::Text(by.to_string());
        values[system::SYSTEM_MODSTAMP] = Value::DateTime(modified);
        Draft { object, values }
    }

    fn set(&mut self, field: &str, value: Value) -> &mut Draft {
        if let Some(index) = self
            .object
            .fields()
            .iter()
            .position(|candidate| candidate.name == field)
        {
            self.values[index] = value;
        }
        self
    }

    fn text(&mut self, field: &str, text: &str) -> &mut Draft {
        self.set(field, Value::text_or_null(Some(text)))
    }

    fn insert(self, org: &mut Org) -> String {
        let id = self.values[system::ID]
            .as_text()
            .unwrap_or_default()
            .to_string();
        org.store_mut(self.object).insert(self.values);
        id
    }
}

/// Builds the org for `world`.
pub fn seed(world: &World) -> Org {
    let mut org = Org::new(make_id("00D", 1));
    let earliest = world
        .reps
        .iter()
        .map(|rep| rep.created_at)
        .chain(world.partners.iter().map(|partner| partner.created_at))
        .min()
        .unwrap_or_else(|| {
            world
                .spec
                .as_of
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc()
        });
    let setup_at = earliest - Duration::days(1);

    // The integration user creates itself: its id is the first User id.
    let integration = make_id(ObjectType::User.key_prefix(), 1);
    let mut draft = Draft::new(&org, ObjectType::User, setup_at, setup_at, &integration);
    draft
        .text("Username", INTEGRATION_USERNAME)
        .text("FirstName", "Integration")
        .text("LastName", "User")
        .text("Name", "Integration User")
        .text("Email", INTEGRATION_USERNAME)
        .text("Title", "Integration")
        .set("IsActive", Value::Bool(true));
    draft.insert(&mut org);
    org.running_user_id = integration.clone();

    let user_ids: Vec<String> = world
        .reps
        .iter()
        .map(|rep| {
            let mut draft = Draft::new(
                &org,
                ObjectType::User,
                rep.created_at,
                rep.created_at,
                &integration,
            );
            draft
                .text("Username", &rep.email)
                .text("FirstName", &rep.first_name)
                .text("LastName", &rep.last_name)
                .text("Name", &format!("{} {}", rep.first_name, rep.last_name))
                .text("Email", &rep.email)
                .text("Title", "Referral Account Manager")
                .set("IsActive", Value::Bool(rep.active));
            draft.insert(&mut org)
        })
        .collect();
    let owner = |rep: Option<usize>| -> String {
        rep.and_then(|index| user_ids.get(index))
            .unwrap_or(&integration)
            .clone()
    };

    let mut payers = BTreeSet::new();
    let mut levels = BTreeSet::new();
    let account_ids: Vec<String> = world
        .partners
        .iter()
        .map(|partner| {
            payers.extend(partner.payers_accepted.iter().cloned());
            levels.extend(partner.levels_of_care.iter().cloned());
            let mut draft = Draft::new(
                &org,
                ObjectType::Account,
                partner.created_at,
                partner.modified_at,
                &integration,
            );
            draft
                .text("Name", &partner.name)
                .text("Type", partner.source_type.as_str())
                .set("Website", Value::text_or_null(partner.website.as_deref()))
                .text("Phone", &partner.phone)
                .text("BillingStreet", &partner.street)
                .text("BillingCity", &partner.city)
                .text("BillingState", &partner.state)
                .text("BillingPostalCode", &partner.zip)
                .text("BillingCountry", "United States")
                .text("OwnerId", &owner(partner.owner))
                .set("NPI__c", Value::text_or_null(partner.npi.as_deref()))
                .text("Referral_Source_Type__c", partner.source_type.as_str())
                .text("Payers_Accepted__c", &partner.payers_accepted.join(";"))
                .text("Levels_Of_Care__c", &partner.levels_of_care.join(";"))
                .set(
                    "Accepting_Referrals__c",
                    Value::Bool(partner.accepting_referrals),
                )
                .set("Preferred__c", Value::Bool(partner.preferred));
            draft.insert(&mut org)
        })
        .collect();
    for (field, values) in [
        ("Payers_Accepted__c", payers),
        ("Levels_Of_Care__c", levels),
    ] {
        if let Some(index) = ObjectType::Account.field_index(field) {
            org.observed_picklist_values
                .insert((ObjectType::Account, index), values.into_iter().collect());
        }
    }
    let account =
        |partner: usize| Value::text_or_null(account_ids.get(partner).map(String::as_str));

    let contact_ids: Vec<String> = world
        .contacts
        .iter()
        .map(|contact| {
            let mut draft = Draft::new(
                &org,
                ObjectType::Contact,
                contact.created_at,
                contact.modified_at,
                &integration,
            );
            draft
                .set("AccountId", account(contact.partner))
                .text("FirstName", &contact.first_name)
                .text("LastName", &contact.last_name)
                .text(
                    "Name",
                    &format!("{} {}", contact.first_name, contact.last_name),
                )
                .text("Title", &contact.title)
                .text("Email", &contact.email)
                .text("Phone", &contact.phone)
                .text("OwnerId", &owner(contact.owner));
            draft.insert(&mut org)
        })
        .collect();
    let contact = |index: Option<usize>| {
        Value::text_or_null(
            index
                .and_then(|index| contact_ids.get(index))
                .map(String::as_str),
        )
    };

    let mut inquiry_ids = HashSet::new();
    for referral in &world.referrals {
        let mut inquiry_id = referral.inquiry_id.clone();
        if inquiry_ids.contains(&inquiry_id.to_lowercase()) {
            inquiry_id = format!("{}-OUT", referral.inquiry_id);
            let mut counter = 2;
            while inquiry_ids.contains(&inquiry_id.to_lowercase()) {
                inquiry_id = format!("{}-OUT{counter}", referral.inquiry_id);
                counter += 1;
            }
        }
        inquiry_ids.insert(inquiry_id.to_lowercase());
        let label = referral.stage.label();
        let (closed, won) = STAGES
            .iter()
            .find(|(stage, _, _)| *stage == label)
            .map_or((false, false), |(_, closed, won)| (*closed, *won));
        let close_date = referral
            .admit_date
            .unwrap_or_else(|| referral.inquiry_at.date_naive());
        let inbound = referral.direction == Direction::In;
        let parent = referral.parent.and_then(|index| world.referrals.get(index));
        let mut draft = Draft::new(
            &org,
            ObjectType::Opportunity,
            referral.inquiry_at,
            referral.modified_at,
            &integration,
        );
        draft
            .text("Name", &format!("Inquiry {}", referral.inquiry_id))
            .set("AccountId", account(referral.partner))
            .set("ContactId", contact(referral.contact))
            .text("StageName", label)
            .set("CloseDate", Value::Date(close_date))
            .set("IsClosed", Value::Bool(closed))
            .set("IsWon", Value::Bool(won))
            .text("OwnerId", &owner(referral.rep))
            .text("Inquiry_Id__c", &inquiry_id)
            .text("Direction__c", if inbound { "Inbound" } else { "Outbound" })
            .set(
                "Disposition_Reason__c",
                Value::text_or_null(referral.reason),
            )
            .text("Payer__c", &referral.payer)
            .text("Plan_Type__c", &referral.plan_type)
            .text("Level_Of_Care__c", &referral.level_of_care)
            .set(
                "Admit_Date__c",
                referral.admit_date.map_or(Value::Null, Value::Date),
            )
            .set(
                "Parent_Inquiry_Id__c",
                Value::text_or_null(parent.map(|parent| parent.inquiry_id.as_str())),
            );
        if inbound {
            draft.set("Referral_Source__c", account(referral.partner));
        } else {
            draft.set("Referred_Out_To__c", account(referral.partner));
        }
        draft.insert(&mut org);
    }

    for activity in &world.activities {
        let at = to_millis(activity.at);
        let owner_id = owner(Some(activity.rep));
        match activity.kind {
            ActivityKind::Call | ActivityKind::Email | ActivityKind::Note => {
                let (kind, subtype) = match activity.kind {
                    ActivityKind::Call => ("Call", "Call"),
                    ActivityKind::Email => ("Email", "Email"),
                    _ => ("Other", "Task"),
                };
                let mut draft =
                    Draft::new(&org, ObjectType::Task, at, activity.modified_at, &owner_id);
                draft
                    .text("Subject", &activity.subject)
                    .text("Status", "Completed")
                    .text("Priority", "Normal")
                    .set("ActivityDate", Value::Date(at.date_naive()))
                    .text("OwnerId", &owner_id)
                    .set("WhoId", contact(activity.contact))
                    .set("WhatId", account(activity.partner))
                    .text("Type", kind)
                    .text("TaskSubtype", subtype)
                    .set("IsClosed", Value::Bool(true))
                    .set("CompletedDateTime", Value::DateTime(at));
                draft.insert(&mut org);
            }
            ActivityKind::Meeting | ActivityKind::Visit => {
                let kind = if activity.kind == ActivityKind::Meeting {
                    "Meeting"
                } else {
                    "Visit"
                };
                let mut draft =
                    Draft::new(&org, ObjectType::Event, at, activity.modified_at, &owner_id);
                draft
                    .text("Subject", &activity.subject)
                    .set("StartDateTime", Value::DateTime(at))
                    .set("EndDateTime", Value::DateTime(at + Duration::hours(1)))
                    .set("ActivityDateTime", Value::DateTime(at))
                    .set("ActivityDate", Value::Date(at.date_naive()))
                    .set("DurationInMinutes", Value::Number(60.0))
                    .text("OwnerId", &owner_id)
                    .set("WhoId", contact(activity.contact))
                    .set("WhatId", account(activity.partner))
                    .text("Type", kind);
                draft.insert(&mut org);
            }
        }
    }
    org
}
