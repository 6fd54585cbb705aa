//! Benchmark: identity resolution on a synthetic world (`large` by default: ~21,700 partners in
//! each CRM, ~108,000 contacts, ~84,000 referrals) — time of the first run and of a second run
//! with nothing new, and how the clusters compare with the world's truth.
//!
//! Run: `cargo bench --bench identity` (options after `--`: `--scale small|medium|large`,
//! `--seed N`). Prints `name value unit` lines.
//!
//! The ledger is filled the way a cycle fills it, without HTTP: the world's EHR exports (generic
//! CSV and FHIR NDJSON) through the importer, and both CRMs' records built from the world the way
//! the connectors normalize them (Salesforce-like and HubSpot-like ids), stored with
//! `ledger::crm::store_page`. Pulling a large world through the sandboxes would measure the
//! sandboxes, not identity resolution.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use refbridge::config::{EhrConfig, IdentityConfig};
use refbridge::identity::resolve;
use refbridge::import::Importer;
use refbridge::ledger::Ledger;
use refbridge::ledger::crm::store_page;
use refbridge_model::crm::{
    CrmActivity, CrmOwner, CrmPartner, CrmRecord, CrmRecordBody, CrmReferral, CrmSystem,
    PulledPage, StreamKind,
};
use refbridge_model::{Direction, Disposition, DispositionReason, Npi};
use refbridge_synthetic::{Scale, World, WorldSpec, exports, generate};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let scale = value("--scale").map_or(Scale::Large, |s| {
        Scale::parse(&s).expect("--scale small|medium|large")
    });
    let seed: u64 = value("--seed").map_or(7, |s| s.parse().expect("--seed N"));
    let spec = WorldSpec {
        seed,
        scale,
        as_of: NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
    };
    let world = generate(spec);
    let scratch = tempfile::tempdir().expect("scratch directory");

    let started = Instant::now();
    let files = exports::write_exports(&world, scratch.path()).expect("exports");
    let mut ledger =
        Ledger::open(&scratch.path().join("ledger.db"), Duration::from_secs(10)).expect("ledger");
    let ehr: EhrConfig = toml::from_str(&format!(
        "inbox = {:?}\n[fhir]\nfacility_npi = {:?}\n",
        scratch.path().join("inbox").display().to_string(),
        world.facility.npi
    ))
    .expect("EHR config");
    let reader = Importer::reader_for(&ehr, b"0123456789abcdef0123456789abcdef");
    Importer::new(&mut ledger, reader, &[], 50_000)
        .import_files(&[
            files.generic_csv.clone(),
            files.service_requests_ndjson.clone(),
        ])
        .expect("import");
    for system in [CrmSystem::Salesforce, CrmSystem::Hubspot] {
        store_crm(&ledger, &world, system);
    }
    eprintln!(
        "ledger filled ({} partners, {} referrals, {} activities per CRM) in {:.1?}",
        world.partners.len(),
        world.referrals.len(),
        world.activities.len(),
        started.elapsed()
    );

    let config = IdentityConfig::default();
    let c = ledger.connection();
    let started = Instant::now();
    let first = resolve(c, &config, "2026-11-01T06:00:00Z").expect("resolve");
    let first_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let second = resolve(c, &config, "2026-11-01T07:00:00Z").expect("resolve again");
    let second_seconds = started.elapsed().as_secs_f64();
    assert_eq!(second.partners_merged_this_run, 0);

    // Truth: CRM records by name → family (an original and its duplicates).
    let family_of = |index: usize| world.partners[index].duplicate_of.unwrap_or(index);
    let family_by_name: HashMap<&str, usize> = world
        .partners
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), family_of(i)))
        .collect();
    let mut statement = c
        .prepare("SELECT raw_name, partner_id FROM partner_source_record WHERE system <> 'ehr'")
        .expect("query");
    let mut partners_of_family: BTreeMap<usize, BTreeSet<i64>> = BTreeMap::new();
    let mut families_of_partner: BTreeMap<i64, BTreeSet<usize>> = BTreeMap::new();
    for row in statement
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .expect("rows")
    {
        let (name, partner) = row.expect("row");
        let family = family_by_name[name.as_str()];
        partners_of_family
            .entry(family)
            .or_default()
            .insert(partner);
        families_of_partner
            .entry(partner)
            .or_default()
            .insert(family);
    }
    let duplicates_joined = world
        .partners
        .iter()
        .enumerate()
        .filter(|(_, p)| p.duplicate_of.is_some())
        .filter(|(i, _)| partners_of_family[&family_of(*i)].len() == 1)
        .count();
    let duplicates = world
        .partners
        .iter()
        .filter(|p| p.duplicate_of.is_some())
        .count();
    let families_split = partners_of_family.values().filter(|p| p.len() > 1).count();
    let false_merges: usize = families_of_partner
        .values()
        .map(|f| f.len().saturating_sub(1))
        .sum();
    // Of those, how many the world itself made indistinguishable: partners it gave one website
    // (its domains are names cut to 24 letters, so "X - Atlanta 2" and "X - Atlanta 3" share one).
    let same_website: usize = families_of_partner
        .values()
        .map(|families| {
            let websites: BTreeSet<Option<&str>> = families
                .iter()
                .map(|f| world.partners[*f].website.as_deref())
                .collect();
            let shared = families
                .iter()
                .filter(|f| world.partners[**f].website.is_some())
                .count();
            let distinct = websites.iter().filter(|w| w.is_some()).count();
            shared - distinct
        })
        .sum();
    let unified: i64 = c
        .query_row("SELECT count(*) FROM unified_referral", [], |r| r.get(0))
        .expect("count");

    println!("scale {}", scale.as_str());
    println!(
        "source_records {} (CRM partners per CRM {})",
        first.source_records,
        world.partners.len()
    );
    println!("identity_first_run_seconds {first_seconds:.3} s");
    println!("identity_second_run_seconds {second_seconds:.3} s (nothing new)");
    println!("partners_live {}", first.partners_live);
    println!("duplicates_joined_to_their_original {duplicates_joined} of {duplicates}");
    println!("families_split_across_partners {families_split}");
    println!(
        "false_merges (world partners sharing a ledger partner) {false_merges}, of which {same_website} between partners the world gave one website"
    );
    println!("suggestions {}", first.suggestions);
    println!(
        "crm_referrals_matched_to_ehr {} of {}",
        first.crm_referrals_matched_to_ehr, first.crm_referrals
    );
    println!(
        "unified_referrals {unified} (world referrals {})",
        world.referrals.len()
    );
}

/// Stores one CRM's view of the world as its connector would hand it over, in pages of 2,000.
fn store_crm(ledger: &Ledger, world: &World, system: CrmSystem) {
    let salesforce = system == CrmSystem::Salesforce;
    let id = |prefix: &str, index: usize| {
        if salesforce {
            format!("{prefix}{:015}", index + 1)
        } else {
            format!("{}{:08}", prefix.len(), index + 1)
        }
    };
    let owner = |rep: Option<usize>| rep.map(|r| id("005", r));
    let partner_id = |index: usize| id("001", index);
    let mut owners: Vec<CrmRecordBody> = world
        .reps
        .iter()
        .enumerate()
        .map(|(i, rep)| {
            CrmRecordBody::Owner(CrmOwner {
                id: id("005", i),
                name: format!("{} {}", rep.first_name, rep.last_name),
                email: Some(rep.email.clone()),
                active: rep.active,
            })
        })
        .collect();
    if salesforce {
        owners.push(CrmRecordBody::Owner(CrmOwner {
            id: "005000000000000000".into(),
            name: "Integration User".into(),
            email: None,
            active: true,
        }));
    }
    let partners = world.partners.iter().enumerate().map(|(i, p)| {
        CrmRecordBody::Partner(CrmPartner {
            id: partner_id(i),
            name: p.name.clone(),
            source_type: Some(p.source_type.as_str().to_string()),
            npi: p.npi.as_deref().and_then(|n| Npi::parse(n).ok()),
            website: p.website.clone(),
            phone: Some(p.phone.clone()),
            street: Some(p.street.clone()),
            city: Some(p.city.clone()),
            state: Some(p.state.clone()),
            zip: Some(p.zip.clone()),
            owner_id: owner(p.owner),
            payers_accepted: p.payers_accepted.clone(),
            levels_of_care: p.levels_of_care.clone(),
            accepting_referrals: Some(p.accepting_referrals),
            preferred: Some(p.preferred),
        })
    });
    let referrals = world.referrals.iter().enumerate().map(|(i, r)| {
        let parent = r.parent.map(|p| world.referrals[p].inquiry_id.clone());
        CrmRecordBody::Referral(CrmReferral {
            id: id("006", i),
            inquiry_id: Some(r.inquiry_id.clone()),
            direction: match r.direction {
                refbridge_synthetic::Direction::In => Direction::In,
                refbridge_synthetic::Direction::Out => Direction::Out,
            },
            partner_id: Some(partner_id(r.partner)),
            parent_inquiry_id: parent,
            stage: r.stage.label().to_string(),
            disposition: Disposition::parse(r.stage.as_str()),
            disposition_reason: r.reason.and_then(DispositionReason::parse),
            payer: Some(r.payer.clone()),
            plan_type: Some(r.plan_type.clone()),
            level_of_care: Some(r.level_of_care.clone()),
            inquiry_date: Some(r.inquiry_at.date_naive()),
            admit_date: r.admit_date,
            owner_id: owner(r.rep),
        })
    });
    let activities = world.activities.iter().enumerate().map(|(i, a)| {
        CrmRecordBody::Activity(CrmActivity {
            id: id("00T", i),
            kind: a.kind.as_str().to_string(),
            owner_id: owner(Some(a.rep)),
            partner_id: Some(partner_id(a.partner)),
            contact_id: None,
            at: a.at,
        })
    });
    let streams: Vec<(StreamKind, Vec<CrmRecordBody>)> = vec![
        (StreamKind::Owners, owners),
        (StreamKind::Partners, partners.collect()),
        (StreamKind::Referrals, referrals.collect()),
        (StreamKind::Activities, activities.collect()),
    ];
    let c = ledger.connection();
    let at = Utc.with_ymd_and_hms(2026, 10, 31, 0, 0, 0).unwrap();
    for (stream, bodies) in streams {
        for chunk in bodies.chunks(2_000) {
            let records = chunk
                .iter()
                .map(|body| CrmRecord {
                    id: body_id(body),
                    modified_at: at,
                    deleted: false,
                    merged_into: None,
                    body: body.clone(),
                })
                .collect();
            let page = PulledPage {
                stream,
                records,
                cursor: None,
                api_calls: 1,
            };
            c.execute_batch("BEGIN").expect("begin");
            store_page(c, system, &page, 1, "2026-10-31T00:00:00Z").expect("store page");
            c.execute_batch("COMMIT").expect("commit");
        }
    }
}

fn body_id(body: &CrmRecordBody) -> String {
    match body {
        CrmRecordBody::Partner(b) => b.id.clone(),
        CrmRecordBody::Contact(b) => b.id.clone(),
        CrmRecordBody::Referral(b) => b.id.clone(),
        CrmRecordBody::Activity(b) => b.id.clone(),
        CrmRecordBody::Owner(b) => b.id.clone(),
        CrmRecordBody::Task(b) => b.id.clone(),
    }
}
