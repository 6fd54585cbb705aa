//! Routing on small ledgers built with SQL: what a director would see in the suggestions.

use std::time::Duration;

use super::*;
use crate::ledger::Ledger;

/// A partner to put in the ledger. With `profile`, it has a `partner_profile` row (home record
/// `salesforce:001<id>`); without, it is known only from the EHR (`ehr:<name>`).
#[derive(Clone, Copy)]
struct P {
    name: &'static str,
    zip3: Option<&'static str>,
    payers: &'static [&'static str],
    levels: &'static [&'static str],
    accepting: Option<bool>,
    preferred: Option<bool>,
    profile: bool,
    /// Merged into the first partner of the case.
    merged: bool,
}

const P0: P = P {
    name: "",
    zip3: None,
    payers: &[],
    levels: &[],
    accepting: None,
    preferred: None,
    profile: true,
    merged: false,
};

fn ledger_with(partners: &[P]) -> (tempfile::TempDir, Ledger) {
    let directory = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&directory.path().join("ledger.db"), Duration::from_secs(5)).unwrap();
    let c = ledger.connection();
    for partner in partners {
        c.execute(
            "INSERT INTO partner (name, normalized_name, origin, created_at, updated_at)
             VALUES (?1, ?2, 'crm', 't', 't')",
            params![partner.name, crate::partners::normalize_name(partner.name)],
        )
        .unwrap();
        let id = c.last_insert_rowid();
        let (system, key) = if partner.profile {
            ("salesforce", format!("001{id}"))
        } else {
            ("ehr", partner.name.to_string())
        };
        c.execute(
            "INSERT INTO partner_source_record (partner_id, system, external_key, raw_name,
                 normalized_name, match_method, confidence, first_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'new', 1.0, 't')",
            params![
                id,
                system,
                key,
                partner.name,
                crate::partners::normalize_name(partner.name)
            ],
        )
        .unwrap();
        if partner.profile {
            c.execute(
                "INSERT INTO partner_profile (partner_id, home_system, home_crm_id, zip3, payers,
                     levels_of_care, accepting_referrals, preferred)
                 VALUES (?1, 'salesforce', ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    key,
                    partner.zip3,
                    serde_json::to_string(partner.payers).unwrap(),
                    serde_json::to_string(partner.levels).unwrap(),
                    partner.accepting,
                    partner.preferred
                ],
            )
            .unwrap();
        }
        if partner.merged {
            c.execute(
                "UPDATE partner SET merged_into = (SELECT MIN(id) FROM partner) WHERE id = ?1",
                [id],
            )
            .unwrap();
        }
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
    partners: &[P],
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
            P {
                name: "Close Cigna",
                zip3: Some("303"),
                payers: &["Cigna"],
                ..P0
            },
            P {
                name: "Far Aetna",
                zip3: Some("999"),
                payers: &["Aetna"],
                ..P0
            },
        ],
        vec![],
        request("aetna", "", "303"),
        Names(&["Far Aetna"]),
    );
    check(
        "payers compare without case, spacing or punctuation",
        &[
            P {
                name: "Cash Clinic",
                payers: &["Self-pay"],
                ..P0
            },
            P {
                name: "Medicaid Clinic",
                payers: &["Georgia Medicaid"],
                ..P0
            },
        ],
        vec![],
        request("SELF PAY", "", ""),
        Names(&["Cash Clinic"]),
    );
    check(
        "the requested level of care is required",
        &[
            P {
                name: "Residential",
                levels: &["3.5"],
                ..P0
            },
            P {
                name: "Detox",
                levels: &["3.7", "3.7-WM"],
                ..P0
            },
        ],
        vec![],
        request("", "ASAM 3.7 WM", ""),
        Names(&["Detox"]),
    );
    check(
        "a partner not accepting referrals is excluded, however well it fits",
        &[
            P {
                name: "Full House",
                zip3: Some("303"),
                accepting: Some(false),
                preferred: Some(true),
                ..P0
            },
            P {
                name: "Open Door",
                zip3: Some("999"),
                ..P0
            },
        ],
        vec![],
        request("", "", "303"),
        Names(&["Open Door"]),
    );
    check(
        "same ZIP3 beats same region beats elsewhere, whatever the names",
        &[
            P {
                name: "Alpha",
                zip3: Some("310"),
                ..P0
            },
            P {
                name: "Yew",
                zip3: Some("305"),
                ..P0
            },
            P {
                name: "Zeta",
                zip3: Some("303"),
                ..P0
            },
        ],
        vec![],
        request("", "", "303"),
        Names(&["Zeta", "Yew", "Alpha"]),
    );
    check(
        "elsewhere and unknown tie, then the name decides",
        &[
            P {
                name: "Zulu",
                zip3: Some("310"),
                ..P0
            },
            P {
                name: "Bravo",
                zip3: None,
                ..P0
            },
            P {
                name: "Withheld",
                zip3: Some("000"),
                ..P0
            },
        ],
        vec![],
        request("", "", "303"),
        Names(&["Bravo", "Withheld", "Zulu"]),
    );
    check(
        "preferred breaks a tie but never beats geography",
        &[
            P {
                name: "Able",
                zip3: Some("303"),
                ..P0
            },
            P {
                name: "Baker",
                zip3: Some("303"),
                preferred: Some(true),
                ..P0
            },
            P {
                name: "Charlie",
                zip3: Some("999"),
                preferred: Some(true),
                ..P0
            },
        ],
        vec![],
        request("", "", "303"),
        Names(&["Baker", "Able", "Charlie"]),
    );
    check(
        "accepting known to be true beats unknown",
        &[
            P {
                name: "Able",
                zip3: Some("303"),
                accepting: None,
                ..P0
            },
            P {
                name: "Baker",
                zip3: Some("303"),
                accepting: Some(true),
                ..P0
            },
        ],
        vec![],
        request("", "", "303"),
        Names(&["Baker", "Able"]),
    );
    check(
        "a config override marks a partner preferred",
        &[
            P {
                name: "Able",
                zip3: Some("303"),
                ..P0
            },
            P {
                name: "Baker",
                zip3: Some("303"),
                ..P0
            },
        ],
        vec![overriding("salesforce:0012", |o| o.preferred = Some(true))],
        request("", "", "303"),
        Names(&["Baker", "Able"]),
    );
    check(
        "a config override fills in the payers the CRM lacks",
        &[
            P {
                name: "Able",
                payers: &[],
                ..P0
            },
            P {
                name: "Baker",
                payers: &["Cigna"],
                ..P0
            },
        ],
        vec![overriding("salesforce:0011", |o| {
            o.payers = Some(vec!["Aetna".into()])
        })],
        request("Aetna", "", ""),
        Names(&["Able"]),
    );
    check(
        "a config override describes a partner known only from the EHR, by a normalized name",
        &[
            P {
                name: "Harbor Detox",
                profile: false,
                ..P0
            },
            P {
                name: "Residential",
                levels: &["3.5"],
                ..P0
            },
        ],
        vec![overriding("ehr:HARBOR DETOX, Inc.", |o| {
            o.levels_of_care = Some(vec!["ASAM 3.7".into()]);
        })],
        request("", "3.7", ""),
        Names(&["Harbor Detox"]),
    );
    check(
        "a config override can stop referrals to a partner",
        &[
            P {
                name: "Able",
                zip3: Some("303"),
                accepting: Some(true),
                ..P0
            },
            P {
                name: "Baker",
                zip3: Some("999"),
                ..P0
            },
        ],
        vec![overriding("salesforce:0011", |o| {
            o.accepting_referrals = Some(false)
        })],
        request("", "", "303"),
        Names(&["Baker"]),
    );
    check(
        "an override for a record the ledger does not hold changes nothing",
        &[
            P { name: "Able", ..P0 },
            P {
                name: "Baker",
                ..P0
            },
        ],
        vec![overriding("hubspot:404", |o| o.preferred = Some(true))],
        request("", "", "303"),
        Names(&["Able", "Baker"]),
    );
    check(
        "an override follows a merged partner to the one it was merged into",
        &[
            P {
                name: "Mercy Hospital",
                zip3: Some("999"),
                ..P0
            },
            P {
                name: "Baker",
                zip3: Some("999"),
                ..P0
            },
            P {
                name: "Mercy Hosp ED",
                merged: true,
                ..P0
            },
        ],
        vec![overriding("salesforce:0013", |o| {
            o.zip3 = Some("303".into())
        })],
        request("", "", "303"),
        Names(&["Mercy Hospital", "Baker"]),
    );
    check(
        "merged partners are never suggested",
        &[
            P {
                name: "Survivor",
                levels: &["3.5"],
                ..P0
            },
            P {
                name: "Absorbed",
                levels: &["3.5"],
                merged: true,
                ..P0
            },
        ],
        vec![],
        request("", "3.5", ""),
        Names(&["Survivor"]),
    );
    check(
        "at most three options",
        &[
            P {
                name: "A",
                levels: &["OTP"],
                ..P0
            },
            P {
                name: "B",
                levels: &["OTP"],
                ..P0
            },
            P {
                name: "C",
                levels: &["OTP"],
                ..P0
            },
            P {
                name: "D",
                levels: &["OTP"],
                ..P0
            },
            P {
                name: "E",
                levels: &["OTP"],
                ..P0
            },
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
        &[P {
            name: "Residential",
            levels: &["3.5"],
            payers: &["Aetna"],
            ..P0
        }],
        vec![],
        request("Aetna", "3.7", "303"),
        NoneBecause("no partner offers ASAM 3.7"),
    );
    check(
        "no one takes the payer",
        &[P {
            name: "Residential",
            levels: &["3.7"],
            payers: &["Cigna"],
            ..P0
        }],
        vec![],
        request("Aetna", "3.7", ""),
        NoneBecause("no partner is in network with Aetna"),
    );
    check(
        "no one accepts referrals",
        &[P {
            name: "Full",
            accepting: Some(false),
            ..P0
        }],
        vec![],
        request("", "", "303"),
        NoneBecause("no partner is accepting referrals"),
    );
    check(
        "level and payer exist, but not together",
        &[
            P {
                name: "Detox",
                levels: &["3.7"],
                payers: &["Cigna"],
                ..P0
            },
            P {
                name: "Residential",
                levels: &["3.5"],
                payers: &["Aetna"],
                ..P0
            },
        ],
        vec![],
        request("Aetna", "3.7", ""),
        NoneBecause("no partner offers ASAM 3.7 in network with Aetna"),
    );
    check(
        "the one partner offering the level is not accepting",
        &[
            P {
                name: "Detox",
                levels: &["3.7"],
                accepting: Some(false),
                ..P0
            },
            P {
                name: "Residential",
                levels: &["3.5"],
                ..P0
            },
        ],
        vec![],
        request("", "3.7", ""),
        NoneBecause("no accepting partner offers ASAM 3.7"),
    );
    check(
        "every pair of requirements is met somewhere, all three nowhere",
        &[
            P {
                name: "Full",
                levels: &["3.7"],
                payers: &["Aetna"],
                accepting: Some(false),
                ..P0
            },
            P {
                name: "Detox",
                levels: &["3.7"],
                payers: &["Cigna"],
                ..P0
            },
            P {
                name: "Residential",
                levels: &["3.5"],
                payers: &["Aetna"],
                ..P0
            },
        ],
        vec![],
        request("Aetna", "3.7", ""),
        NoneBecause("no accepting partner offers ASAM 3.7 in network with Aetna"),
    );
    check(
        "no partner described at all",
        &[P {
            name: "Known Only From The EHR",
            profile: false,
            ..P0
        }],
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
        P {
            name: "Peachtree Detox",
            zip3: Some("303"),
            payers: &["Aetna", "Cigna"],
            levels: &["3.5", "3.7"],
            accepting: Some(true),
            preferred: Some(true),
            ..P0
        },
        P {
            name: "Region",
            zip3: Some("305"),
            payers: &["Aetna"],
            levels: &["3.5"],
            ..P0
        },
        P {
            name: "Far",
            zip3: Some("310"),
            payers: &["Aetna"],
            levels: &["3.5"],
            ..P0
        },
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
    let patient_values = ["aetna", "cigna", "3.5", "3.7", "303", "305", "310", "30"];
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
        P {
            name: "Near",
            zip3: Some("303"),
            payers: &["Aetna"],
            levels: &["3.5"],
            ..P0
        },
        P {
            name: "Able",
            zip3: Some("310"),
            payers: &["Aetna"],
            levels: &["3.5"],
            ..P0
        },
        P {
            name: "Baker",
            zip3: Some("310"),
            payers: &["Aetna"],
            levels: &["3.5"],
            ..P0
        },
    ]);
    let c = ledger.connection();
    let config = RoutingConfig::default();
    let asked = request("Aetna", "3.5", "303");
    let before = route(c, &config, &asked).unwrap();
    let names = |answer: &RouteAnswer| {
        answer
            .options
            .iter()
            .map(|o| o.name.clone())
            .collect::<Vec<_>>()
    };
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
    let (_directory, ledger) = ledger_with(&[P { name: "Able", ..P0 }]);
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

/// A CRM lead (or other deal) for the lead-suggestion test.
struct Deal {
    system: &'static str,
    crm_id: &'static str,
    direction: &'static str,
    disposition: &'static str,
    reason: Option<&'static str>,
    date: &'static str,
    payer: Option<&'static str>,
    level: Option<&'static str>,
    inquiry_id: Option<&'static str>,
    parent_inquiry_id: Option<&'static str>,
    deleted: bool,
    /// The linked EHR referral: (payer, level code, ZIP3).
    ehr: Option<(
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    )>,
}

const D0: Deal = Deal {
    system: "salesforce",
    crm_id: "",
    direction: "in",
    disposition: "not_admitted",
    reason: Some("capacity"),
    date: "2026-03-15",
    payer: None,
    level: None,
    inquiry_id: None,
    parent_inquiry_id: None,
    deleted: false,
    ehr: None,
};

fn add_deal(connection: &Connection, deal: &Deal) {
    let referral_id =
        deal.ehr.map(|(payer, level, zip3)| {
            connection
            .execute(
                "INSERT INTO referral (source_system, inquiry_id, direction, inquiry_date, payer,
                     level_of_care_scheme, level_of_care_code, zip3, disposition,
                     first_import_run_id, last_import_run_id)
                 VALUES ('ehr', ?1, 'in', ?2, ?3, 'asam3', ?4, ?5, 'not_admitted', 1, 1)",
                params![deal.inquiry_id.unwrap_or(deal.crm_id), deal.date, payer, level, zip3],
            )
            .unwrap();
            connection.last_insert_rowid()
        });
    connection
        .execute(
            "INSERT INTO crm_referral (system, crm_id, partner_id, referral_id, inquiry_id,
                 direction, parent_inquiry_id, stage, disposition, disposition_reason, payer,
                 level_of_care, inquiry_date, owner_id, deleted)
             VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, 'Closed', ?7, ?8, ?9, ?10, ?11, '005R', ?12)",
            params![
                deal.system,
                deal.crm_id,
                referral_id,
                deal.inquiry_id,
                deal.direction,
                deal.parent_inquiry_id,
                deal.disposition,
                deal.reason,
                deal.payer,
                deal.level,
                deal.date,
                deal.deleted
            ],
        )
        .unwrap();
}

#[test]
fn lead_suggestions_pick_non_converting_referable_leads_in_the_window_not_referred_out() {
    let (_directory, ledger) = ledger_with(&[
        P {
            name: "Near",
            zip3: Some("303"),
            payers: &["Aetna", "Cigna"],
            levels: &["3.5", "3.7"],
            ..P0
        },
        P {
            name: "Far",
            zip3: Some("310"),
            payers: &["Aetna"],
            levels: &["3.5"],
            ..P0
        },
    ]);
    let c = ledger.connection();
    let deals = [
        Deal {
            crm_id: "006-oon",
            reason: Some("out_of_network"),
            date: "2026-03-10",
            payer: Some("Aetna"),
            level: Some("ASAM 3.5"),
            inquiry_id: Some("I1"),
            ehr: Some((None, None, Some("303"))),
            ..D0
        },
        Deal {
            crm_id: "006-first-day",
            date: "2026-03-01",
            payer: Some("Aetna"),
            ..D0
        },
        Deal {
            crm_id: "006-too-old",
            date: "2026-02-28",
            payer: Some("Aetna"),
            ..D0
        },
        Deal {
            crm_id: "006-future",
            date: "2026-04-01",
            payer: Some("Aetna"),
            ..D0
        },
        Deal {
            crm_id: "006-declined",
            reason: Some("declined"),
            payer: Some("Aetna"),
            ..D0
        },
        Deal {
            crm_id: "006-admitted",
            disposition: "admitted",
            reason: None,
            payer: Some("Aetna"),
            ..D0
        },
        Deal {
            crm_id: "006-pending",
            disposition: "pending",
            reason: None,
            payer: Some("Aetna"),
            ..D0
        },
        Deal {
            crm_id: "006-deleted",
            deleted: true,
            payer: Some("Aetna"),
            ..D0
        },
        Deal {
            crm_id: "006-sent-out-in-crm",
            payer: Some("Aetna"),
            inquiry_id: Some("I5"),
            ..D0
        },
        Deal {
            crm_id: "006-I5-OUT",
            direction: "out",
            disposition: "pending",
            reason: None,
            inquiry_id: Some("I5-OUT"),
            parent_inquiry_id: Some("I5"),
            ..D0
        },
        Deal {
            crm_id: "006-sent-out-in-ehr",
            reason: Some("geography"),
            payer: Some("Aetna"),
            inquiry_id: Some("I6"),
            ..D0
        },
        Deal {
            crm_id: "006-outbound",
            direction: "out",
            payer: Some("Aetna"),
            ..D0
        },
        Deal {
            system: "hubspot",
            crm_id: "9001",
            reason: Some("level_of_care_mismatch"),
            date: "2026-03-10",
            inquiry_id: Some("I9"),
            ehr: Some((Some("Cigna"), Some("3.7"), Some("305"))),
            ..D0
        },
        Deal {
            crm_id: "006-unknown",
            date: "2026-03-20",
            ..D0
        },
    ];
    for deal in &deals {
        add_deal(c, deal);
    }
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
    let leads: Vec<(&str, &str, String)> = suggestions
        .iter()
        .map(|s| {
            (
                s.lead_crm_id.as_str(),
                s.reason.as_str(),
                s.inquiry_date.to_string(),
            )
        })
        .collect();
    assert_eq!(
        leads,
        [
            ("006-first-day", "capacity", "2026-03-01".to_string()),
            ("9001", "level_of_care_mismatch", "2026-03-10".to_string()),
            ("006-oon", "out_of_network", "2026-03-10".to_string()),
            ("006-unknown", "capacity", "2026-03-20".to_string()),
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
    assert_eq!(ids, ["006-oon"]);

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
