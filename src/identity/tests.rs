//! Identity resolution on small hand-made ledgers: CRM records stored as sync stores them
//! (`store_page`), EHR spellings and referrals stored as the import stores them
//! (`PartnerResolver`, `ReferralWriter`), then `resolve` and what a user would notice: which
//! records share a partner, how each was linked, what is suggested, where referrals went.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use refbridge_model::crm::{
    CrmActivity, CrmContact, CrmOwner, CrmPartner, CrmRecord, CrmRecordBody, CrmReferral,
    CrmSystem, CrmTask, PulledPage, StreamKind, TaskIntent, TaskPriority,
};
use refbridge_model::{Direction, Disposition, Npi, PartnerRef, Referral};
use rusqlite::{Connection, OptionalExtension, params};

use super::*;
use crate::config::{AliasConfig, MergeConfig, SplitConfig};
use crate::ledger::Ledger;
use crate::ledger::store::ReferralWriter;
use crate::partners::{PartnerResolver, Resolved};

const SF: CrmSystem = CrmSystem::Salesforce;
const HS: CrmSystem = CrmSystem::Hubspot;

/// A scratch ledger fed the way sync and import feed it.
struct Fixture {
    _directory: tempfile::TempDir,
    ledger: Ledger,
    aliases: Vec<AliasConfig>,
    clock: std::cell::Cell<i64>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_aliases(Vec::new())
    }

    fn with_aliases(aliases: Vec<AliasConfig>) -> Fixture {
        let (directory, ledger) = crate::ledger::scratch();
        Fixture {
            _directory: directory,
            ledger,
            aliases,
            clock: std::cell::Cell::new(0),
        }
    }

    fn c(&self) -> &Connection {
        self.ledger.connection()
    }

    /// Stores CRM records of one stream, each modified a second after the previous.
    fn store(&self, system: CrmSystem, stream: StreamKind, bodies: Vec<(CrmRecordBody, bool)>) {
        let records: Vec<CrmRecord> = bodies
            .into_iter()
            .map(|(body, deleted)| {
                self.clock.set(self.clock.get() + 1);
                let id = match &body {
                    CrmRecordBody::Partner(b) => b.id.clone(),
                    CrmRecordBody::Contact(b) => b.id.clone(),
                    CrmRecordBody::Referral(b) => b.id.clone(),
                    CrmRecordBody::Activity(b) => b.id.clone(),
                    CrmRecordBody::Owner(b) => b.id.clone(),
                    CrmRecordBody::Task(b) => b.id.clone(),
                };
                CrmRecord {
                    id,
                    modified_at: Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap()
                        + Duration::seconds(self.clock.get()),
                    deleted,
                    merged_into: None,
                    body,
                }
            })
            .collect();
        let page = PulledPage {
            stream,
            records,
            cursor: None,
            api_calls: 1,
        };
        crate::ledger::crm::store_page(self.c(), system, &page, 1, "2026-05-01T00:00:00Z").unwrap();
    }

    fn partners(&self, system: CrmSystem, partners: Vec<CrmPartner>) {
        self.store(
            system,
            StreamKind::Partners,
            partners
                .into_iter()
                .map(|p| (CrmRecordBody::Partner(p), false))
                .collect(),
        );
    }

    /// An EHR spelling, resolved as an import resolves it.
    fn spelling(&self, name: &str, npi: Option<Npi>) -> Resolved {
        let mut resolver = PartnerResolver::load(self.c(), "ehr", &self.aliases).unwrap();
        resolver
            .resolve(
                self.c(),
                &PartnerRef {
                    name: name.to_string(),
                    npi,
                    source_type: None,
                },
                "2026-05-01T00:00:00Z",
            )
            .unwrap()
    }

    /// An EHR referral from (inbound) or to (outbound, keyed by its parent) a spelling.
    fn referral(&self, inquiry: &str, direction: Direction, source: Option<&str>) -> i64 {
        let partner = source.map(|name| self.spelling(name, None));
        let (inquiry_id, parent) = match direction {
            Direction::In => (inquiry.to_string(), None),
            Direction::Out => (
                format!("{inquiry}>{}", source.unwrap_or_default()),
                Some(inquiry.to_string()),
            ),
        };
        let referral = Referral {
            inquiry_id: inquiry_id.clone(),
            inquiry_date: NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
            direction,
            partner: None,
            referred_out_to: None,
            parent_inquiry_id: parent,
            referred_by: None,
            rep: None,
            payer: None,
            plan_type: None,
            level_of_care: None,
            disposition: Disposition::Pending,
            disposition_reason: None,
            admit_date: None,
            patient: None,
            zip3: None,
        };
        let mut writer = ReferralWriter::new(self.c(), "ehr", 1).unwrap();
        writer.upsert(&referral, partner).unwrap();
        self.c()
            .query_row(
                "SELECT id FROM referral WHERE inquiry_id = ?1 AND direction = ?2",
                params![inquiry_id, direction.as_str()],
                |row| row.get(0),
            )
            .unwrap()
    }

    fn resolve(&self, config: &IdentityConfig) -> IdentityReport {
        self.resolve_at(config, "2026-05-02T00:00:00Z")
    }

    fn resolve_at(&self, config: &IdentityConfig, now: &str) -> IdentityReport {
        resolve(self.c(), config, now).unwrap()
    }

    /// The partner of a `system:key` record.
    fn partner_of(&self, reference: &str) -> i64 {
        self.record(reference).0
    }

    /// (partner, match method, confidence) of a `system:key` record.
    fn record(&self, reference: &str) -> (i64, String, f64) {
        let reference = RecordRef::parse(reference).unwrap();
        self.c()
            .query_row(
                "SELECT partner_id, match_method, confidence FROM partner_source_record
                 WHERE system = ?1 AND external_key = ?2",
                params![reference.system, reference.key],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .unwrap()
            .unwrap_or_else(|| panic!("no source record {reference}"))
    }

    /// The suggestion between two records' partners: (method, confidence, reason).
    fn suggestion(&self, a: &str, b: &str) -> Option<(String, f64, String)> {
        let (pa, pb) = (self.partner_of(a), self.partner_of(b));
        self.c()
            .query_row(
                "SELECT method, confidence, reason FROM identity_suggestion
                 WHERE partner_id = ?1 AND candidate_id = ?2",
                params![pa.min(pb), pa.max(pb)],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .unwrap()
    }

    fn count(&self, sql: &str) -> i64 {
        self.c().query_row(sql, [], |row| row.get(0)).unwrap()
    }

    /// Every row of every table identity resolution writes, as text.
    fn snapshot(&self) -> String {
        let mut out = String::new();
        for table in [
            "partner",
            "partner_source_record",
            "referral",
            "rep",
            "partner_profile",
            "crm_referral",
            "activity",
            "identity_suggestion",
        ] {
            let mut statement = self
                .c()
                .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
                .unwrap();
            let columns = statement.column_count();
            let rows = statement
                .query_map([], |row| {
                    let values: Vec<String> = (0..columns)
                        .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                        .collect();
                    Ok(values.join("|"))
                })
                .unwrap();
            out.push_str(table);
            out.push('\n');
            for row in rows {
                out.push_str(&row.unwrap());
                out.push('\n');
            }
        }
        out
    }
}

fn npi(first_nine: u32) -> Npi {
    Npi::from_first_nine(first_nine)
}

/// A CRM partner with a name and nothing else.
fn org(id: &str, name: &str) -> CrmPartner {
    CrmPartner {
        id: id.to_string(),
        name: name.to_string(),
        source_type: None,
        npi: None,
        website: None,
        phone: None,
        street: None,
        city: None,
        state: None,
        zip: None,
        owner_id: None,
        payers_accepted: Vec::new(),
        levels_of_care: Vec::new(),
        accepting_referrals: None,
        preferred: None,
    }
}

fn in_city(partner: CrmPartner, city: &str, zip: &str) -> CrmPartner {
    CrmPartner {
        city: Some(city.to_string()),
        state: Some("GA".to_string()),
        zip: Some(zip.to_string()),
        ..partner
    }
}

fn config() -> IdentityConfig {
    IdentityConfig::default()
}

/// One scenario: records in, and what must hold after `resolve`.
#[derive(Default)]
struct Case {
    name: &'static str,
    salesforce: Vec<CrmPartner>,
    hubspot: Vec<CrmPartner>,
    /// EHR spellings (name, NPI).
    ehr: Vec<(&'static str, Option<Npi>)>,
    aliases: Vec<AliasConfig>,
    merges: Vec<Vec<&'static str>>,
    splits: Vec<&'static str>,
    /// Record groups that must each be one partner.
    together: Vec<Vec<&'static str>>,
    /// Record pairs that must be two partners.
    apart: Vec<(&'static str, &'static str)>,
    /// (record, method it was linked by).
    methods: Vec<(&'static str, &'static str)>,
    /// (record, record, suggestion method, a fragment of its reason).
    suggested: Vec<(&'static str, &'static str, &'static str, &'static str)>,
    /// Pairs that must not be suggested.
    not_suggested: Vec<(&'static str, &'static str)>,
}

/// Builds the case's ledger, resolves it, checks it, and hands the ledger back.
fn check(case: Case) -> Fixture {
    let fixture = Fixture::with_aliases(case.aliases.clone());
    if !case.salesforce.is_empty() {
        fixture.partners(SF, case.salesforce.clone());
    }
    if !case.hubspot.is_empty() {
        fixture.partners(HS, case.hubspot.clone());
    }
    for (name, npi) in &case.ehr {
        fixture.spelling(name, *npi);
    }
    let config = IdentityConfig {
        alias: case.aliases.clone(),
        merge: case
            .merges
            .iter()
            .map(|records| MergeConfig {
                records: records.iter().map(|r| r.to_string()).collect(),
            })
            .collect(),
        split: case
            .splits
            .iter()
            .map(|record| SplitConfig {
                record: record.to_string(),
            })
            .collect(),
        queue_owners: Vec::new(),
    };
    fixture.resolve(&config);
    verify(&fixture, &case);
    fixture
}

fn verify(fixture: &Fixture, case: &Case) {
    let name = case.name;
    for group in &case.together {
        let partners: Vec<i64> = group.iter().map(|r| fixture.partner_of(r)).collect();
        assert!(
            partners.windows(2).all(|w| w[0] == w[1]),
            "{name}: {group:?} should be one partner, are {partners:?}"
        );
    }
    for (a, b) in &case.apart {
        assert_ne!(
            fixture.partner_of(a),
            fixture.partner_of(b),
            "{name}: {a} and {b} should be two partners"
        );
    }
    for (record, method) in &case.methods {
        assert_eq!(
            fixture.record(record).1,
            *method,
            "{name}: how {record} was linked"
        );
    }
    for (a, b, method, fragment) in &case.suggested {
        let (found, confidence, reason) = fixture
            .suggestion(a, b)
            .unwrap_or_else(|| panic!("{name}: {a} / {b} should be suggested"));
        assert_eq!(found, *method, "{name}: {reason}");
        assert!((0.5..0.8).contains(&confidence), "{name}: {confidence}");
        assert!(
            reason.contains(fragment),
            "{name}: {reason:?} lacks {fragment:?}"
        );
    }
    for (a, b) in &case.not_suggested {
        assert_eq!(fixture.suggestion(a, b), None, "{name}: {a} / {b}");
    }
}

#[test]
fn evidence_links_what_it_should_and_nothing_else() {
    let x = npi(123_456_789);
    let y = npi(987_654_321);
    let cases = vec![
        Case {
            name: "an NPI links an EHR spelling to a CRM record whatever their names",
            salesforce: vec![in_city(
                CrmPartner {
                    npi: Some(x),
                    ..org("001A", "Mercy Hospital")
                },
                "Atlanta",
                "30303",
            )],
            ehr: vec![("St. Mercy General", Some(x))],
            together: vec![vec![
                "salesforce:001A",
                "ehr:St. Mercy General [NPI 1234567893]",
            ]],
            methods: vec![
                ("ehr:St. Mercy General [NPI 1234567893]", "npi"),
                ("salesforce:001A", "npi"),
            ],
            ..Case::default()
        },
        Case {
            name: "the same website domain links two CRMs' records",
            salesforce: vec![CrmPartner {
                website: Some("https://www.harborbh.org/".into()),
                ..org("001A", "Harbor BH")
            }],
            hubspot: vec![
                CrmPartner {
                    website: Some("harborbh.org/contact".into()),
                    ..org("11", "Harbor Behavioral Health Center")
                },
                CrmPartner {
                    website: Some("gmail.com".into()),
                    ..org("12", "Oak Therapy")
                },
                CrmPartner {
                    website: Some("https://gmail.com".into()),
                    ..org("13", "Elm Therapy")
                },
            ],
            together: vec![vec!["salesforce:001A", "hubspot:11"]],
            apart: vec![("hubspot:12", "hubspot:13")],
            methods: vec![("hubspot:11", "domain")],
            ..Case::default()
        },
        Case {
            name: "a phone links with the same ZIP, never alone",
            salesforce: vec![CrmPartner {
                phone: Some("(404) 555-0101".into()),
                ..in_city(org("001A", "Lakeside Clinic"), "Atlanta", "30303")
            }],
            hubspot: vec![
                CrmPartner {
                    phone: Some("+1 404-555-0101".into()),
                    ..in_city(org("21", "LAKESIDE FAMILY PRACTICE"), "Atlanta", "30303")
                },
                CrmPartner {
                    phone: Some("404.555.0101".into()),
                    ..in_city(org("22", "Oakwood Pediatrics"), "Macon", "31201")
                },
                CrmPartner {
                    phone: Some("404 555 0101".into()),
                    ..in_city(org("23", "Lakeside Urgent Care"), "Atlanta", "30305")
                },
            ],
            together: vec![vec!["salesforce:001A", "hubspot:21"]],
            apart: vec![
                ("salesforce:001A", "hubspot:22"),
                ("salesforce:001A", "hubspot:23"),
            ],
            methods: vec![("hubspot:21", "phone")],
            suggested: vec![(
                "salesforce:001A",
                "hubspot:23",
                "phone_other_zip",
                "ZIP 30303 vs 30305",
            )],
            not_suggested: vec![("salesforce:001A", "hubspot:22")],
            ..Case::default()
        },
        Case {
            name: "a normalized name links within one city",
            salesforce: vec![in_city(
                org("001A", "Summit Detox Center"),
                "Macon",
                "31201",
            )],
            hubspot: vec![in_city(org("31", "SUMMIT DETOX CTR."), "Macon", "31206")],
            ehr: vec![("Summit Detox Ctr", None)],
            together: vec![vec![
                "salesforce:001A",
                "hubspot:31",
                "ehr:Summit Detox Ctr",
            ]],
            methods: vec![
                ("hubspot:31", "name_city"),
                ("ehr:Summit Detox Ctr", "name"),
            ],
            ..Case::default()
        },
        Case {
            name: "the same name in two cities is two partners, suggested",
            salesforce: vec![in_city(org("001A", "Grace Clinic"), "Atlanta", "30303")],
            hubspot: vec![in_city(org("41", "Grace Clinic"), "Savannah", "31401")],
            apart: vec![("salesforce:001A", "hubspot:41")],
            suggested: vec![(
                "salesforce:001A",
                "hubspot:41",
                "name_other_city",
                "in different cities (",
            )],
            ..Case::default()
        },
        Case {
            name: "two NPIs are never one partner, even with one name and city",
            salesforce: vec![in_city(
                CrmPartner {
                    npi: Some(x),
                    ..org("001A", "Cedar Psychiatry")
                },
                "Atlanta",
                "30303",
            )],
            hubspot: vec![in_city(
                CrmPartner {
                    npi: Some(y),
                    ..org("51", "Cedar Psychiatry")
                },
                "Atlanta",
                "30303",
            )],
            ehr: vec![("Cedar Psychiatry", None)],
            apart: vec![("salesforce:001A", "hubspot:51")],
            not_suggested: vec![("salesforce:001A", "hubspot:51")],
            ..Case::default()
        },
        Case {
            name: "a configured alias links a spelling nothing else links",
            salesforce: vec![in_city(org("001A", "Mercy Hospital"), "Atlanta", "30303")],
            ehr: vec![("Dr. A. Lee - Mercy", None)],
            aliases: vec![AliasConfig {
                partner: "Mercy Hospital".into(),
                npi: None,
                names: vec!["Dr. A. Lee - Mercy".into()],
            }],
            together: vec![vec!["salesforce:001A", "ehr:Dr. A. Lee - Mercy"]],
            methods: vec![("ehr:Dr. A. Lee - Mercy", "alias")],
            ..Case::default()
        },
        Case {
            name: "a config merge joins what no evidence joins",
            salesforce: vec![in_city(org("001A", "Pinecrest Recovery"), "Rome", "30161")],
            hubspot: vec![in_city(org("61", "PRC Admissions"), "Rome", "30165")],
            ehr: vec![("PRC Intake Line", None)],
            merges: vec![vec![
                "salesforce:001A",
                "hubspot:61",
                "ehr:PRC Intake Line",
                "hubspot:404",
            ]],
            together: vec![vec!["salesforce:001A", "hubspot:61", "ehr:PRC Intake Line"]],
            methods: vec![("hubspot:61", "merge"), ("ehr:PRC Intake Line", "merge")],
            ..Case::default()
        },
        Case {
            name: "\"Mercy Hospital\" and \"MERCY HOSP ED\" are suggested, not merged",
            salesforce: vec![in_city(org("001A", "Mercy Hospital"), "Atlanta", "30303")],
            ehr: vec![("MERCY HOSP ED", None)],
            apart: vec![("salesforce:001A", "ehr:MERCY HOSP ED")],
            methods: vec![("ehr:MERCY HOSP ED", "new")],
            suggested: vec![(
                "salesforce:001A",
                "ehr:MERCY HOSP ED",
                "name_words",
                "same name words, one adds \"ed\"; no NPI on either",
            )],
            ..Case::default()
        },
    ];
    for case in cases {
        check(case);
    }
}

#[test]
fn unknown_references_wait_and_are_counted() {
    let fixture = check(Case {
        name: "a merge naming a record the ledger does not hold yet",
        salesforce: vec![in_city(org("001A", "Pinecrest Recovery"), "Rome", "30161")],
        hubspot: vec![in_city(org("61", "PRC Admissions"), "Rome", "30165")],
        merges: vec![vec!["salesforce:001A", "hubspot:61", "hubspot:404"]],
        together: vec![vec!["salesforce:001A", "hubspot:61"]],
        ..Case::default()
    });
    let waiting = IdentityConfig {
        merge: vec![MergeConfig {
            records: vec![
                "salesforce:001A".into(),
                "hubspot:61".into(),
                "hubspot:404".into(),
            ],
        }],
        split: vec![SplitConfig {
            record: "ehr:Nobody".into(),
        }],
        ..config()
    };
    let report = fixture.resolve(&waiting);
    assert_eq!(report.unknown_references, 2);
    assert_eq!(report.records_split, 0);
    // The record arrives with the next pull: the merge it waited for applies.
    fixture.partners(
        HS,
        vec![in_city(org("404", "Rome Intake Office"), "Rome", "30161")],
    );
    let report = fixture.resolve(&waiting);
    assert_eq!(report.unknown_references, 1);
    assert_eq!(
        fixture.partner_of("hubspot:404"),
        fixture.partner_of("salesforce:001A")
    );
    assert_eq!(fixture.record("hubspot:404").1, "merge");
}

#[test]
fn a_crm_id_keeps_its_partner_when_the_record_is_renamed() {
    let fixture = check(Case {
        name: "before the rename",
        salesforce: vec![in_city(org("001A", "Mercy Hospital"), "Atlanta", "30303")],
        ehr: vec![("Mercy Hospital", None)],
        together: vec![vec!["salesforce:001A", "ehr:Mercy Hospital"]],
        methods: vec![("salesforce:001A", "name")],
        ..Case::default()
    });
    let partner = fixture.partner_of("salesforce:001A");
    fixture.partners(
        SF,
        vec![in_city(
            org("001A", "Piedmont Health System"),
            "Atlanta",
            "30303",
        )],
    );
    fixture.resolve(&config());
    verify(
        &fixture,
        &Case {
            name: "after the rename",
            together: vec![vec!["salesforce:001A", "ehr:Mercy Hospital"]],
            methods: vec![
                ("salesforce:001A", "crm_id"),
                ("ehr:Mercy Hospital", "name"),
            ],
            ..Case::default()
        },
    );
    assert_eq!(fixture.partner_of("salesforce:001A"), partner);
    let name: String = fixture
        .c()
        .query_row(
            "SELECT raw_name FROM partner_source_record WHERE external_key = '001A'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(name, "Piedmont Health System");
    let partner_name: String = fixture
        .c()
        .query_row("SELECT name FROM partner WHERE id = ?1", [partner], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        partner_name, "Piedmont Health System",
        "a partner is called what its home CRM record calls it"
    );
}

#[test]
fn a_split_moves_exactly_its_spellings_referrals_and_is_reversible() {
    let fixture = Fixture::new();
    fixture.partners(
        SF,
        vec![in_city(org("001A", "Mercy Hospital"), "Atlanta", "30303")],
    );
    for inquiry in ["INQ-1", "INQ-2"] {
        fixture.referral(inquiry, Direction::In, Some("Mercy Hospital"));
    }
    fixture.referral("INQ-3", Direction::In, Some("Mercy Hosp."));
    let with_split = IdentityConfig {
        split: vec![SplitConfig {
            record: "ehr:Mercy Hosp.".into(),
        }],
        ..config()
    };
    let referrals_of = |partner: i64| -> Vec<String> {
        let mut statement = fixture
            .c()
            .prepare("SELECT inquiry_id FROM referral WHERE partner_id = ?1 ORDER BY inquiry_id")
            .unwrap();
        statement
            .query_map([partner], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };

    fixture.resolve(&config());
    let mercy = fixture.partner_of("salesforce:001A");
    assert_eq!(fixture.partner_of("ehr:Mercy Hosp."), mercy);
    assert_eq!(referrals_of(mercy), ["INQ-1", "INQ-2", "INQ-3"]);

    let report = fixture.resolve(&with_split);
    assert_eq!(report.records_split, 1);
    let alone = fixture.partner_of("ehr:Mercy Hosp.");
    assert_ne!(alone, mercy);
    assert_eq!(fixture.partner_of("ehr:Mercy Hospital"), mercy);
    assert_eq!(fixture.record("ehr:Mercy Hosp.").1, "split");
    assert_eq!(referrals_of(mercy), ["INQ-1", "INQ-2"]);
    assert_eq!(referrals_of(alone), ["INQ-3"]);
    let origin: String = fixture
        .c()
        .query_row("SELECT origin FROM partner WHERE id = ?1", [alone], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(origin, "ehr");
    // A later import of the split spelling keeps it where the split put it.
    assert_eq!(fixture.spelling("Mercy Hosp.", None).partner_id, alone);
    fixture.resolve(&with_split);
    assert_eq!(
        referrals_of(alone),
        ["INQ-3"],
        "the split holds on the next run"
    );

    let report = fixture.resolve(&config());
    assert_eq!(report.partners_merged_this_run, 1);
    assert_eq!(fixture.partner_of("ehr:Mercy Hosp."), mercy);
    assert_eq!(referrals_of(mercy), ["INQ-1", "INQ-2", "INQ-3"]);
    let merged_into: Option<i64> = fixture
        .c()
        .query_row(
            "SELECT merged_into FROM partner WHERE id = ?1",
            [alone],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(merged_into, Some(mercy));
    // An import after the merge names the live partner, never the merged one.
    assert_eq!(fixture.spelling("Mercy Hosp.", None).partner_id, mercy);
}

#[test]
fn a_spelling_given_with_two_npis_is_two_source_records() {
    let fixture = Fixture::new();
    let first = fixture.spelling("Dr. Lee", Some(npi(111_111_111)));
    let second = fixture.spelling("Dr. Lee", Some(npi(222_222_222)));
    assert_ne!(first.source_record_id, second.source_record_id);
    assert_ne!(first.partner_id, second.partner_id);
    fixture.resolve(&config());
    let key = |n: u32| format!("ehr:Dr. Lee [NPI {}]", npi(n));
    assert_ne!(
        fixture.partner_of(&key(111_111_111)),
        fixture.partner_of(&key(222_222_222)),
    );
}

#[test]
fn a_second_run_with_nothing_new_changes_nothing() {
    let x = npi(123_456_789);
    let fixture = check(Case {
        name: "a ledger with every kind of link",
        salesforce: vec![
            CrmPartner {
                npi: Some(x),
                owner_id: Some("005A".into()),
                phone: Some("4045550101".into()),
                payers_accepted: vec!["Aetna".into()],
                ..in_city(org("001A", "Mercy Hospital"), "Atlanta", "30303")
            },
            in_city(org("001B", "Grace Clinic"), "Atlanta", "30303"),
        ],
        hubspot: vec![
            CrmPartner {
                phone: Some("404-555-0101".into()),
                payers_accepted: vec!["Cigna".into()],
                ..in_city(org("71", "MERCY HOSP ED"), "Atlanta", "30303")
            },
            in_city(org("72", "Grace Clinic"), "Savannah", "31401"),
        ],
        ehr: vec![
            ("Mercy Hospital", Some(x)),
            ("Mercy Hosp", None),
            ("Grace Clinic Downtown", None),
        ],
        splits: vec!["ehr:Mercy Hosp"],
        together: vec![vec![
            "salesforce:001A",
            "hubspot:71",
            "ehr:Mercy Hospital [NPI 1234567893]",
        ]],
        ..Case::default()
    });
    fixture.store(
        SF,
        StreamKind::Owners,
        vec![(
            CrmRecordBody::Owner(CrmOwner {
                id: "005A".into(),
                name: "Ana Ruiz".into(),
                email: None,
                active: true,
            }),
            false,
        )],
    );
    let config = IdentityConfig {
        split: vec![SplitConfig {
            record: "ehr:Mercy Hosp".into(),
        }],
        ..config()
    };
    let first = fixture.resolve(&config);
    assert!(first.suggestions >= 2, "{first:?}");
    let before = fixture.snapshot();
    let second = fixture.resolve_at(&config, "2026-06-01T00:00:00Z");
    assert_eq!(fixture.snapshot(), before);
    assert_eq!(second.partners_merged_this_run, 0);
    assert_eq!(
        IdentityReport {
            partners_merged_this_run: 0,
            ..first
        },
        second
    );
    let (home, owner, payers, zip3): (String, Option<String>, String, Option<String>) = fixture
        .c()
        .query_row(
            "SELECT home_crm_id, owner_name, payers, zip3 FROM partner_profile WHERE partner_id = ?1",
            [fixture.partner_of("salesforce:001A")],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(home, "001A", "the owned record is home");
    assert_eq!(owner.as_deref(), Some("Ana Ruiz"));
    assert_eq!(payers, r#"["Aetna","Cigna"]"#);
    assert_eq!(zip3.as_deref(), Some("303"));

    // When 005A is the team queue (`queue_owner_id`), the partner has no rep.
    let queued = IdentityConfig {
        queue_owners: vec![("salesforce".to_string(), "005A".to_string())],
        ..config
    };
    fixture.resolve(&queued);
    let owner: Option<String> = fixture
        .c()
        .query_row(
            "SELECT owner_id FROM partner_profile WHERE partner_id = ?1",
            [fixture.partner_of("salesforce:001A")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(owner, None, "a partner the queue owns is unowned");
}

fn deal(
    id: &str,
    inquiry: &str,
    direction: Direction,
    partner: &str,
    parent: Option<&str>,
) -> CrmRecordBody {
    CrmRecordBody::Referral(CrmReferral {
        id: id.to_string(),
        inquiry_id: Some(inquiry.to_string()),
        direction,
        partner_id: Some(partner.to_string()),
        parent_inquiry_id: parent.map(str::to_string),
        stage: "Pending".to_string(),
        disposition: Some(Disposition::Pending),
        disposition_reason: None,
        payer: None,
        plan_type: None,
        level_of_care: None,
        inquiry_date: NaiveDate::from_ymd_opt(2026, 4, 1),
        admit_date: None,
        owner_id: None,
    })
}

#[test]
fn every_referral_counts_once_across_the_ehr_and_both_crms() {
    let fixture = Fixture::new();
    fixture.partners(
        SF,
        vec![
            in_city(org("001A", "Mercy Hospital"), "Atlanta", "30303"),
            in_city(org("001B", "Summit Detox"), "Macon", "31201"),
        ],
    );
    fixture.partners(
        HS,
        vec![
            in_city(org("81", "Mercy Hospital"), "Atlanta", "30303"),
            in_city(org("82", "Summit Detox"), "Macon", "31201"),
        ],
    );
    // INQ-1 in the EHR and both CRMs; its refer-out to Summit in the EHR and Salesforce; INQ-2
    // only in the two CRMs.
    let inbound = fixture.referral("INQ-1", Direction::In, Some("Mercy Hospital"));
    let outbound = fixture.referral("INQ-1", Direction::Out, Some("Summit Detox"));
    fixture.store(
        SF,
        StreamKind::Referrals,
        vec![
            (deal("006A", "INQ-1", Direction::In, "001A", None), false),
            (
                deal("006B", "INQ-1-OUT", Direction::Out, "001B", Some("INQ-1")),
                false,
            ),
            (deal("006C", "INQ-2", Direction::In, "001A", None), false),
            (deal("006D", "INQ-3", Direction::In, "001A", None), true),
        ],
    );
    fixture.store(
        HS,
        StreamKind::Referrals,
        vec![
            (deal("9001", "INQ-1", Direction::In, "81", None), false),
            (deal("9002", "INQ-2", Direction::In, "81", None), false),
        ],
    );
    let report = fixture.resolve(&config());
    assert_eq!(fixture.count("SELECT count(*) FROM unified_referral"), 3);
    assert_eq!(report.crm_referrals, 5, "the deleted deal is not counted");
    assert_eq!(report.crm_referrals_matched_to_ehr, 3);
    let linked = |crm_id: &str| -> (Option<i64>, Option<i64>, Option<i64>) {
        fixture
            .c()
            .query_row(
                "SELECT referral_id, partner_id, duplicate_of FROM crm_referral WHERE crm_id = ?1",
                [crm_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    let mercy = fixture.partner_of("ehr:Mercy Hospital");
    let summit = fixture.partner_of("ehr:Summit Detox");
    let id_of = |crm_id: &str| -> i64 {
        fixture
            .c()
            .query_row(
                "SELECT id FROM crm_referral WHERE crm_id = ?1",
                [crm_id],
                |r| r.get(0),
            )
            .unwrap()
    };
    // Of two CRM rows for one inquiry, one stands for it and the other points at it.
    let one_stands_for_both = |a: &str, b: &str| {
        let (da, db) = (linked(a).2, linked(b).2);
        assert!(
            (da.is_none() && db == Some(id_of(a))) || (db.is_none() && da == Some(id_of(b))),
            "{a}: {da:?}, {b}: {db:?}"
        );
    };
    assert_eq!(linked("006A").0, Some(inbound));
    assert_eq!(linked("9001").0, Some(inbound));
    assert_eq!(linked("9001").1, Some(mercy));
    one_stands_for_both("006A", "9001");
    assert_eq!(linked("006B").0, Some(outbound));
    assert_eq!(linked("006B").1, Some(summit));
    assert_eq!(linked("006C").0, None);
    assert_eq!(linked("9002").1, Some(mercy));
    one_stands_for_both("006C", "9002");
}

#[test]
fn touches_and_completed_refbridge_tasks_become_activities_of_their_partner() {
    let fixture = Fixture::new();
    fixture.partners(
        SF,
        vec![in_city(org("001A", "Mercy Hospital"), "Atlanta", "30303")],
    );
    fixture.store(
        SF,
        StreamKind::Contacts,
        vec![(
            CrmRecordBody::Contact(CrmContact {
                id: "003A".into(),
                partner_id: Some("001A".into()),
                first_name: Some("Ana".into()),
                last_name: "Ruiz".into(),
                title: None,
                email: None,
                phone: None,
                owner_id: None,
            }),
            false,
        )],
    );
    let touch = |id: &str, partner: Option<&str>, contact: Option<&str>| CrmActivity {
        id: id.into(),
        kind: "visit".into(),
        owner_id: Some("005A".into()),
        partner_id: partner.map(Into::into),
        contact_id: contact.map(Into::into),
        at: Utc.with_ymd_and_hms(2026, 4, 2, 15, 0, 0).unwrap(),
    };
    fixture.store(
        SF,
        StreamKind::Activities,
        vec![
            (
                CrmRecordBody::Activity(touch("00UA", Some("001A"), None)),
                false,
            ),
            (
                CrmRecordBody::Activity(touch("00UB", None, Some("003A"))),
                false,
            ),
            (
                CrmRecordBody::Activity(touch("00UC", Some("001A"), None)),
                true,
            ),
        ],
    );
    let intent = |key: &str, about: &str| TaskIntent {
        key: key.into(),
        owner_id: None,
        about_id: about.into(),
        subject: "Visit".into(),
        description: String::new(),
        due: NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
        priority: TaskPriority::Normal,
        kind: refbridge_model::crm::TaskKind::Meeting,
        completed: false,
    };
    crate::ledger::crm::enqueue(
        fixture.c(),
        SF,
        &[
            intent("decline:1:2026-04", "001A"),
            intent("route:LEAD9", "00QLEAD9"),
        ],
        "2026-04-01T00:00:00Z",
    )
    .unwrap();
    let task = |id: &str, key: &str, completed: bool| {
        CrmRecordBody::Task(CrmTask {
            id: id.into(),
            key: key.into(),
            status: if completed { "Completed" } else { "Open" }.into(),
            completed,
            owner_id: Some("005A".into()),
        })
    };
    fixture.store(
        SF,
        StreamKind::Tasks,
        vec![
            (task("00TA", "decline:1:2026-04", true), false),
            (task("00TB", "route:LEAD9", true), false),
        ],
    );
    let report = fixture.resolve(&config());
    let mercy = fixture.partner_of("salesforce:001A");
    let activities = |sql: &str| -> Vec<(String, String, Option<i64>)> {
        let mut statement = fixture.c().prepare(sql).unwrap();
        statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        activities("SELECT crm_id, kind, partner_id FROM activity ORDER BY crm_id"),
        vec![
            ("00TA".to_string(), "task".to_string(), Some(mercy)),
            ("00UA".to_string(), "visit".to_string(), Some(mercy)),
            ("00UB".to_string(), "visit".to_string(), Some(mercy)),
        ]
    );
    assert_eq!(report.activities, 3);

    // The task reopened: no longer a touch.
    fixture.store(
        SF,
        StreamKind::Tasks,
        vec![(task("00TA", "decline:1:2026-04", false), false)],
    );
    fixture.resolve(&config());
    assert_eq!(
        fixture.count("SELECT count(*) FROM activity WHERE kind = 'task'"),
        0
    );
}

#[test]
fn reps_come_from_both_crms_owners() {
    let fixture = Fixture::new();
    let owner = |id: &str, name: &str, active: bool| {
        (
            CrmRecordBody::Owner(CrmOwner {
                id: id.into(),
                name: name.into(),
                email: Some(format!("{id}@example.org")),
                active,
            }),
            false,
        )
    };
    fixture.store(
        SF,
        StreamKind::Owners,
        vec![
            owner("005A", "Ana Ruiz", true),
            owner("005B", "Ben Okafor", false),
        ],
    );
    fixture.store(HS, StreamKind::Owners, vec![owner("301", "Ana Ruiz", true)]);
    assert_eq!(fixture.resolve(&config()).reps, 3);
    let inactive: Vec<String> = {
        let mut statement = fixture
            .c()
            .prepare("SELECT name FROM rep WHERE active = 0")
            .unwrap();
        statement
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(inactive, ["Ben Okafor"]);
}

#[test]
fn a_failed_run_leaves_the_ledger_as_it_was() {
    let fixture = Fixture::new();
    fixture.partners(
        SF,
        vec![in_city(org("001A", "Mercy Hospital"), "Atlanta", "30303")],
    );
    fixture.spelling("Mercy Hosp ED", None);
    let before = fixture.snapshot();
    // The disk fills up after partners and source records were written, at the profiles.
    fixture
        .c()
        .execute_batch(
            "CREATE TEMP TRIGGER full BEFORE INSERT ON partner_profile
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
    let error = resolve(fixture.c(), &config(), "2026-05-02T00:00:00Z").unwrap_err();
    assert!(error.to_string().contains("disk is full"), "{error}");
    assert!(fixture.c().is_autocommit(), "the transaction was closed");
    assert_eq!(fixture.snapshot(), before);
    fixture.c().execute_batch("DROP TRIGGER full").unwrap();
    assert_eq!(fixture.resolve(&config()).source_records, 2);
    assert_ne!(fixture.snapshot(), before);
}

#[test]
fn a_record_the_crm_merged_away_brings_its_partner_to_the_survivor() {
    let fixture = check(Case {
        name: "two HubSpot companies nothing links",
        hubspot: vec![
            in_city(org("91", "Eastside Recovery"), "Athens", "30601"),
            in_city(org("92", "ERC Admissions"), "Athens", "30605"),
        ],
        apart: vec![("hubspot:91", "hubspot:92")],
        ..Case::default()
    });
    let (survivor, absorbed) = (
        fixture.partner_of("hubspot:91"),
        fixture.partner_of("hubspot:92"),
    );
    // Someone merges 92 into 91 in HubSpot; reconciliation stores 92 as merged.
    let page = PulledPage {
        stream: StreamKind::Partners,
        records: vec![CrmRecord {
            id: "92".into(),
            modified_at: Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap(),
            deleted: true,
            merged_into: Some("91".into()),
            body: CrmRecordBody::Partner(in_city(org("92", "ERC Admissions"), "Athens", "30605")),
        }],
        cursor: None,
        api_calls: 1,
    };
    crate::ledger::crm::store_page(fixture.c(), HS, &page, 2, "2026-06-01T00:00:00Z").unwrap();
    let report = fixture.resolve(&config());
    assert_eq!(report.partners_merged_this_run, 1);
    assert_eq!(fixture.partner_of("hubspot:92"), survivor.min(absorbed));
    assert_eq!(fixture.partner_of("hubspot:91"), survivor.min(absorbed));
    assert_eq!(
        fixture.count("SELECT count(*) FROM partner_profile"),
        1,
        "only the live record makes a profile"
    );
}
