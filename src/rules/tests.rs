//! Rules, data-driven: which conditions hold for which facts, and what their words may say.

use chrono::NaiveDate;
use refbridge_model::crm::CrmSystem;
use rusqlite::params;

use super::*;
use crate::health::{HealthFacts, HealthState, PartnerHealth, Trend};
use crate::ledger::Ledger;

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

const AS_OF: &str = "2026-11-27";

fn facts() -> HealthFacts {
    HealthFacts {
        baseline_per_month: Some(4.2),
        referrals_current_window: 12,
        expected_current_window: Some(12.4),
        declining: false,
        decline_p: Some(0.5),
        silent: false,
        silence_p: Some(0.9),
        days_since_last_referral: Some(3),
        first_referral: Some(day("2025-06-01")),
        last_referral: Some(day("2026-11-24")),
        referrals_last_365_days: 50,
        admitted_last_365_days: 20,
        decided_last_365_days: 40,
        last_touch: Some(day("2026-11-20")),
        days_since_touch: Some(7),
        owned: Some(true),
        sent_last_365_days: 0,
        received_last_365_days: 50,
    }
}

fn partner(id: i64, change: impl FnOnce(&mut HealthFacts)) -> PartnerHealth {
    let mut facts = facts();
    change(&mut facts);
    PartnerHealth {
        partner_id: id,
        name: format!("Partner {id}"),
        score: Some(50.0),
        state: HealthState::Watch,
        trend: Trend::Flat,
        components: Vec::new(),
        facts,
    }
}

/// A ledger where partners 1–9 live in Salesforce (owner 005A) and partner 10 in no CRM.
fn ledger() -> (tempfile::TempDir, Ledger) {
    let (directory, ledger) = crate::ledger::scratch();
    let c = ledger.connection();
    for id in 1..=10 {
        c.execute(
            "INSERT INTO partner (id, name, normalized_name, origin, created_at, updated_at)
             VALUES (?1, 'Partner ' || ?1, 'partner ' || ?1, 'ehr', 't', 't')",
            [id],
        )
        .unwrap();
        if id < 10 {
            c.execute(
                "INSERT INTO partner_profile (partner_id, home_system, home_crm_id, owner_id, owner_active)
                 VALUES (?1, 'salesforce', '001' || ?1, '005A', 1)",
                [id],
            )
            .unwrap();
        }
    }
    (directory, ledger)
}

fn evaluate_with(
    ledger: &Ledger,
    health: &[PartnerHealth],
    config: &RulesConfig,
) -> Vec<Condition> {
    evaluate(
        ledger.connection(),
        config,
        &RuleInputs {
            as_of: day(AS_OF),
            health,
            leads: &[],
            configured: &[CrmSystem::Salesforce],
        },
    )
    .unwrap()
}

/// The rules that fire for one partner's facts.
fn check(change: impl FnOnce(&mut HealthFacts), expected: &[&str]) {
    let (_directory, ledger) = ledger();
    // Four ordinary partners beside it, so that "top partner" means something.
    let mut health: Vec<PartnerHealth> = (2..=5)
        .map(|id| partner(id, |f| f.referrals_last_365_days = 10))
        .collect();
    health.push(partner(1, change));
    let conditions = evaluate_with(&ledger, &health, &RulesConfig::default());
    let fired: Vec<&str> = conditions
        .iter()
        .filter(|c| c.partner_id == Some(1))
        .map(|c| c.rule)
        .collect();
    assert_eq!(fired, expected);
}

#[test]
fn each_rule_fires_on_its_facts_and_only_then() {
    check(|_| {}, &[]);
    check(|f| f.declining = true, &["declining"]);
    check(|f| f.silent = true, &["silent"]);
    check(
        |f| {
            f.silent = true;
            f.declining = true;
        },
        &["silent"],
    );
    check(|f| f.days_since_touch = Some(60), &["no_touch"]);
    check(
        |f| {
            f.days_since_touch = Some(60);
            f.referrals_last_365_days = 5;
        },
        &[],
    );
    check(|f| f.owned = Some(false), &["unowned"]);
    check(
        |f| {
            f.owned = Some(false);
            f.referrals_last_365_days = 0;
        },
        &[],
    );
    check(
        |f| f.first_referral = Some(day("2026-11-10")),
        &["new_partner"],
    );
    check(|f| f.first_referral = Some(day("2026-09-10")), &[]);
}

#[test]
fn tasks_go_to_the_partners_crm_record_and_owner_or_say_why_not() {
    let (_directory, ledger) = ledger();
    let health = [
        partner(1, |f| f.declining = true),
        partner(2, |f| f.owned = Some(false)),
        partner(10, |f| f.declining = true),
    ];
    let conditions = evaluate_with(&ledger, &health, &RulesConfig::default());
    let target = |partner: i64, rule: &str| {
        conditions
            .iter()
            .find(|c| c.partner_id == Some(partner) && c.rule == rule)
            .unwrap()
            .target
            .clone()
    };
    assert_eq!(
        target(1, "declining"),
        Ok(Target {
            system: CrmSystem::Salesforce,
            about_id: "0011".to_string(),
            owner_id: Some("005A".to_string()),
        })
    );
    assert_eq!(
        target(2, "unowned").unwrap().owner_id,
        None,
        "an unowned partner's task goes to the team queue"
    );
    let orphan = target(10, "declining").unwrap_err();
    assert!(orphan.contains("in no CRM"), "{orphan}");
}

#[test]
fn task_words_are_partner_level_and_never_ask_to_even_a_balance() {
    let (_directory, ledger) = ledger();
    let health = [
        partner(1, |f| {
            f.silent = true;
            f.days_since_last_referral = Some(75);
            f.sent_last_365_days = 0;
            f.received_last_365_days = 60;
        }),
        partner(2, |f| {
            f.declining = true;
            f.referrals_current_window = 1;
        }),
    ];
    let conditions = evaluate_with(&ledger, &health, &RulesConfig::default());
    assert_eq!(conditions.len(), 2);
    let silent = &conditions[1];
    assert_eq!(silent.rule, "silent");
    assert_eq!(
        silent.title,
        "Partner 1: no referral for 2 months or more (usually 4.2/month) — call your contact"
    );
    let declining = &conditions[0];
    assert!(
        declining
            .title
            .starts_with("Partner 2: 1 referral in the last 90 days vs 12.4 expected"),
        "{}",
        declining.title
    );
    for condition in &conditions {
        let words = format!("{} {}", condition.title, condition.description).to_lowercase();
        for forbidden in ["reciproc", "send them", "sent them", "balance", "2026-"] {
            assert!(!words.contains(forbidden), "{forbidden:?} in {words}");
        }
    }
}

#[test]
fn a_referral_out_without_an_outcome_is_followed_up_without_patient_details() {
    let (_directory, ledger) = ledger();
    let c = ledger.connection();
    let refer = |inquiry: &str, date: &str, disposition: &str| {
        c.execute(
            "INSERT INTO referral (source_system, inquiry_id, direction, partner_id, parent_inquiry_id,
                 inquiry_date, disposition, patient_token, zip3, first_import_run_id, last_import_run_id)
             VALUES ('ehr', ?1, 'out', 3, 'INQ-1', ?2, ?3, 'token-abc', '303', 1, 1)",
            params![inquiry, date, disposition],
        )
        .unwrap();
        c.last_insert_rowid()
    };
    let waiting = refer("INQ-1>partner 3", "2026-11-15", "pending");
    refer("INQ-2>partner 3", "2026-11-24", "pending"); // too recent
    refer("INQ-3>partner 3", "2026-11-10", "admitted"); // outcome known
    refer("INQ-4>partner 3", "2026-08-01", "pending"); // too old
    let conditions = evaluate_with(&ledger, &[], &RulesConfig::default());
    assert_eq!(conditions.len(), 1, "{conditions:?}");
    let follow_up = &conditions[0];
    assert_eq!(follow_up.rule, "placement_follow_up");
    assert_eq!(follow_up.subject, format!("ref{waiting}"));
    assert_eq!(follow_up.target.as_ref().unwrap().about_id, "0013");
    let words = format!("{} {}", follow_up.title, follow_up.description);
    assert!(words.contains(&format!("R{waiting}")));
    for patient_detail in ["token-abc", "303", "INQ-1", "2026-11-15"] {
        assert!(
            !words.contains(patient_detail),
            "{patient_detail} in {words}"
        );
    }
}

#[test]
fn disabled_rules_stay_silent() {
    let (_directory, ledger) = ledger();
    let mut config = RulesConfig::default();
    config.silent.enabled = false;
    let conditions = evaluate_with(&ledger, &[partner(1, |f| f.silent = true)], &config);
    assert!(conditions.is_empty());
}
