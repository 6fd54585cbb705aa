//! Routing on small ledgers built with SQL: what a director would see in the suggestions.
//!
//! Partners and deals are written one per line as `name; key=value; flag; …` (see [`partner`]
//! and [`deal`]), so that each case reads as a small table.

use std::collections::HashMap;

use super::*;
use crate::ledger::Ledger;

/// `name; key=value; flag; …` → the name and its settings.
fn fields(spec: &str) -> (&str, HashMap<&str, &str>) {
    let mut parts = spec.split(';').map(str::trim);
    let name = parts.next().unwrap_or_default();
    let settings = parts
        .filter(|part| !part.is_empty())
        .map(|part| part.split_once('=').unwrap_or((part, "")))
        .collect();
    (name, settings)
}

fn list(text: Option<&&str>) -> Vec<String> {
    text.map_or(Vec::new(), |text| {
        text.split(',').map(|s| s.trim().to_string()).collect()
    })
}

fn flag(text: Option<&&str>) -> Option<bool> {
    text.map(|text| match *text {
        "true" => true,
        "false" => false,
        other => panic!("{other:?} is not true or false"),
    })
}

/// A partner from `name; zip3=303; payers=Aetna,Self-pay; levels=3.5,3.7; accepting=false;
/// preferred=true; ehr-only; merged`. With a profile (the default) its home record is
/// `salesforce:001<id>`; `ehr-only` partners have no profile and are `ehr:<name>`; `merged`
/// ones are merged into the first partner of the ledger.
fn add_partner(connection: &Connection, spec: &str) {
    let (name, settings) = fields(spec);
    let normalized = crate::partners::normalize_name(name);
    connection
        .execute(
            "INSERT INTO partner (name, normalized_name, origin, created_at, updated_at)
             VALUES (?1, ?2, 'crm', 't', 't')",
            params![name, normalized],
        )
        .unwrap();
    let id = connection.last_insert_rowid();
    let profile = !settings.contains_key("ehr-only");
    let (system, key) = match profile {
        true => ("salesforce", format!("001{id}")),
        false => ("ehr", name.to_string()),
    };
    connection
        .execute(
            "INSERT INTO partner_source_record (partner_id, system, external_key, raw_name,
                 normalized_name, match_method, confidence, first_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'new', 1.0, 't')",
            params![id, system, key, name, normalized],
        )
        .unwrap();
    if profile {
        connection
            .execute(
                "INSERT INTO partner_profile (partner_id, home_system, home_crm_id, zip3, payers,
                     levels_of_care, accepting_referrals, preferred)
                 VALUES (?1, 'salesforce', ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    key,
                    settings.get("zip3"),
                    serde_json::to_string(&list(settings.get("payers"))).unwrap(),
                    serde_json::to_string(&list(settings.get("levels"))).unwrap(),
                    flag(settings.get("accepting")),
                    flag(settings.get("preferred")),
                ],
            )
            .unwrap();
    }
    if settings.contains_key("merged") {
        connection
            .execute(
                "UPDATE partner SET merged_into = (SELECT MIN(id) FROM partner) WHERE id = ?1",
                [id],
            )
            .unwrap();
    }
}

fn ledger_with(partners: &[&str]) -> (tempfile::TempDir, Ledger) {
    let (directory, ledger) = crate::ledger::scratch();
    for spec in partners {
        add_partner(ledger.connection(), spec);
    }
    (directory, ledger)
}

/// payer, level of care, ZIP3; "" is absent.
fn request(payer: &str, level_of_care: &str, zip3: &str) -> RouteRequest {
    let given = |text: &str| (!text.is_empty()).then(|| text.to_string());
    RouteRequest {
        payer: given(payer),
        level_of_care: given(level_of_care),
        zip3: given(zip3),
    }
}

fn overriding(record: &str, change: impl FnOnce(&mut PartnerOverride)) -> PartnerOverride {
    let mut entry = PartnerOverride {
        record: record.to_string(),
        ..PartnerOverride::default()
    };
    change(&mut entry);
    entry
}

enum Expect {
    /// The suggested partners' names, best first.
    Names(&'static [&'static str]),
    /// No partner fits, for this reason.
    NoneBecause(&'static str),
}

/// Routes `request` over `partners` (and `overrides`) and compares what a director would see.
fn check(
    case: &str,
    partners: &[&str],
    overrides: Vec<PartnerOverride>,
    request: RouteRequest,
    expect: Expect,
) {
    let (_directory, ledger) = ledger_with(partners);
    let config = RoutingConfig {
        partner: overrides,
        ..RoutingConfig::default()
    };
    let answer = route(ledger.connection(), &config, &request)
        .unwrap_or_else(|error| panic!("{case}: {error}"));
    let names: Vec<&str> = answer.options.iter().map(|o| o.name.as_str()).collect();
    match expect {
        Expect::Names(expected) => {
            assert_eq!(names, expected, "{case}");
            assert_eq!(answer.none_reason, None, "{case}");
        }
        Expect::NoneBecause(expected) => {
            assert!(names.is_empty(), "{case}: expected none, got {names:?}");
            assert_eq!(answer.none_reason.as_deref(), Some(expected), "{case}");
        }
    }
}

#[test]
fn partners_are_ranked_by_fit_to_the_patient() {
    use Expect::*;
    check(
        "in network beats a closer partner out of network, which is excluded",
        &[
            "Close Cigna; zip3=303; payers=Cigna",
            "Far Aetna; zip3=999; payers=Aetna",
        ],
        vec![],
        request("aetna", "", "303"),
        Names(&["Far Aetna"]),
    );
    check(
        "payers compare without case, spacing or punctuation",
        &[
            "Cash Clinic; payers=Self-pay",
            "Medicaid Clinic; payers=Georgia Medicaid",
        ],
        vec![],
        request("SELF PAY", "", ""),
        Names(&["Cash Clinic"]),
    );
    check(
        "the requested level of care is required",
        &["Residential; levels=3.5", "Detox; levels=3.7,3.7-WM"],
        vec![],
        request("", "ASAM 3.7 WM", ""),
        Names(&["Detox"]),
    );
    check(
        "a partner not accepting referrals is excluded, however well it fits",
        &[
            "Full House; zip3=303; accepting=false; preferred=true",
            "Open Door; zip3=999",
        ],
        vec![],
        request("", "", "303"),
        Names(&["Open Door"]),
    );
    check(
        "same ZIP3 beats same region beats elsewhere, whatever the names",
        &["Alpha; zip3=310", "Yew; zip3=305", "Zeta; zip3=303"],
        vec![],
        request("", "", "303"),
        Names(&["Zeta", "Yew", "Alpha"]),
    );
    check(
        "elsewhere and unknown (or withheld) tie, then the name decides",
        &["Zulu; zip3=310", "Bravo", "Withheld; zip3=000"],
        vec![],
        request("", "", "303"),
        Names(&["Bravo", "Withheld", "Zulu"]),
    );
    check(
        "preferred breaks a tie but never beats geography",
        &[
            "Able; zip3=303",
            "Baker; zip3=303; preferred=true",
            "Charlie; zip3=999; preferred=true",
        ],
        vec![],
        request("", "", "303"),
        Names(&["Baker", "Able", "Charlie"]),
    );
    check(
        "accepting known to be true beats unknown",
        &["Able; zip3=303", "Baker; zip3=303; accepting=true"],
        vec![],
        request("", "", "303"),
        Names(&["Baker", "Able"]),
    );
    check(
        "a config override marks a partner preferred",
        &["Able; zip3=303", "Baker; zip3=303"],
        vec![overriding("salesforce:0012", |o| o.preferred = Some(true))],
        request("", "", "303"),
        Names(&["Baker", "Able"]),
    );
    check(
        "a config override fills in the payers the CRM lacks",
        &["Able", "Baker; payers=Cigna"],
        vec![overriding("salesforce:0011", |o| {
            o.payers = Some(vec!["Aetna".into()])
        })],
        request("Aetna", "", ""),
        Names(&["Able"]),
    );
    check(
        "a config override describes a partner known only from the EHR, by a normalized name",
        &["Harbor Detox; ehr-only", "Residential; levels=3.5"],
        vec![overriding("ehr:HARBOR DETOX, Inc.", |o| {
            o.levels_of_care = Some(vec!["ASAM 3.7".into()])
        })],
        request("", "3.7", ""),
        Names(&["Harbor Detox"]),
    );
    check(
        "a config override can stop referrals to a partner",
        &["Able; zip3=303; accepting=true", "Baker; zip3=999"],
        vec![overriding("salesforce:0011", |o| {
            o.accepting_referrals = Some(false)
        })],
        request("", "", "303"),
        Names(&["Baker"]),
    );
    check(
        "an override for a record the ledger does not hold changes nothing",
        &["Able", "Baker"],
        vec![overriding("hubspot:404", |o| o.preferred = Some(true))],
        request("", "", "303"),
        Names(&["Able", "Baker"]),
    );
    check(
        "an override follows a merged partner to the one it was merged into",
        &[
            "Mercy Hospital; zip3=999",
            "Baker; zip3=999",
            "Mercy Hosp ED; merged",
        ],
        vec![overriding("salesforce:0013", |o| {
            o.zip3 = Some("303".into())
        })],
        request("", "", "303"),
        Names(&["Mercy Hospital", "Baker"]),
    );
    check(
        "merged partners are never suggested",
        &["Survivor; levels=3.5", "Absorbed; levels=3.5; merged"],
        vec![],
        request("", "3.5", ""),
        Names(&["Survivor"]),
    );
    check(
        "at most three options",
        &[
            "A; levels=OTP",
            "B; levels=OTP",
            "C; levels=OTP",
            "D; levels=OTP",
            "E; levels=OTP",
        ],
        vec![],
        request("", "otp", ""),
        Names(&["A", "B", "C"]),
    );
}

#[test]
fn when_nothing_fits_the_reason_names_the_eliminating_requirement() {
    use Expect::*;
    check(
        "no one offers the level",
        &["Residential; levels=3.5; payers=Aetna"],
        vec![],
        request("Aetna", "3.7", "303"),
        NoneBecause("no partner offers ASAM 3.7"),
    );
    check(
        "no one takes the payer",
        &["Residential; levels=3.7; payers=Cigna"],
        vec![],
        request("Aetna", "3.7", ""),
        NoneBecause("no partner is in network with Aetna"),
    );
    check(
        "no one accepts referrals",
        &["Full; accepting=false"],
        vec![],
        request("", "", "303"),
        NoneBecause("no partner is accepting referrals"),
    );
    check(
        "level and payer exist, but not together",
        &[
            "Detox; levels=3.7; payers=Cigna",
            "Residential; levels=3.5; payers=Aetna",
        ],
        vec![],
        request("Aetna", "3.7", ""),
        NoneBecause("no partner offers ASAM 3.7 in network with Aetna"),
    );
    check(
        "the one partner offering the level is not accepting",
        &[
            "Detox; levels=3.7; accepting=false",
            "Residential; levels=3.5",
        ],
        vec![],
        request("", "3.7", ""),
        NoneBecause("no accepting partner offers ASAM 3.7"),
    );
    check(
        "every pair of requirements is met somewhere, all three nowhere",
        &[
            "Full; levels=3.7; payers=Aetna; accepting=false",
            "Detox; levels=3.7; payers=Cigna",
            "Residential; levels=3.5; payers=Aetna",
        ],
        vec![],
        request("Aetna", "3.7", ""),
        NoneBecause("no accepting partner offers ASAM 3.7 in network with Aetna"),
    );
    check(
        "no partner described at all",
        &["Known Only From The EHR; ehr-only"],
        vec![],
        request("Aetna", "", ""),
        NoneBecause(
            "no partner is described yet: sync a CRM, or describe partners in [[routing.partner]]",
        ),
    );
}

#[test]
fn reasons_read_as_a_person_would_and_task_reasons_carry_no_patient_value() {
    let (_directory, ledger) = ledger_with(&[
        "Peachtree Detox; zip3=303; payers=Aetna,Cigna; levels=3.5,3.7; accepting=true; preferred=true",
        "Region; zip3=305; payers=Aetna; levels=3.5",
        "Far; zip3=310; payers=Aetna; levels=3.5",
    ]);
    let config = RoutingConfig::default();
    let answer = route(
        ledger.connection(),
        &config,
        &request("aetna", "ASAM 3.5", "303"),
    )
    .unwrap();
    let best = &answer.options[0];
    assert_eq!(
        (
            best.name.as_str(),
            best.home_system.as_deref(),
            best.home_crm_id.as_deref()
        ),
        ("Peachtree Detox", Some("salesforce"), Some("0011"))
    );
    assert_eq!(
        best.fit.reasons(),
        [
            "in network with Aetna",
            "offers ASAM 3.5",
            "same ZIP3 303",
            "preferred partner",
            "accepting referrals"
        ]
    );
    assert_eq!(
        best.fit.task_reasons(),
        [
            "in network for the lead's payer",
            "offers the requested level of care",
            "same area",
            "preferred partner",
            "accepting referrals"
        ]
    );
    assert_eq!(
        answer.options[1].fit.reasons(),
        [
            "in network with Aetna",
            "offers ASAM 3.5",
            "same region (ZIP3 305)"
        ]
    );
    assert_eq!(
        answer.options[2].fit.task_reasons(),
        [
            "in network for the lead's payer",
            "offers the requested level of care"
        ]
    );

    // No payer name, level code or ZIP3 in any task text, whatever was asked.
    let patient_values = [
        "aetna", "cigna", "humana", "3.5", "3.7", "303", "305", "310", "30",
    ];
    for request in [
        request("Aetna", "3.5", "303"),
        request("Cigna", "3.7", "305"),
        request("Aetna", "3.7", "310"),
        request("Humana", "", ""),
        request("", "4", "303"),
    ] {
        let answer = route(ledger.connection(), &config, &request).unwrap();
        let mut texts: Vec<String> = answer
            .options
            .iter()
            .flat_map(|o| o.fit.task_reasons())
            .collect();
        texts.extend(answer.task_none_reason.clone());
        assert!(!texts.is_empty(), "{request:?}");
        for text in texts {
            for value in patient_values {
                assert!(
                    !text.to_lowercase().contains(value),
                    "{text:?} carries {value:?}"
                );
            }
        }
    }
}

/// 50 inbound and 50 outbound referrals, in the EHR table and as CRM deals, for `partner_id`.
fn add_referrals(connection: &Connection, partner_id: i64) {
    for n in 0..50 {
        for direction in ["in", "out"] {
            connection
                .execute(
                    "INSERT INTO referral (source_system, inquiry_id, direction, partner_id,
                         inquiry_date, disposition, first_import_run_id, last_import_run_id)
                     VALUES ('ehr', ?1, ?2, ?3, '2026-03-01', 'admitted', 1, 1)",
                    params![format!("R{partner_id}-{n}"), direction, partner_id],
                )
                .unwrap();
            connection
                .execute(
                    "INSERT INTO crm_referral (system, crm_id, partner_id, inquiry_id, direction,
                         stage, disposition, inquiry_date)
                     VALUES ('salesforce', ?1, ?2, ?3, ?4, 'Admitted', 'admitted', '2026-03-01')",
                    params![
                        format!("006{partner_id}-{n}-{direction}"),
                        partner_id,
                        format!("C{partner_id}-{n}-{direction}"),
                        direction
                    ],
                )
                .unwrap();
        }
    }
}

#[test]
fn reciprocity_never_wins() {
    let (_directory, ledger) = ledger_with(&[
        "Near; zip3=303; payers=Aetna; levels=3.5",
        "Able; zip3=310; payers=Aetna; levels=3.5",
        "Baker; zip3=310; payers=Aetna; levels=3.5",
    ]);
    let c = ledger.connection();
    let config = RoutingConfig::default();
    let asked = request("Aetna", "3.5", "303");
    let names = |answer: &RouteAnswer| {
        answer
            .options
            .iter()
            .map(|o| o.name.clone())
            .collect::<Vec<_>>()
    };
    let before = route(c, &config, &asked).unwrap();
    assert_eq!(names(&before), ["Near", "Able", "Baker"]);

    // Baker fits worse than Near and ties with Able; a busy two-way relationship changes nothing.
    add_referrals(c, 3);
    let after = route(c, &config, &asked).unwrap();
    assert_eq!(after, before);

    // And route never reads a referral table: with them gone, the answer is the same.
    c.execute_batch("DROP VIEW unified_referral; DROP TABLE crm_referral; DROP TABLE referral;")
        .unwrap();
    assert_eq!(route(c, &config, &asked).unwrap(), before);
}

#[test]
fn requests_are_checked_before_the_ledger_is_read() {
    let (_directory, ledger) = ledger_with(&["Able"]);
    let config = RoutingConfig::default();
    let error = |r: RouteRequest| route(ledger.connection(), &config, &r).unwrap_err();
    assert!(matches!(
        error(request("", "3.9", "")),
        RoutingError::UnknownLevelOfCare
    ));
    assert!(matches!(
        error(request("", "", "30")),
        RoutingError::InvalidZip3
    ));
    assert!(matches!(
        error(request("", "", "30a")),
        RoutingError::InvalidZip3
    ));
    assert!(matches!(
        error(request(" ", "", "")),
        RoutingError::NoCriteria
    ));
    assert!(error(request("", "", "3033")).is_input());
}

/// A CRM deal from `crm_id; system=hubspot; direction=out; disposition=admitted; reason=…;
/// date=…; payer=…; level=…; inquiry=…; parent=…; deleted; ehr_payer=…; ehr_level=…;
/// ehr_zip3=…`. Defaults: a Salesforce inbound lead, not admitted for capacity, on 2026-03-15,
/// owned by 005R; any `ehr_*` links it to an EHR referral holding those values.
fn add_deal(connection: &Connection, spec: &str) {
    let (crm_id, settings) = fields(spec);
    let get = |key: &str| settings.get(key).copied().filter(|value| !value.is_empty());
    let date = get("date").unwrap_or("2026-03-15");
    let inquiry_id = get("inquiry");
    let referral_id = ["ehr_payer", "ehr_level", "ehr_zip3"]
        .iter()
        .any(|key| settings.contains_key(key))
        .then(|| {
            connection
                .execute(
                    "INSERT INTO referral (source_system, inquiry_id, direction, inquiry_date,
                         payer, level_of_care_scheme, level_of_care_code, zip3, disposition,
                         first_import_run_id, last_import_run_id)
                     VALUES ('ehr', ?1, 'in', ?2, ?3, 'asam3', ?4, ?5, 'not_admitted', 1, 1)",
                    params![
                        inquiry_id.unwrap_or(crm_id),
                        date,
                        get("ehr_payer"),
                        get("ehr_level"),
                        get("ehr_zip3")
                    ],
                )
                .unwrap();
            connection.last_insert_rowid()
        });
    // `reason=` (empty) means none.
    let reason = match settings.contains_key("reason") {
        true => get("reason"),
        false => Some("capacity"),
    };
    connection
        .execute(
            "INSERT INTO crm_referral (system, crm_id, partner_id, referral_id, inquiry_id,
                 direction, parent_inquiry_id, stage, disposition, disposition_reason, payer,
                 level_of_care, inquiry_date, owner_id, deleted)
             VALUES (?1, ?2, ?13, ?3, ?4, ?5, ?6, 'Closed', ?7, ?8, ?9, ?10, ?11, '005R', ?12)",
            params![
                get("system").unwrap_or("salesforce"),
                crm_id,
                referral_id,
                inquiry_id,
                get("direction").unwrap_or("in"),
                get("parent"),
                get("disposition").unwrap_or("not_admitted"),
                reason,
                get("payer"),
                get("level"),
                date,
                settings.contains_key("deleted"),
                // The partner that referred the lead (`from=`), partner 1 unless said.
                get("from").unwrap_or("1").parse::<i64>().unwrap(),
            ],
        )
        .unwrap();
}

#[test]
fn lead_suggestions_pick_non_converting_referable_leads_in_the_window_not_referred_out() {
    let (_directory, ledger) = ledger_with(&[
        "Near; zip3=303; payers=Aetna,Cigna; levels=3.5,3.7",
        "Far; zip3=310; payers=Aetna; levels=3.5",
        "Referrer; zip3=999",
    ]);
    let c = ledger.connection();
    // Near referred one lead itself: it is never offered back for that one.
    add_deal(
        c,
        "006-own; reason=out_of_network; date=2026-03-12; payer=Aetna; level=ASAM 3.5; inquiry=I7; from=1",
    );
    for deal in [
        "006-oon; reason=out_of_network; date=2026-03-10; payer=Aetna; level=ASAM 3.5; inquiry=I1; ehr_zip3=303",
        "006-first-day; date=2026-03-01; payer=Aetna",
        "006-too-old; date=2026-02-28; payer=Aetna",
        "006-future; date=2026-04-01; payer=Aetna",
        "006-declined; reason=declined; payer=Aetna",
        "006-admitted; disposition=admitted; reason=; payer=Aetna",
        "006-pending; disposition=pending; reason=; payer=Aetna",
        "006-deleted; deleted; payer=Aetna",
        "006-sent-out-in-crm; payer=Aetna; inquiry=I5",
        "006-I5-OUT; direction=out; disposition=pending; reason=; inquiry=I5-OUT; parent=I5",
        "006-sent-out-in-ehr; reason=geography; payer=Aetna; inquiry=I6",
        "006-outbound; direction=out; payer=Aetna",
        "9001; system=hubspot; reason=level_of_care_mismatch; date=2026-03-10; inquiry=I9; ehr_payer=Cigna; ehr_level=3.7; ehr_zip3=305",
        "006-unknown; date=2026-03-20",
    ] {
        add_deal(c, &format!("{deal}; from=3"));
    }
    // The EHR says I6 was referred out.
    c.execute(
        "INSERT INTO referral (source_system, inquiry_id, direction, parent_inquiry_id,
             inquiry_date, disposition, first_import_run_id, last_import_run_id)
         VALUES ('ehr', 'I6', 'out', 'I6', '2026-03-16', 'pending', 1, 1)",
        [],
    )
    .unwrap();

    let as_of = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
    let config = RoutingConfig::default();
    let suggestions = lead_suggestions(c, &config, as_of).unwrap();
    let leads: Vec<String> = suggestions
        .iter()
        .map(|s| format!("{} {} {}", s.inquiry_date, s.lead_crm_id, s.reason))
        .collect();
    assert_eq!(
        leads,
        [
            "2026-03-01 006-first-day capacity",
            "2026-03-10 9001 level_of_care_mismatch",
            "2026-03-10 006-oon out_of_network",
            "2026-03-12 006-own out_of_network",
            "2026-03-20 006-unknown capacity",
        ]
    );
    let by_id = |id: &str| suggestions.iter().find(|s| s.lead_crm_id == id).unwrap();
    let names = |id: &str| {
        by_id(id)
            .answer
            .options
            .iter()
            .map(|o| o.name.clone())
            .collect::<Vec<_>>()
    };

    // The deal's payer and level, the ZIP3 from the linked EHR referral.
    assert_eq!(names("006-oon"), ["Near", "Far"]);
    assert_eq!(
        by_id("006-oon").answer.options[0].fit.geography,
        Geography::SameZip3
    );
    assert_eq!(by_id("006-oon").owner_id.as_deref(), Some("005R"));
    assert_eq!(
        names("006-own"),
        ["Far"],
        "the referrer is not offered back"
    );
    // A deal without payer or level takes them from the linked EHR referral.
    let hubspot = by_id("9001");
    assert_eq!(hubspot.system, CrmSystem::Hubspot);
    assert_eq!(names("9001"), ["Near"]);
    assert_eq!(
        hubspot.answer.options[0].fit.reasons(),
        [
            "in network with Cigna",
            "offers ASAM 3.7",
            "same region (ZIP3 303)"
        ]
    );
    // Nothing to match on: no options, and a sentence that says so.
    assert_eq!(
        by_id("006-unknown").answer.none_reason.as_deref(),
        Some("the lead names no payer, level of care or ZIP3 to match partners on")
    );

    let narrower = RoutingConfig {
        reasons: vec!["out_of_network".to_string()],
        lookback_days: 21,
        ..RoutingConfig::default()
    };
    let ids: Vec<String> = lead_suggestions(c, &narrower, as_of)
        .unwrap()
        .into_iter()
        .map(|s| s.lead_crm_id)
        .collect();
    assert_eq!(ids, ["006-oon", "006-own"]);

    let disabled = RoutingConfig {
        enabled: false,
        ..RoutingConfig::default()
    };
    assert!(lead_suggestions(c, &disabled, as_of).unwrap().is_empty());
}

#[test]
fn config_problems_name_each_bad_key() {
    let config = RoutingConfig {
        enabled: true,
        lookback_days: 0,
        reasons: vec!["Out of network".into(), "weather".into(), "capacity".into()],
        partner: vec![
            overriding("salesforce:001A", |o| o.zip3 = Some("3030".into())),
            overriding("SALESFORCE: 001A", |o| {
                o.levels_of_care = Some(vec!["3.9".into()])
            }),
            overriding("zoho:1", |o| o.payers = Some(vec![" ".into()])),
            overriding("hubspot:", |o| o.preferred = Some(true)),
            overriding("ehr:Mercy", |_| {}),
        ],
    };
    let found: Vec<String> = config
        .problems()
        .into_iter()
        .map(|(path, message)| format!("{}: {message}", path.join(".")))
        .collect();
    let expected = [
        "lookback_days: must be at least 1",
        "reasons.0: \"Out of network\" is not a reason code: write \"out_of_network\"",
        "reasons.1: \"weather\" is not a disposition reason: use one of out_of_network, level_of_care_mismatch, geography, capacity, clinical_exclusion, declined, no_contact, other",
        "partner.0.zip3: must be exactly three digits (e.g. \"303\")",
        "partner.1.record: the same record is already described by routing.partner[0]",
        "partner.1.levels_of_care.0: \"3.9\" is not an ASAM level of care (e.g. 2.1, 3.5, 3.7-WM, OTP)",
        "partner.2.record: \"zoho\" is not a system: use one of salesforce, hubspot, ehr",
        "partner.2.payers.0: a payer name cannot be empty",
        "partner.3.record: the external key after the colon is empty",
        "partner.4: says nothing: set preferred, accepting_referrals, payers, levels_of_care or zip3",
    ];
    assert_eq!(found, expected);
    assert!(RoutingConfig::default().problems().is_empty());
}
