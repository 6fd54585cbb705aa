//! Identity resolution end to end: one synthetic world served by both CRM sandboxes
//! (`refbridge sandbox`) and exported by its EHR, pulled by `refbridge sync --once`, imported by
//! `refbridge import`, resolved by `refbridge::identity::resolve`, and checked against the world
//! itself (`refbridge_synthetic::generate` with the same spec is the truth); then `refbridge
//! status --json` shows the identity part.

mod common;

use common::sandbox::World;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use refbridge::config::Config;
use refbridge::identity::resolve;
use refbridge::ledger::Ledger;
use refbridge::partners::normalize_name;
use refbridge_synthetic::{Scale, WorldSpec, generate};
use rusqlite::Connection;

const SEED: u64 = 7;
const AS_OF: &str = "2026-11-01";

/// A running `refbridge sandbox` (seed 7, as of 2026-11-01) with its written config and exports.
struct Sandbox {
    world: World,
    config: PathBuf,
    exports: PathBuf,
}

impl Sandbox {
    fn start() -> Sandbox {
        let world = World::start(&["--scale", "small", "--export-dir", "{state}/exports"]);
        // Identity is what this test is about: no tasks pushed.
        world.disable_rules();
        let config = world.config.clone();
        let exports = config.with_extension("d").join("exports");
        Sandbox {
            world,
            config,
            exports,
        }
    }

    fn run(&self, args: &[&str]) -> common::Output {
        let output = common::run_binary(args, Some(&self.world.config));
        assert_eq!(
            output.status, 0,
            "refbridge {args:?}: {}\n{}",
            output.stdout, output.stderr
        );
        output
    }
}

fn query<T: rusqlite::types::FromSql>(c: &Connection, sql: &str) -> Vec<(String, String, T)> {
    let mut statement = c.prepare(sql).unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn count(c: &Connection, sql: &str) -> u64 {
    c.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap() as u64
}

#[test]
fn a_world_pulled_from_both_crms_and_imported_from_its_ehr_resolves_to_its_partners() {
    let sandbox = Sandbox::start();
    sandbox.run(&["sync", "--once"]);
    let mut imports = vec!["import".to_string()];
    for file in ["referrals.csv", "ServiceRequest.ndjson", "Patient.ndjson"] {
        imports.push(sandbox.exports.join(file).display().to_string());
    }
    let imports: Vec<&str> = imports.iter().map(String::as_str).collect();
    sandbox.run(&imports);

    let loaded = Config::load(&sandbox.config).unwrap();
    let ledger =
        Ledger::open_existing(&loaded.config.ledger.path, Duration::from_secs(10)).unwrap();
    let c = ledger.connection();
    let report = resolve(c, &loaded.config.identity, "2026-11-01T06:00:00Z").unwrap();

    let world = generate(WorldSpec {
        seed: SEED,
        scale: Scale::Small,
        as_of: NaiveDate::parse_from_str(AS_OF, "%Y-%m-%d").unwrap(),
    });
    // A family: an original partner and its duplicate CRM records (same phone and ZIP, a name
    // variant, no NPI). Names find the family of a CRM record.
    let family_of_index = |index: usize| world.partners[index].duplicate_of.unwrap_or(index);
    let mut family_by_name: HashMap<&str, usize> = HashMap::new();
    for (index, partner) in world.partners.iter().enumerate() {
        family_by_name.insert(partner.name.as_str(), family_of_index(index));
    }
    let duplicates = world
        .partners
        .iter()
        .filter(|p| p.duplicate_of.is_some())
        .count();
    assert!(duplicates >= 2, "the world plants duplicates");

    // Every CRM record of a family, in both CRMs, is one partner; no partner holds two families.
    let crm_records: Vec<(String, String, i64)> = query(
        c,
        "SELECT s.system, s.raw_name, s.partner_id FROM partner_source_record s
         WHERE s.system <> 'ehr'",
    );
    assert_eq!(crm_records.len(), world.partners.len() * 2);
    let mut partner_of_family: BTreeMap<usize, BTreeSet<i64>> = BTreeMap::new();
    let mut families_of_partner: BTreeMap<i64, BTreeSet<usize>> = BTreeMap::new();
    for (system, name, partner) in &crm_records {
        let family = *family_by_name
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{system} record {name:?} is not in the world"));
        partner_of_family
            .entry(family)
            .or_default()
            .insert(*partner);
        families_of_partner
            .entry(*partner)
            .or_default()
            .insert(family);
    }
    for (family, partners) in &partner_of_family {
        assert_eq!(
            partners.len(),
            1,
            "{} and its duplicates are one partner in both CRMs",
            world.partners[*family].name
        );
    }
    for (partner, families) in &families_of_partner {
        assert_eq!(families.len(), 1, "partner {partner} mixes {families:?}");
    }
    let family_partner: BTreeMap<usize, i64> = partner_of_family
        .iter()
        .map(|(family, partners)| (*family, *partners.first().unwrap()))
        .collect();

    // EHR spellings of a family member's name (or carrying its NPI) are in the family's partner.
    let mut family_by_normalized: HashMap<String, usize> = HashMap::new();
    let mut family_by_npi: HashMap<&str, usize> = HashMap::new();
    for (index, partner) in world.partners.iter().enumerate() {
        family_by_normalized.insert(normalize_name(&partner.name), family_of_index(index));
        if let Some(npi) = &partner.npi {
            family_by_npi.insert(npi.as_str(), index);
        }
    }
    let spellings: Vec<(String, String, i64)> = query(
        c,
        "SELECT external_key, normalized_name, partner_id FROM partner_source_record
         WHERE system = 'ehr'",
    );
    let mut leftovers: BTreeMap<i64, usize> = BTreeMap::new();
    for (key, normalized, partner) in &spellings {
        let by_npi = refbridge::partners::npi_of_ehr_key(key)
            .and_then(|npi| family_by_npi.get(npi.to_string().as_str()).copied());
        let family = by_npi.or_else(|| family_by_normalized.get(normalized).copied());
        match family {
            Some(family) => assert_eq!(
                *partner, family_partner[&family],
                "EHR spelling {key:?} belongs with {}",
                world.partners[family].name
            ),
            None => {
                // A variant such as "MERCY HOSP ED": nothing but its words ties it to a partner.
                let mut words: Vec<&str> = normalized.split_whitespace().collect();
                while words.last() == Some(&"ed") {
                    words.pop();
                }
                let family = *family_by_normalized
                    .get(&words.join(" "))
                    .unwrap_or_else(|| panic!("EHR spelling {key:?} is not in the world"));
                assert!(
                    !family_partner.values().any(|p| p == partner),
                    "{key:?} was merged on its words alone"
                );
                leftovers.insert(*partner, family);
            }
        }
    }
    // Each such spelling is offered to a person as a merge with its family's partner.
    for (partner, family) in &leftovers {
        let expected = family_partner[family];
        let suggested = count(
            c,
            &format!(
                "SELECT count(*) FROM identity_suggestion WHERE method = 'name_words'
                 AND partner_id = {} AND candidate_id = {}",
                partner.min(&expected),
                partner.max(&expected)
            ),
        );
        assert_eq!(suggested, 1, "partner {partner} suggested with {expected}");
    }

    // Live partners: the originals (every one is in the CRMs), plus the spellings left to a person.
    let originals = world
        .partners
        .iter()
        .filter(|p| p.duplicate_of.is_none())
        .count();
    assert_eq!(report.partners_live as usize, originals + leftovers.len());
    assert_eq!(
        count(c, "SELECT count(*) FROM partner WHERE merged_into IS NULL"),
        report.partners_live
    );

    // Every referral once: the EHR's, and every CRM deal matched to it.
    assert_eq!(
        count(c, "SELECT count(*) FROM unified_referral"),
        world.referrals.len() as u64
    );
    assert_eq!(report.crm_referrals, world.referrals.len() as u64 * 2);
    assert_eq!(report.crm_referrals_matched_to_ehr, report.crm_referrals);
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM crm_referral r JOIN referral e ON e.id = r.referral_id
             WHERE r.partner_id IS NOT e.partner_id"
        ),
        0,
        "a deal and its EHR referral name the same partner"
    );

    // Reps: every world rep once per CRM (Salesforce also lists its integration user).
    for rep in &world.reps {
        for system in ["salesforce", "hubspot"] {
            let found = count(
                c,
                &format!(
                    "SELECT count(*) FROM rep WHERE system = '{system}' AND email = '{}'",
                    rep.email
                ),
            );
            assert_eq!(found, 1, "{} in {system}", rep.email);
        }
    }
    assert_eq!(report.reps as usize, world.reps.len() * 2 + 1);
    assert!(report.activities as usize >= world.activities.len() * 2);
    assert_eq!(
        count(c, "SELECT count(*) FROM activity WHERE partner_id IS NULL"),
        0,
        "every touch has its partner"
    );
    assert_eq!(
        count(c, "SELECT count(*) FROM partner_profile"),
        originals as u64
    );

    // A second run finds nothing new.
    let again = resolve(c, &loaded.config.identity, "2026-11-01T07:00:00Z").unwrap();
    assert_eq!(again.partners_merged_this_run, 0);
    assert_eq!(again.partners_live, report.partners_live);
    assert_eq!(again.suggestions, report.suggestions);

    // `status --json` shows the identity part: live partners, methods, uncertain matches with a
    // merge ready to paste.
    let status = sandbox.run(&["status", "--json"]).json();
    let identity = &status["identity"];
    assert_eq!(
        identity["live_partners"], report.partners_live,
        "{identity}"
    );
    let by_method = identity["source_records_by_method"].as_object().unwrap();
    let total: u64 = by_method.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, report.source_records);
    assert!(
        by_method.contains_key("npi") && by_method.contains_key("phone"),
        "{by_method:?}"
    );
    let suggestions = identity["suggestions"].as_array().unwrap();
    assert_eq!(suggestions.len() as u64, report.suggestions);
    for suggestion in suggestions {
        let line = suggestion["config"].as_str().unwrap();
        assert!(
            line.starts_with("[[identity.merge]]\nrecords = [\""),
            "{line}"
        );
        let parsed: toml::Table = toml::from_str(line).unwrap();
        assert_eq!(
            parsed["identity"]["merge"][0]["records"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert!(suggestion["reason"].as_str().unwrap().len() > 10);
    }
    let text = sandbox.run(&["status"]).stdout;
    assert!(text.contains("Identity"), "{text}");
}
