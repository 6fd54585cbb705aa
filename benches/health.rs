//! Benchmark: partner health on a large ledger (5,000 partners, 1,000,000 referrals over 18
//! months by default), against the cost of one grouped SQL scan of the same referrals.
//!
//! Then the rules, as a cycle's evaluation runs them after health: refer-out routing for the leads
//! that did not convert, every `[rules]` rule (defaults) into conditions, and the outbox plan
//! queued under the per-rep daily budget — alone, and together with a first health run
//! (`health_rules_ratio_vs_scan`), and again the same day with the alerts in place.
//!
//! Run: `cargo bench --bench health` (options after `--`: `--partners N`, `--referrals N`,
//! `--dir DIR` to keep the ledger). Prints `name value unit` lines; every timing is the median of
//! three. The ledger is written directly with SQL (seeded SplitMix64), like an import and a pull
//! would leave it: rows in date order, every column an export fills, four indexes; CRM profiles
//! in both CRMs with owners, reps known in both by e-mail, routing facts (ZIP3, payers, levels of
//! care), deals with disposition reasons, and some uncertain identity matches.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use refbridge::health::{self, HealthConfig, PartnerHealth};
use refbridge::ledger::Ledger;
use refbridge::outbox::{self, Plan, ReconcileOptions};
use refbridge::routing::{self, RoutingConfig};
use refbridge::rules::{self, OutboxConfig, RuleInputs, RulesConfig};
use refbridge_model::crm::CrmSystem;
use refbridge_synthetic::Random;
use rusqlite::{Connection, params};

/// The generated history ends here (and health is computed as of it).
const AS_OF: (i32, u32, u32) = (2026, 11, 1);
const HISTORY_DAYS: u64 = 540;
const NOW: &str = "2026-11-27T06:00:00Z";
/// When the rules run: the evening of `AS_OF`, so that a rep's daily budget is that day's (a
/// cycle evaluates as of the day it runs).
const RULES_NOW: &str = "2026-11-01T18:00:00Z";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let partners: u64 = option("--partners").map_or(5_000, |n| n.parse().expect("--partners N"));
    let referrals: u64 =
        option("--referrals").map_or(1_000_000, |n| n.parse().expect("--referrals N"));
    let temporary = tempfile::tempdir().expect("scratch directory");
    let scratch = match option("--dir") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).expect("--dir");
            for stale in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
                let _ = std::fs::remove_file(dir.join(stale));
            }
            dir
        }
        None => temporary.path().to_path_buf(),
    };
    let as_of = NaiveDate::from_ymd_opt(AS_OF.0, AS_OF.1, AS_OF.2).unwrap();

    let ledger = Ledger::open(&scratch.join("ledger.db"), Duration::from_secs(10)).expect("ledger");
    let started = Instant::now();
    let counts = generate(ledger.connection(), partners, referrals, as_of).expect("generate");
    eprintln!(
        "generated {partners} partners, {referrals} referrals, {} activities, {} profiles, {} CRM deals in {:.1?}",
        counts.activities,
        counts.profiles,
        counts.crm_referrals,
        started.elapsed()
    );
    let connection = ledger.connection();
    connection
        .execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("analyze");

    // (a) The baseline: one grouped scan of every referral, fully stepped.
    let scan = median(|| {
        let started = Instant::now();
        let rows = step_all(
            connection,
            "SELECT partner_id, substr(inquiry_date, 1, 7), count(*) FROM referral GROUP BY 1, 2",
        );
        assert!(rows > 0);
        started.elapsed()
    });
    // What reading the columns health needs costs: through the view, and from its two halves.
    let view = median(|| {
        let started = Instant::now();
        step_all(
            connection,
            "SELECT partner_id, direction, inquiry_date, disposition FROM unified_referral",
        );
        started.elapsed()
    });
    let direct = median(|| {
        let started = Instant::now();
        step_all(
            connection,
            "SELECT partner_id, direction, inquiry_date, disposition FROM referral",
        );
        step_all(
            connection,
            "SELECT partner_id, direction, inquiry_date, disposition FROM crm_referral
             WHERE referral_id IS NULL AND deleted = 0 AND inquiry_date IS NOT NULL",
        );
        started.elapsed()
    });

    let config = HealthConfig::default();
    // (b) A first run: no snapshot or run stored before it.
    let mut scored = 0;
    let first = median(|| {
        connection
            .execute_batch("DELETE FROM health_snapshot; DELETE FROM health_run;")
            .expect("clear");
        let started = Instant::now();
        let refreshed = health::refresh(connection, &config, as_of, NOW).expect("refresh");
        let elapsed = started.elapsed();
        assert!(refreshed.recomputed);
        scored = refreshed.health.len();
        elapsed
    });
    // (c) The same run again, nothing new in the ledger.
    let second = median(|| {
        let started = Instant::now();
        let refreshed = health::refresh(connection, &config, as_of, NOW).expect("refresh");
        let elapsed = started.elapsed();
        assert!(!refreshed.recomputed);
        assert_eq!(refreshed.health.len(), scored);
        elapsed
    });
    let at_risk = connection
        .query_row(
            "SELECT count(*) FROM health_snapshot WHERE state = 'at_risk'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .unwrap();

    // (d) The rules alone, on today's health, with no alert open yet.
    let today = health::refresh(connection, &config, as_of, NOW)
        .expect("refresh")
        .health;
    let mut first_pass = None;
    let mut parts: [Vec<Duration>; 3] = Default::default();
    let rules_alone = median(|| {
        clear_alerts(connection);
        let started = Instant::now();
        let pass = rules_pass(connection, &today, as_of);
        let elapsed = started.elapsed();
        for (all, part) in parts.iter_mut().zip(pass.parts) {
            all.push(part);
        }
        first_pass = Some(pass);
        elapsed
    });
    let first_pass = first_pass.expect("a rules pass");
    let [routing_part, rules_part, plan_part] = parts.map(|mut times| {
        times.sort();
        times[1]
    });
    // (e) What a cycle's evaluation does after identity: a first health run, then the rules.
    let health_rules = median(|| {
        connection
            .execute_batch("DELETE FROM health_snapshot; DELETE FROM health_run;")
            .expect("clear");
        clear_alerts(connection);
        let started = Instant::now();
        let refreshed = health::refresh(connection, &config, as_of, NOW).expect("refresh");
        assert!(refreshed.recomputed);
        let pass = rules_pass(connection, &refreshed.health, as_of);
        let elapsed = started.elapsed();
        assert_eq!(pass.plan.create.len(), first_pass.plan.create.len());
        elapsed
    });
    // (f) The same evaluation again the same day: the alerts are open or waiting, nothing new.
    let mut again = None;
    let rules_second = median(|| {
        let started = Instant::now();
        let pass = rules_pass(connection, &today, as_of);
        let elapsed = started.elapsed();
        again = Some(pass);
        elapsed
    });
    let again = again.expect("a rules pass");

    println!("health_partners {partners} partners");
    println!("health_referrals {referrals} referrals");
    println!("health_partners_scored {scored} partners");
    println!("health_partners_at_risk {at_risk} partners");
    println!("health_baseline_scan_seconds {:.3} s", scan.as_secs_f64());
    println!(
        "health_unified_view_scan_seconds {:.3} s",
        view.as_secs_f64()
    );
    println!(
        "health_direct_tables_scan_seconds {:.3} s",
        direct.as_secs_f64()
    );
    println!("health_first_run_seconds {:.3} s", first.as_secs_f64());
    println!(
        "health_ratio_vs_scan {:.2} x",
        first.as_secs_f64() / scan.as_secs_f64()
    );
    println!("health_second_run_seconds {:.3} s", second.as_secs_f64());
    println!(
        "health_second_run_ratio_vs_first {:.3} x",
        second.as_secs_f64() / first.as_secs_f64()
    );

    let plan = &first_pass.plan;
    println!("rules_refer_out_leads {} leads", first_pass.leads);
    for (rule, count) in &first_pass.conditions {
        println!("rules_conditions_{rule} {count} conditions");
    }
    for (rule, count) in by_rule(&plan.create) {
        println!("rules_queued_{rule} {count} intents");
    }
    for (rule, count) in by_rule(&plan.waiting) {
        println!("rules_waiting_{rule} {count} alerts");
    }
    println!("rules_queued {} intents", plan.create.len());
    println!("rules_waiting {} alerts", plan.waiting.len());
    println!("rules_not_a_task {} conditions", plan.invalid.len());
    println!(
        "rules_owners_with_tasks {} owners (CRM owner ids; each rep is one in each CRM)",
        first_pass.owners_with_tasks
    );
    println!(
        "rules_routing_seconds {:.3} s (refer-out options for the leads)",
        routing_part.as_secs_f64()
    );
    println!(
        "rules_evaluate_seconds {:.3} s (every rule into conditions)",
        rules_part.as_secs_f64()
    );
    println!(
        "rules_outbox_plan_seconds {:.3} s (alerts and intents under the budget, committed)",
        plan_part.as_secs_f64()
    );
    println!("rules_seconds {:.3} s", rules_alone.as_secs_f64());
    println!("health_rules_seconds {:.3} s", health_rules.as_secs_f64());
    println!(
        "health_rules_ratio_vs_scan {:.2} x",
        health_rules.as_secs_f64() / scan.as_secs_f64()
    );
    println!(
        "rules_second_run_seconds {:.3} s (same day: {} unchanged, {} waiting, {} new)",
        rules_second.as_secs_f64(),
        again.plan.unchanged,
        again.plan.waiting.len(),
        again.plan.create.len()
    );
}

/// What one rules pass found and queued.
struct RulesPass {
    leads: usize,
    conditions: BTreeMap<&'static str, u64>,
    plan: Plan,
    owners_with_tasks: u64,
    /// Refer-out routing, the rules, the outbox plan (queued and committed).
    parts: [Duration; 3],
}

/// Forgets every alert and queued intent, as on a ledger that never ran the rules.
fn clear_alerts(connection: &Connection) {
    connection
        .execute_batch("DELETE FROM alert; DELETE FROM outbox;")
        .expect("clear alerts");
}

/// What a cycle's evaluation does after health (`cycle::evaluate`): refer-out routing for the
/// leads, every rule with the `[rules]` defaults, and the outbox plan committed (alerts and
/// intents written) under the daily budget. Both CRMs are configured.
fn rules_pass(connection: &Connection, health: &[PartnerHealth], as_of: NaiveDate) -> RulesPass {
    let rules_config = RulesConfig::default();
    let started = Instant::now();
    let leads = routing::lead_suggestions(connection, &RoutingConfig::default(), as_of)
        .expect("refer-out routing");
    let routed = started.elapsed();
    let conditions = rules::evaluate(
        connection,
        &rules_config,
        &RuleInputs {
            as_of,
            health,
            leads: &leads,
            configured: &[CrmSystem::Salesforce, CrmSystem::Hubspot],
        },
    )
    .expect("rules");
    let evaluated = started.elapsed();
    connection.execute_batch("BEGIN IMMEDIATE").expect("begin");
    let plan = outbox::reconcile(
        connection,
        &conditions,
        &rules_config,
        &OutboxConfig::default(),
        &ReconcileOptions {
            as_of,
            today: as_of,
            now: RULES_NOW,
            allow_mass_change: false,
        },
    )
    .expect("outbox plan");
    connection.execute_batch("COMMIT").expect("commit");
    let planned = started.elapsed();
    let mut by_rule = BTreeMap::new();
    for condition in &conditions {
        *by_rule.entry(condition.rule).or_default() += 1;
    }
    let (queued, owners_with_tasks): (i64, i64) = connection
        .query_row(
            "SELECT (SELECT count(*) FROM outbox WHERE status = 'pending'),
                    (SELECT count(DISTINCT owner_id) FROM alert WHERE state = 'open')",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("count the outbox");
    // Every intent the plan created is queued for a push (on the second run the same day, the
    // ones queued by the first are still there).
    assert!(queued as usize >= plan.create.len());
    RulesPass {
        leads: leads.len(),
        conditions: by_rule,
        plan,
        owners_with_tasks: owners_with_tasks as u64,
        parts: [routed, evaluated - routed, planned - evaluated],
    }
}

/// Planned tasks counted by rule.
fn by_rule(tasks: &[outbox::PlannedTask]) -> BTreeMap<&str, u64> {
    let mut counts = BTreeMap::new();
    for task in tasks {
        *counts.entry(task.rule.as_str()).or_default() += 1;
    }
    counts
}

/// The median of three timings.
fn median(mut run: impl FnMut() -> Duration) -> Duration {
    let mut times = [run(), run(), run()];
    times.sort();
    times[1]
}

/// Steps through every row of `sql`, reading each column; returns the row count.
fn step_all(connection: &Connection, sql: &str) -> u64 {
    let mut statement = connection.prepare(sql).expect("prepare");
    let columns = statement.column_count();
    let mut rows = statement.query([]).expect("query");
    let mut count = 0;
    while let Some(row) = rows.next().expect("step") {
        for index in 0..columns {
            std::hint::black_box(row.get_ref(index).expect("column"));
        }
        count += 1;
    }
    count
}

struct Generated {
    activities: u64,
    profiles: u64,
    crm_referrals: u64,
}

/// How a partner's referral rate moves over the history: (weight in the first 420 days, in the
/// next 60, in the last 60).
fn phase_weights(random: &mut Random) -> [f64; 3] {
    // Heavy-tailed sizes: most partners send a little, a few send a lot.
    let size = (1.0 / (1.0 - random.unit() * 0.999)).powf(0.8);
    match random.below(20) {
        0..=12 => [size, size, size],
        13 | 14 => [size * 1.3, size * 0.5, size * 0.2],
        15 => [size, 0.0, 0.0],
        16 => [0.0, 0.0, size * 3.0],
        _ => [size * 0.1, size * 0.1, size * 0.1],
    }
}

fn generate(
    connection: &Connection,
    partners: u64,
    referrals: u64,
    as_of: NaiveDate,
) -> rusqlite::Result<Generated> {
    const PAYERS: &[&str] = &[
        "Aetna",
        "Cigna",
        "UnitedHealthcare",
        "BCBS",
        "Medicaid",
        "Self-pay",
    ];
    const PLANS: &[&str] = &["PPO", "HMO", "EPO", "Medicaid", "self-pay"];
    const LEVELS: &[&str] = &["3.7", "3.5", "2.1", "2.5", "1", "OTP"];
    const REASONS: &[&str] = &[
        "out_of_network",
        "level_of_care_mismatch",
        "capacity",
        "geography",
    ];
    const KINDS: &[&str] = &["call", "visit", "meeting", "email", "note"];

    const DECLINES: &[&str] = &[
        "out_of_network",
        "level_of_care_mismatch",
        "capacity",
        "geography",
        "declined",
        "no_contact",
    ];
    const REPS: u64 = 12;

    let mut random = Random::new(2026);
    // What only the rules read (homes, routing facts, deal reasons) comes from a stream of its
    // own, so that the health figures stay those of the ledger without it.
    let mut extra = Random::new(2027);
    let first_day = as_of.checked_sub_days(Days::new(HISTORY_DAYS - 1)).unwrap();
    let transaction = connection.unchecked_transaction()?;
    connection.execute(
        "INSERT INTO import_run (file_name, file_path, sha256, size_bytes, started_at, finished_at,
             rows, outcome)
         VALUES ('bench.csv', '/bench/bench.csv', 'bench', 0, ?1, ?1, ?2, 'imported')",
        params![NOW, referrals as i64],
    )?;
    let run = connection.last_insert_rowid();

    let mut weights = Vec::with_capacity(partners as usize);
    {
        let mut insert = connection.prepare(
            "INSERT INTO partner (id, name, normalized_name, source_type, origin, created_at, updated_at)
             VALUES (?1, ?2, lower(?2), ?3, 'ehr', ?4, ?4)",
        )?;
        for id in 1..=partners {
            let kind = [
                "Hospital",
                "Family Practice",
                "Counseling",
                "Detox Center",
                "Drug Court",
            ][(id % 5) as usize];
            insert.execute(params![
                id as i64,
                format!("Partner {id} {kind}"),
                kind.to_lowercase(),
                NOW
            ])?;
            weights.push(phase_weights(&mut random));
        }
    }
    // Cumulative weights per phase, for drawing the partner of each referral.
    let cumulative: Vec<Vec<f64>> = (0..3)
        .map(|phase| {
            weights
                .iter()
                .scan(0.0, |sum, w| {
                    *sum += w[phase];
                    Some(*sum)
                })
                .collect()
        })
        .collect();
    let draw_partner = |random: &mut Random, phase: usize| -> i64 {
        let table = &cumulative[phase];
        let target = random.unit() * table.last().copied().unwrap_or(0.0);
        table
            .partition_point(|&sum| sum <= target)
            .min(table.len() - 1) as i64
            + 1
    };

    {
        let mut insert = connection.prepare(
            "INSERT INTO referral (source_system, inquiry_id, direction, partner_id,
                 parent_inquiry_id, inquiry_date, referred_by, rep, payer, plan_type,
                 level_of_care_scheme, level_of_care_code, disposition, disposition_reason,
                 admit_date, patient_token, zip3, first_import_run_id, last_import_run_id)
             VALUES ('ehr', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'asam3', ?10, ?11, ?12, ?13, ?14,
                 ?15, ?16, ?16)",
        )?;
        for i in 0..referrals {
            let day_index = i * HISTORY_DAYS / referrals.max(1);
            let day = first_day.checked_add_days(Days::new(day_index)).unwrap();
            let phase = match day_index {
                0..420 => 0,
                420..480 => 1,
                _ => 2,
            };
            let partner = draw_partner(&mut random, phase);
            let age = HISTORY_DAYS - 1 - day_index;
            let outbound = random.below(10) == 0;
            let roll = random.below(10);
            let (disposition, reason, admit) = if outbound {
                (if roll < 5 { "admitted" } else { "pending" }, None, None)
            } else if age < 10 && roll < 6 {
                ("pending", None, None)
            } else {
                match roll {
                    0..=3 => ("admitted", None, Some(day.succ_opt().unwrap().to_string())),
                    4..=6 => ("not_admitted", Some(*random.pick(REASONS)), None),
                    7 => ("referred_out", Some(*random.pick(REASONS)), None),
                    _ => ("pending", None, None),
                }
            };
            let inquiry = format!("INQ-{i:08}");
            let token = format!(
                "{:016x}{:016x}{:016x}{:016x}",
                random.next_u64(),
                random.next_u64(),
                random.next_u64(),
                random.next_u64()
            );
            insert.execute(params![
                if outbound {
                    format!("{inquiry}>partner {partner}")
                } else {
                    inquiry.clone()
                },
                if outbound { "out" } else { "in" },
                partner,
                outbound.then_some(inquiry),
                day.to_string(),
                format!("Dr. Referrer {}", partner % 7),
                format!("Rep {}", partner % 12),
                *random.pick(PAYERS),
                *random.pick(PLANS),
                *random.pick(LEVELS),
                disposition,
                reason,
                admit,
                token,
                format!("{:03}", 100 + random.below(800)),
                run,
            ])?;
        }
    }

    // Twelve reps, each a user in Salesforce and an owner in HubSpot under one e-mail (one
    // person, one daily budget).
    {
        let mut rep = connection.prepare(
            "INSERT INTO rep (system, external_id, name, email, active) VALUES (?1, ?2, ?3, ?4, 1)",
        )?;
        for owner in 0..REPS {
            let email = format!("rep{owner}@facility.example");
            let name = format!("Rep {owner}");
            rep.execute(params!["salesforce", format!("005{owner:04}"), name, email])?;
            rep.execute(params!["hubspot", format!("7{owner:04}"), name, email])?;
        }
    }

    // CRM profiles for 80% of partners (some unowned, some with an inactive owner; 70% at home
    // in Salesforce, the rest in HubSpot) with what routing matches on, activities for most of
    // those, and deals: most describe an EHR referral, some stand alone.
    let mut profiles = 0;
    let mut activities = 0;
    {
        let mut profile = connection.prepare(
            "INSERT INTO partner_profile (partner_id, home_system, home_crm_id, owner_id,
                 owner_name, owner_active, zip3, payers, levels_of_care, accepting_referrals,
                 preferred)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut activity = connection.prepare(
            "INSERT INTO activity (system, crm_id, partner_id, kind, owner_id, at)
             VALUES ('salesforce', ?1, ?2, ?3, ?4, ?5)",
        )?;
        for id in 1..=partners as i64 {
            if random.below(5) == 0 {
                continue;
            }
            let owner = random.below(REPS);
            let (owner_id, active) = match random.below(20) {
                0 | 1 => (None, None),
                2 => (Some(format!("005{owner:04}")), Some(0)),
                _ => (Some(format!("005{owner:04}")), Some(1)),
            };
            let in_hubspot = extra.below(10) < 3;
            let (home_system, home_crm_id, home_owner_id) = if in_hubspot {
                (
                    "hubspot",
                    format!("{}", 9_000_000 + id),
                    owner_id.as_ref().map(|_| format!("7{owner:04}")),
                )
            } else {
                ("salesforce", format!("001{id:08}"), owner_id.clone())
            };
            let payers: Vec<&str> = PAYERS
                .iter()
                .copied()
                .filter(|_| extra.chance(0.5))
                .collect();
            let levels: Vec<&str> = LEVELS
                .iter()
                .copied()
                .filter(|_| extra.chance(0.4))
                .collect();
            profile.execute(params![
                id,
                home_system,
                home_crm_id,
                home_owner_id,
                owner_id.as_ref().map(|_| format!("Rep {owner}")),
                active,
                format!("{:03}", 300 + extra.below(20)),
                serde_json::to_string(&payers).expect("payers"),
                serde_json::to_string(&levels).expect("levels"),
                extra.chance(0.85),
                extra.chance(0.15),
            ])?;
            profiles += 1;
            for _ in 0..random.below(50) {
                activities += 1;
                let day = first_day
                    .checked_add_days(Days::new(random.below(HISTORY_DAYS)))
                    .unwrap();
                activity.execute(params![
                    format!("00T{activities:09}"),
                    id,
                    *random.pick(KINDS),
                    owner_id,
                    format!(
                        "{day}T{:02}:{:02}:00Z",
                        8 + random.below(10),
                        random.below(60)
                    ),
                ])?;
            }
        }
    }
    let mut crm_referrals = 0;
    {
        let mut deal = connection.prepare(
            "INSERT INTO crm_referral (system, crm_id, partner_id, referral_id, inquiry_id,
                 direction, stage, disposition, inquiry_date, disposition_reason, payer,
                 level_of_care, owner_id)
             VALUES ('salesforce', ?1, ?2, ?3, ?4, 'in', ?5, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for i in 0..(referrals / 50) {
            let day_index = random.below(HISTORY_DAYS);
            let day = first_day.checked_add_days(Days::new(day_index)).unwrap();
            let linked = random.below(4) != 0;
            let referral_id = linked.then(|| 1 + random.below(referrals.max(1)) as i64);
            let partner = draw_partner(&mut random, (day_index * 3 / HISTORY_DAYS) as usize);
            let disposition = ["admitted", "not_admitted", "pending"][random.below(3) as usize];
            let reason = (disposition == "not_admitted").then(|| *extra.pick(DECLINES));
            deal.execute(params![
                format!("006{i:09}"),
                partner,
                referral_id,
                format!("CRM-{i:08}"),
                disposition,
                day.to_string(),
                reason,
                extra.chance(0.7).then(|| *extra.pick(PAYERS)),
                extra.chance(0.5).then(|| *extra.pick(LEVELS)),
                format!("005{:04}", extra.below(REPS)),
            ])?;
            crm_referrals += 1;
        }
    }
    // Uncertain identity matches, one partner in a hundred: a task each for ops.
    {
        let mut suggestion = connection.prepare(
            "INSERT OR IGNORE INTO identity_suggestion (partner_id, candidate_id, method,
                 confidence, reason, first_seen_at, last_seen_at)
             VALUES (?1, ?2, 'name', ?3, 'similar name in the same ZIP3', ?4, ?4)",
        )?;
        for _ in 0..partners / 100 {
            let a = 1 + extra.below(partners.max(2) - 1) as i64;
            let b = a + 1 + extra.below(50).min(partners - a as u64 - 1) as i64;
            suggestion.execute(params![a, b, 0.6 + extra.unit() * 0.3, NOW])?;
        }
    }
    transaction.commit()?;
    Ok(Generated {
        activities,
        profiles,
        crm_referrals,
    })
}
