//! `refbridge demo`: the whole product on an embedded default, in one command.
//!
//! Starts both CRM sandboxes in this process on a small seeded world, writes the world's EHR
//! exports into the inbox of a fresh directory with a config for them, runs two full cycles exactly
//! as `sync --once` (and the daemon) does, and prints what happened: what was pulled, partner
//! health, the tasks pushed per CRM and rep, refer-out options for leads that did not convert, and
//! the second cycle changing nothing. The ledger and the config stay behind for `health`, `status`,
//! `plan` and `route`; the sandboxes stop with the demo. Progress goes to standard error, the
//! report to standard output. Like everything else here, it prints no patient value: the exports
//! carry synthetic ones, and they stop at the parser.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use refbridge_synthetic::{Scale, WorldSpec, exports, generate};
use rusqlite::Connection;

use crate::config::Config;
use crate::cycle::{CycleOptions, CycleReport, run_cycle};
use crate::health::report::{HealthFormat, HealthRequest};
use crate::ledger::Ledger;
use crate::sync::CrmClient;

/// A file in the demo directory that says refbridge made it (and may clear it on the next run).
const MARKER: &str = ".refbridge-demo";

/// What `refbridge demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    pub directory: PathBuf,
    pub seed: u64,
}

/// Progress lines for a person watching the terminal.
struct Progress {
    started: Instant,
    step: usize,
}

impl Progress {
    const STEPS: usize = 6;

    fn step(&mut self, what: &str) {
        self.step += 1;
        eprintln!(
            "[{}/{}] {what} ({:.1} s)",
            self.step,
            Progress::STEPS,
            self.started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    }
}

/// Runs the demo; returns the report to print.
pub async fn run(request: DemoRequest) -> anyhow::Result<String> {
    let mut progress = Progress {
        started: Instant::now(),
        step: 0,
    };
    prepare_directory(&request.directory)?;
    let as_of = Utc::now().date_naive();

    progress.step("generating a synthetic facility and starting the CRM sandboxes");
    let world = Arc::new(generate(WorldSpec {
        seed: request.seed,
        scale: Scale::Small,
        as_of,
    }));
    let loopback = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0);
    let salesforce = refbridge_salesforce::sandbox::start(
        world.clone(),
        refbridge_salesforce::sandbox::SandboxOptions {
            bind: loopback,
            ..Default::default()
        },
    )
    .await
    .context("cannot start the Salesforce sandbox")?;
    let hubspot = refbridge_hubspot::sandbox::start(
        world.clone(),
        refbridge_hubspot::sandbox::SandboxOptions {
            bind: loopback,
            ..Default::default()
        },
    )
    .await
    .context("cannot start the HubSpot sandbox")?;
    let config_path = request.directory.join("refbridge.toml");
    crate::sandbox::write_config(&config_path, &salesforce, &hubspot, &world.facility.npi)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let inbox = config_path.with_extension("d").join("inbox");
    exports::write_exports(&world, &inbox)
        .with_context(|| format!("cannot write the EHR exports into {}", inbox.display()))?;

    progress.step("connecting to both CRMs (HubSpot needs its task key property once)");
    let loaded = Config::load(&config_path).map_err(|error| anyhow::anyhow!("{error}"))?;
    let clients = CrmClient::all(&loaded).map_err(|error| anyhow::anyhow!(error))?;
    for client in &clients {
        if let CrmClient::Hubspot(client) = client {
            client
                .create_task_key_property()
                .await
                .context("cannot create HubSpot's task key property")?;
        }
    }
    let mut ledger = Ledger::open(
        &loaded.config.ledger.path,
        Duration::from_secs(loaded.config.ledger.busy_timeout_seconds),
    )?;
    // The sandboxes settle at once; the written config's settle lag is 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;

    progress.step("cycle 1: pull both CRMs, import the EHR exports, resolve, score, push");
    let options = CycleOptions {
        now: Utc::now(),
        reconcile: false,
        allow_mass_change: false,
        stop: crate::stop::StopSignal::new(),
    };
    let first = run_cycle(&loaded, &mut ledger, &clients, options.clone()).await?;
    let calls_after_first = first.api_calls;

    progress.step("cycle 2: the same again, to show that nothing is repeated");
    let second = run_cycle(
        &loaded,
        &mut ledger,
        &clients,
        CycleOptions {
            now: Utc::now(),
            ..options
        },
    )
    .await?;

    progress.step("reading the ledger for the report");
    let mut out = String::new();
    report_pulled(&mut out, &first);
    report_identity_and_health(&mut out, &loaded, &ledger, &first)?;
    report_tasks(
        &mut out,
        ledger.connection(),
        &first,
        loaded.config.rules.daily_budget_per_rep,
    )?;
    report_refer_out(&mut out, &loaded, ledger.connection(), as_of)?;
    report_second_cycle(&mut out, &second, calls_after_first);
    report_next(&mut out, &config_path);

    progress.step("stopping the sandboxes");
    salesforce.shutdown().await;
    hubspot.shutdown().await;
    Ok(out)
}

/// Whether the demo may use `directory`: absent, empty, or made by an earlier demo.
pub fn check_directory(directory: &Path) -> Result<(), String> {
    if !directory.exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(directory)
        .map_err(|error| format!("cannot read {}: {error}", directory.display()))?;
    if entries.next().is_some() && !directory.join(MARKER).exists() {
        return Err(format!(
            "{} is not empty and was not made by `refbridge demo`: choose another --dir",
            directory.display()
        ));
    }
    Ok(())
}

/// A fresh directory: created, or emptied when an earlier demo made it; anything else is refused.
fn prepare_directory(directory: &Path) -> anyhow::Result<()> {
    check_directory(directory).map_err(|message| anyhow::anyhow!(message))?;
    if directory.join(MARKER).exists() {
        std::fs::remove_dir_all(directory)
            .with_context(|| format!("cannot clear the earlier demo in {}", directory.display()))?;
    }
    std::fs::create_dir_all(directory)
        .with_context(|| format!("cannot create {}", directory.display()))?;
    std::fs::write(
        directory.join(MARKER),
        "made by `refbridge demo`; the next demo run clears this directory\n",
    )?;
    Ok(())
}

fn heading(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n== {title}");
}

fn report_pulled(out: &mut String, report: &CycleReport) {
    heading(out, "Pulled (cycle 1)");
    for stream in &report.pulled.streams {
        let _ = writeln!(
            out,
            "  {:<10} {:<10} {:>6} records  {:>3} API call(s)  {}",
            stream.system,
            stream.stream,
            stream.counts.read,
            stream.counts.api_calls,
            stream.outcome
        );
    }
    if let Some(imported) = &report.imported {
        for file in &imported.file_reports {
            let name = file
                .path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let _ = writeln!(
                out,
                "  ehr        {:<22} {:>6} rows: {} new, {} updated referrals, {} quarantined",
                name,
                file.counts.rows,
                file.counts.referrals_new,
                file.counts.referrals_updated,
                file.counts.quarantined
            );
        }
    }
    let _ = writeln!(
        out,
        "  {} API call(s) in cycle 1, authentication included",
        report.api_calls
    );
}

fn report_identity_and_health(
    out: &mut String,
    loaded: &crate::config::LoadedConfig,
    ledger: &Ledger,
    report: &CycleReport,
) -> anyhow::Result<()> {
    if let Some(evaluation) = &report.evaluation {
        let i = &evaluation.identity;
        heading(out, "Partners");
        let _ = writeln!(
            out,
            "  {} partners from {} records (EHR spellings, Salesforce accounts, HubSpot companies); {} opportunities/deals matched to the EHR referral of the same inquiry; {} uncertain matches left for a person (`status`)",
            i.partners_live, i.source_records, i.crm_referrals_matched_to_ehr, i.suggestions
        );
    }
    heading(out, "Partner health, worst first");
    let table = crate::health::report::run(
        ledger.connection(),
        &loaded.config.health,
        &HealthRequest {
            as_of: Utc::now().date_naive(),
            format: HealthFormat::Table,
            partner: None,
            now: crate::import::now(),
        },
    )?;
    const SHOWN: usize = 15;
    // The header line, the column line, then a line per partner (and, indented, the rest of a
    // long reason); the closing hints are the demo's own.
    let mut partners = 0;
    let mut rows = table
        .lines()
        .skip(2)
        .filter(|line| !line.starts_with("Every component") && !line.starts_with("Nothing new"));
    for line in table.lines().take(2) {
        let _ = writeln!(out, "  {line}");
    }
    for line in rows.by_ref() {
        let continuation = is_continuation(line);
        if !continuation {
            if partners == SHOWN {
                partners += 1;
                break;
            }
            partners += 1;
        }
        let _ = writeln!(out, "  {line}");
    }
    let more = rows.filter(|line| !is_continuation(line)).count() + partners.saturating_sub(SHOWN);
    if more > 0 {
        let _ = writeln!(out, "  … {more} more (refbridge health shows them all)");
    }
    Ok(())
}

/// A health table line that continues the previous partner's reason (indented under WHY).
fn is_continuation(line: &str) -> bool {
    line.starts_with(&" ".repeat(10))
}

fn report_tasks(
    out: &mut String,
    connection: &Connection,
    report: &CycleReport,
    budget: u32,
) -> rusqlite::Result<()> {
    heading(out, "Tasks pushed, per CRM and rep");
    // Owner names from the reps the CRMs reported; tasks without an owner went to the queue.
    let mut statement = connection.prepare(
        "SELECT o.system, COALESCE(r.name, '(team queue)'), a.rule, count(*)
         FROM outbox o JOIN alert a ON a.key = o.key AND a.system = o.system
         LEFT JOIN rep r ON r.system = o.system AND r.external_id = a.owner_id
         WHERE o.status = 'stored'
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?,
        ))
    })?;
    let mut per_owner: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for row in rows {
        let (system, owner, rule, count) = row?;
        per_owner
            .entry((system, owner))
            .or_default()
            .push(format!("{count} {rule}"));
    }
    for ((system, owner), rules) in &per_owner {
        let _ = writeln!(out, "  {system:<10} {owner:<22} {}", rules.join(", "));
    }
    if let Some(evaluation) = &report.evaluation {
        let plan = &evaluation.plan;
        let _ = writeln!(
            out,
            "  {} created; {} wait for a later day (at most {budget} new tasks per rep a day); {} could not be placed (see `plan`)",
            plan.create.len(),
            plan.waiting.len(),
            plan.invalid.len()
        );
        let _ = writeln!(out, "  One of each kind:");
        let mut seen = std::collections::BTreeSet::new();
        for task in &plan.create {
            if seen.insert(task.rule.as_str()) {
                let _ = writeln!(out, "    {:<20} {}", task.rule, task.title);
            }
        }
    }
    Ok(())
}

fn report_refer_out(
    out: &mut String,
    loaded: &crate::config::LoadedConfig,
    connection: &Connection,
    as_of: chrono::NaiveDate,
) -> anyhow::Result<()> {
    heading(
        out,
        "Refer-out options for leads we could not admit (ranked by fit only)",
    );
    let leads = crate::routing::lead_suggestions(connection, &loaded.config.routing, as_of)?;
    if leads.is_empty() {
        let _ = writeln!(
            out,
            "  no lead in the last {} days needs one",
            loaded.config.routing.lookback_days
        );
    }
    for lead in leads.iter().take(5) {
        let _ = writeln!(
            out,
            "  {} lead {} (not admitted: {}):",
            lead.system.as_str(),
            lead.lead_crm_id,
            lead.reason.replace('_', " ")
        );
        if lead.answer.options.is_empty() {
            let reason = lead
                .answer
                .task_none_reason
                .as_deref()
                .unwrap_or("no partner fits");
            let _ = writeln!(out, "    {reason}");
        }
        for (index, option) in lead.answer.options.iter().enumerate() {
            let _ = writeln!(
                out,
                "    {}. {} — {}",
                index + 1,
                option.name,
                option.fit.task_reasons().join("; ")
            );
        }
    }
    if leads.len() > 5 {
        let _ = writeln!(
            out,
            "  … {} more leads, each with a task on its CRM record",
            leads.len() - 5
        );
    }
    Ok(())
}

fn report_second_cycle(out: &mut String, second: &CycleReport, calls_before: u64) {
    heading(out, "Cycle 2: idempotent");
    let pushed: u64 = second.push.iter().map(|push| push.intents).sum();
    let (created, updated, closed) = second.evaluation.as_ref().map_or((0, 0, 0), |e| {
        (e.plan.create.len(), e.plan.update.len(), e.plan.close.len())
    });
    let read: u64 = second
        .pulled
        .streams
        .iter()
        .map(|s| s.counts.new + s.counts.changed)
        .sum();
    let _ = writeln!(
        out,
        "  {read} new or changed CRM records; {created} tasks to create, {updated} to update, {closed} to close; {pushed} sent; {} API call(s) (incremental pulls)",
        second.api_calls.saturating_sub(calls_before)
    );
    if created + updated + closed == 0 && pushed == 0 {
        let _ = writeln!(
            out,
            "  Nothing was repeated: every task key already sits in its CRM."
        );
    }
}

fn report_next(out: &mut String, config: &Path) {
    let config = config.display();
    heading(out, "Look further");
    let _ = writeln!(
        out,
        "  The ledger and a config stay in {}; the sandboxes stopped with the demo, so `sync` against this config will not connect, but everything in the ledger can be read:",
        Path::new(&config.to_string())
            .parent()
            .map_or_else(String::new, |p| p.display().to_string())
    );
    for command in [
        "health",
        "health --partner ID",
        "status",
        "plan",
        "route --payer Aetna --level-of-care 3.5 --zip3 303",
    ] {
        let _ = writeln!(out, "    refbridge {command} --config {config}");
    }
    let _ = writeln!(
        out,
        "  To keep CRMs to sync against: refbridge sandbox --write-config FILE (see README)."
    );
}
