//! The `refbridge` command line: argument parsing and output, nothing else.
//!
//! Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use refbridge_synthetic::Scale;
use refbridge_synthetic::faults::FaultPlan;

use refbridge::config::{Config, LoadedConfig};
use refbridge::cycle::{CycleError, CycleOptions, CycleReport, EvaluateError, evaluate, run_cycle};
use refbridge::import::{ImportReport, Importer, Outcome};
use refbridge::ledger::Ledger;
use refbridge::outbox::Plan;
use refbridge::sandbox::SandboxRequest;
use refbridge::status::Status;
use refbridge::sync::CrmClient;
use refbridge::telemetry::{self, LogDestination, LogFormat};

/// Keeps a behavioral-health facility's referral relationships healthy: EHR exports and CRMs
/// into one referral ledger.
#[derive(Debug, Parser)]
#[command(name = "refbridge", version, about)]
struct Cli {
    /// How log lines are written (on standard output for `run`, standard error otherwise).
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run as a daemon: each job on its `[schedule]` (pull each CRM, scan the EHR inbox, evaluate
    /// and push, reconcile nightly, maintain the ledger) until SIGTERM or SIGINT; SIGHUP reloads
    /// the config. Speaks systemd's notify protocol; logs go to standard output.
    Run {
        /// The refbridge config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a config file and the secrets it names; lists every problem with its line.
    CheckConfig {
        /// The refbridge config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Also connect to each configured CRM: login, API version, mapped objects and fields,
        /// the task external-id field.
        #[arg(long)]
        connect: bool,
        /// With --connect: create HubSpot's unique task key property (`refbridge_key`) if missing.
        #[arg(long, requires = "connect")]
        create_task_key: bool,
    },
    /// One whole cycle: pull every configured CRM, import the EHR inbox, resolve partner
    /// identities, compute health, evaluate rules and refer-out routing, push the tasks.
    Sync {
        /// The refbridge config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Run once and exit (required: scheduled runs come with the daemon).
        #[arg(long, required = true)]
        once: bool,
        /// Print one JSON object with the per-stream counts and API calls.
        #[arg(long)]
        json: bool,
        /// Also run the reconciliation pass (ids only): mark what the CRM deleted, and re-read a
        /// stream whose cursor missed a record. Meant for a nightly run.
        #[arg(long)]
        reconcile: bool,
        /// Apply the plan even when the circuit breaker refuses it (review it with `plan` first).
        #[arg(long)]
        allow_mass_change: bool,
    },
    /// Show what the next push would create, update and close (and what is invalid or waiting),
    /// from what the ledger holds now. Sends nothing and queues nothing.
    Plan {
        /// The refbridge config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Import EHR referral exports (CSV, FHIR Bundle JSON, FHIR NDJSON) into the ledger. Without
    /// PATHs, imports what waits in the configured inbox.
    Import {
        /// The refbridge config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
        /// Export files to import, in order.
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Show what the ledger holds: partners, referrals, import runs and quarantine.
    Status {
        /// The refbridge config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Partner health as of a day, worst first: score, state, trend and the reason of each
    /// partner's weakest component. Stores the day's snapshots (a run with no new data reuses them).
    Health {
        /// The refbridge config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// table (100 columns, worst first), json (an array; one object with --partner) or csv.
        #[arg(long, value_enum, default_value = "table")]
        format: refbridge::health::report::HealthFormat,
        /// Show one partner (by ledger id) in detail: every component, its weight and reason,
        /// and the facts behind them.
        #[arg(long, value_name = "ID")]
        partner: Option<i64>,
        /// The day health is computed as of (default: today, UTC).
        #[arg(long, value_name = "YYYY-MM-DD")]
        as_of: Option<NaiveDate>,
    },
    /// Suggest up to three partners that fit a patient we cannot admit, ranked by fit to the
    /// patient only (payer, level of care, area, preference, acceptance), with the reasons.
    #[command(group(clap::ArgGroup::new("criteria").required(true).multiple(true)))]
    Route {
        /// The refbridge config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The patient's payer; only partners in network with it are suggested.
        #[arg(long, value_name = "P", group = "criteria")]
        payer: Option<String>,
        /// The level of care needed (ASAM: 3.5, "ASAM 3.7", 3.7-WM, OTP …); required of partners.
        #[arg(long, value_name = "L", group = "criteria")]
        level_of_care: Option<String>,
        /// The patient's ZIP3; nearer partners rank first.
        #[arg(long, value_name = "Z", group = "criteria")]
        zip3: Option<String>,
        /// Print the answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// See it work in one command: starts both CRM sandboxes in this process with a small
    /// synthetic facility, writes its EHR exports and a config into DIR, runs two full cycles
    /// and prints what was pulled, partner health, the tasks pushed, refer-out options, and that
    /// the second cycle repeats nothing. DIR keeps the ledger and config afterwards.
    Demo {
        /// The directory for the demo's config, ledger and exports (cleared when an earlier demo
        /// made it; any other non-empty directory is refused).
        #[arg(long, value_name = "DIR", default_value = "refbridge-demo")]
        dir: PathBuf,
        /// Seed of the synthetic world.
        #[arg(long, value_name = "N", default_value_t = 7)]
        seed: u64,
    },
    /// Run local Salesforce and HubSpot sandboxes seeded with one synthetic facility; prints one
    /// JSON line with their URLs and ready-to-use credentials, then serves until Ctrl-C/SIGTERM.
    Sandbox {
        /// Salesforce sandbox port (0: any free port, reported in the JSON line).
        #[arg(long, value_name = "P", default_value_t = 0)]
        salesforce_port: u16,
        /// HubSpot sandbox port (0: any free port).
        #[arg(long, value_name = "Q", default_value_t = 0)]
        hubspot_port: u16,
        /// Address to listen on. The sandboxes have no real security: keep them on loopback.
        #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1")]
        host: IpAddr,
        /// Seed of the synthetic world: the same seed (and date) gives byte-identical data.
        #[arg(long, value_name = "N", default_value_t = 7)]
        seed: u64,
        /// small (tens of partners), medium, or large (≥ 20,000 partners, ≥ 100,000 contacts).
        #[arg(long, value_name = "SCALE", default_value = "small", value_parser = parse_scale)]
        scale: Scale,
        /// The day the world's 18 months of history end on (default: today, UTC).
        #[arg(long, value_name = "YYYY-MM-DD")]
        as_of: Option<NaiveDate>,
        /// Faults to inject, e.g. 429=0.05,500=0.02,503=0.02,reset=0.01,latency_ms=20,token_ttl_seconds=30.
        #[arg(long, value_name = "SPEC", value_parser = parse_faults)]
        faults: Option<FaultPlan>,
        /// Write the world's EHR exports (generic CSV, FHIR NDJSON) into DIR.
        #[arg(long, value_name = "DIR")]
        export_dir: Option<PathBuf>,
        /// Write a refbridge config that uses the sandboxes (ledger, patient key and inbox in FILE's
        /// stem + ".d" beside it).
        #[arg(long, value_name = "FILE")]
        write_config: Option<PathBuf>,
        /// PEM public key that Salesforce JWT bearer assertions must be signed for.
        #[arg(long, value_name = "FILE")]
        salesforce_jwt_public_key: Option<PathBuf>,
        /// Lift the CRMs' rate limits and daily quotas (HubSpot's ten-secondly and search limits,
        /// both daily quotas), so that a benchmark measures refbridge rather than the pacing.
        #[arg(long)]
        unthrottled: bool,
    },
}

fn parse_scale(text: &str) -> Result<Scale, String> {
    Scale::parse(text).ok_or_else(|| format!("{text:?} is not a scale: use small, medium or large"))
}

fn parse_faults(text: &str) -> Result<FaultPlan, String> {
    text.parse()
        .map_err(|error: refbridge_synthetic::faults::FaultPlanError| error.to_string())
}

/// A failure and the exit status it maps to.
enum Failure {
    Usage(anyhow::Error),
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Runtime(error.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs to stdout (journald); the demo talks to a person, whose progress lines say
    // enough, so its logs start at warnings.
    let destination = match cli.command {
        Command::Run { .. } => LogDestination::Stdout,
        _ => LogDestination::Stderr,
    };
    match cli.command {
        Command::Demo { .. } => telemetry::init_with_filter(cli.log_format, destination, "warn"),
        _ => telemetry::init(cli.log_format, destination),
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run { config } => {
            let loaded = load_config(&config)?;
            runtime()?
                .block_on(refbridge::daemon::run(loaded))
                .map_err(|error| {
                    if error.is_usage() {
                        Failure::Usage(error.into())
                    } else {
                        Failure::Runtime(error.into())
                    }
                })
        }
        Command::CheckConfig {
            config,
            connect,
            create_task_key,
        } => {
            let loaded = load_config(&config)?;
            if connect {
                let problems = runtime()?.block_on(connect_problems(&loaded, create_task_key));
                if !problems.is_empty() {
                    return Err(Failure::Usage(anyhow::anyhow!(
                        "{} is valid, but connecting found {} problem(s):\n  {}",
                        loaded.source.display(),
                        problems.len(),
                        problems.join("\n  ")
                    )));
                }
                println!(
                    "{}: valid; every configured CRM answered as configured",
                    loaded.source.display()
                );
            } else {
                println!("{}: valid", loaded.source.display());
            }
            Ok(())
        }
        Command::Sync {
            config,
            once: _,
            json,
            reconcile,
            allow_mass_change,
        } => {
            let loaded = load_config(&config)?;
            let clients =
                CrmClient::all(&loaded).map_err(|error| Failure::Usage(anyhow::anyhow!(error)))?;
            if clients.is_empty() && loaded.config.connectors.ehr.is_none() {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "nothing to sync: {} configures no connector ([connectors.salesforce], [connectors.hubspot] or [connectors.ehr])",
                    config.display()
                )));
            }
            let mut ledger = open_ledger(&loaded)?;
            let options = CycleOptions {
                now: chrono::Utc::now(),
                reconcile,
                allow_mass_change,
                stop: refbridge::stop::StopSignal::new(),
            };
            let report = runtime()?
                .block_on(run_cycle(&loaded, &mut ledger, &clients, options))
                .map_err(|error| match error {
                    CycleError::Sync(refbridge::sync::SyncError::Config { .. })
                    | CycleError::Routing(_) => Failure::Usage(anyhow::anyhow!("{error}")),
                    other => Failure::Runtime(other.into()),
                })?;
            print_report(json, &report, || cycle_summary(&report))?;
            if let Some(refused) = &report.refused {
                return Err(Failure::Runtime(anyhow::anyhow!("{refused}")));
            }
            if report.has_failures() {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "a stream failed or a file could not be read; see the lines above and `refbridge status`"
                )));
            }
            Ok(())
        }
        Command::Plan { config, json } => {
            let config = load_offline(&config)?;
            let configured = config.configured_crms();
            let mut ledger = open_existing_ledger(&config)?;
            let as_of = chrono::Utc::now().date_naive();
            let evaluation = evaluate(&config, &mut ledger, &configured, as_of, false, false)
                .map_err(|error| match error {
                    EvaluateError::Routing(message) => {
                        Failure::Usage(anyhow::anyhow!("refer-out routing: {message}"))
                    }
                    EvaluateError::Sql(source)
                    | EvaluateError::Outbox(refbridge::outbox::OutboxError::Sql(source), _) => {
                        Failure::Runtime(ledger.sql_error(source).into())
                    }
                    EvaluateError::Outbox(_, message) => Failure::Runtime(anyhow::anyhow!(message)),
                })?;
            print_report(json, &evaluation.plan, || plan_summary(&evaluation.plan))?;
            Ok(())
        }
        Command::Import {
            config,
            json,
            paths,
        } => {
            let loaded = load_config(&config)?;
            for path in &paths {
                if path.is_dir() {
                    return Err(Failure::Usage(anyhow::anyhow!(
                        "{} is a directory: give export files (or configure it as the inbox)",
                        path.display()
                    )));
                }
                if !path.is_file() {
                    return Err(Failure::Usage(anyhow::anyhow!(
                        "{}: no such file",
                        path.display()
                    )));
                }
            }
            let ehr = loaded.config.connectors.ehr.clone();
            let inbox = ehr.as_ref().map(|ehr| ehr.inbox.clone());
            if paths.is_empty() && inbox.is_none() {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "nothing to import: give export files, or configure [connectors.ehr] inbox in {}",
                    config.display()
                )));
            }
            let reader = Importer::reader_for(
                &ehr.unwrap_or_else(default_ehr),
                loaded.patient_key.expose(),
            );
            let mut ledger = open_ledger(&loaded)?;
            let mut importer = Importer::new(
                &mut ledger,
                reader,
                &loaded.config.identity.alias,
                loaded.config.ledger.import_batch_rows,
            );
            let report = match (paths.is_empty(), inbox) {
                (true, Some(inbox)) => importer.import_inbox(&inbox)?,
                _ => importer.import_files(&paths)?,
            };
            print_report(json, &report, || import_summary(&report))?;
            // Quarantined rows are normal; a file that could not be read (whole or to its end) is
            // worth a non-zero exit for cron and systemd, after everything else was imported.
            let unread = report
                .file_reports
                .iter()
                .filter(|file| matches!(file.outcome, Outcome::Rejected | Outcome::Partial))
                .count();
            if unread > 0 {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "{unread} file(s) could not be read to the end; see `refbridge status` for where and why"
                )));
            }
            Ok(())
        }
        Command::Sandbox {
            salesforce_port,
            hubspot_port,
            host,
            seed,
            scale,
            as_of,
            faults,
            export_dir,
            write_config,
            salesforce_jwt_public_key,
            unthrottled,
        } => {
            if !host.is_loopback() {
                tracing::warn!(%host, "the sandboxes listen beyond loopback; anyone who can reach them can read and write their data");
            }
            let request = SandboxRequest {
                host,
                salesforce_port,
                hubspot_port,
                seed,
                scale,
                as_of: as_of.unwrap_or_else(|| chrono::Utc::now().date_naive()),
                faults: faults.unwrap_or_default(),
                export_dir,
                write_config,
                salesforce_jwt_public_key,
                unthrottled,
            };
            runtime()?.block_on(refbridge::sandbox::serve(request))?;
            Ok(())
        }
        Command::Health {
            config,
            format,
            partner,
            as_of,
        } => {
            let config = load_offline(&config)?;
            let ledger = open_existing_ledger(&config)?;
            let now = chrono::Utc::now();
            let request = refbridge::health::report::HealthRequest {
                as_of: as_of.unwrap_or_else(|| now.date_naive()),
                format,
                partner,
                now: now.to_rfc3339(),
            };
            let text =
                refbridge::health::report::run(ledger.connection(), &config.health, &request)
                    .map_err(|error| {
                        if error.is_usage() {
                            Failure::Usage(error.into())
                        } else {
                            Failure::Runtime(error.into())
                        }
                    })?;
            print!("{text}");
            Ok(())
        }
        Command::Route {
            config,
            payer,
            level_of_care,
            zip3,
            json,
        } => {
            use refbridge::routing::{RouteRequest, RoutingError};
            let request = RouteRequest {
                payer,
                level_of_care,
                zip3,
            };
            let input_error = |error: RoutingError| match error {
                RoutingError::UnknownLevelOfCare => anyhow::anyhow!("--level-of-care: {error}"),
                RoutingError::InvalidZip3 => anyhow::anyhow!("--zip3: {error}"),
                other => other.into(),
            };
            // A bad request is a usage error even when the ledger is missing.
            refbridge::routing::check_request(&request)
                .map_err(|error| Failure::Usage(input_error(error)))?;
            let config = load_offline(&config)?;
            let ledger = open_existing_ledger(&config)?;
            let answer = refbridge::routing::route(ledger.connection(), &config.routing, &request)
                .map_err(|error| match error.is_input() {
                    true => Failure::Usage(input_error(error)),
                    false => Failure::Runtime(error.into()),
                })?;
            print_report(json, &answer, || answer.to_text())?;
            Ok(())
        }
        Command::Demo { dir, seed } => {
            refbridge::demo::check_directory(&dir)
                .map_err(|message| Failure::Usage(anyhow::anyhow!(message)))?;
            let report =
                runtime()?.block_on(refbridge::demo::run(refbridge::demo::DemoRequest {
                    directory: dir,
                    seed,
                }))?;
            print!("{report}");
            Ok(())
        }
        Command::Status { config, json } => {
            let config = load_offline(&config)?;
            let ledger = open_existing_ledger(&config)?;
            let status = Status::read(&ledger).context("cannot read the ledger")?;
            print_report(json, &status, || status.to_text())?;
            Ok(())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?)
}

/// One line per problem found by connecting to each configured CRM. With `create_task_key`, a
/// missing HubSpot task key property is created first.
async fn connect_problems(loaded: &LoadedConfig, create_task_key: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let clients = match CrmClient::all(loaded) {
        Ok(clients) => clients,
        Err(error) => return vec![error],
    };
    for client in clients {
        match client {
            CrmClient::Salesforce(client) => problems.extend(
                client
                    .healthcheck()
                    .await
                    .into_iter()
                    .map(|p| format!("salesforce: {p}")),
            ),
            CrmClient::Hubspot(client) => {
                if create_task_key && let Err(error) = client.create_task_key_property().await {
                    problems.push(format!(
                        "hubspot: cannot create the task key property: {error}"
                    ));
                }
                problems.extend(
                    client
                        .healthcheck()
                        .await
                        .into_iter()
                        .map(|p| format!("hubspot: {p}")),
                );
            }
        }
    }
    problems
}

fn sync_summary(report: &refbridge::sync::SyncReport) -> String {
    let mut out = String::new();
    for stream in &report.streams {
        let c = &stream.counts;
        out.push_str(&format!(
            "{:<10} {:<10} {:<8} {} read, {} new, {} changed, {} unchanged, {} deleted; {} API call(s)\n",
            stream.system, stream.stream, stream.outcome, c.read, c.new, c.changed, c.unchanged, c.deleted, c.api_calls
        ));
        if let Some(message) = &stream.message {
            out.push_str(&format!("  {message}\n"));
        }
    }
    for stream in &report.reconciled {
        out.push_str(&format!(
            "{:<10} {:<10} reconciled: {} live, {} marked deleted; {} API call(s)\n",
            stream.system,
            stream.stream,
            stream.counts.read,
            stream.counts.deleted,
            stream.counts.api_calls
        ));
        if let Some(message) = &stream.message {
            out.push_str(&format!("  {message}\n"));
        }
    }
    out
}

fn cycle_summary(report: &CycleReport) -> String {
    let mut out = sync_summary(&report.pulled);
    if let Some(imported) = &report.imported {
        out.push_str(&import_summary(imported));
    }
    if let Some(evaluation) = &report.evaluation {
        let i = &evaluation.identity;
        out.push_str(&format!(
            "identity: {} live partner(s) from {} source record(s); {} merged this run, {} uncertain match(es) listed in `refbridge status`\n",
            i.partners_live, i.source_records, i.partners_merged_this_run, i.suggestions
        ));
        let h = &evaluation.health;
        out.push_str(&format!(
            "health: {} partner(s): {} at risk, {} to watch, {} healthy{}\n",
            h.partners,
            h.at_risk,
            h.watch,
            h.healthy,
            if h.recomputed {
                ""
            } else {
                " (nothing new: stored snapshots)"
            }
        ));
        let p = &evaluation.plan;
        out.push_str(&format!(
            "tasks: {} to create, {} to update, {} to close, {} unchanged, {} waiting for budget, {} invalid; {} refer-out lead(s)\n",
            p.create.len(),
            p.update.len(),
            p.close.len(),
            p.unchanged,
            p.waiting.len(),
            p.invalid.len(),
            evaluation.refer_out_leads
        ));
    }
    if !report.waiting_for.is_empty() {
        out.push_str(&format!(
            "tasks: not planned yet: waiting for the first complete read of {} (run again once the pull succeeds)\n",
            report.waiting_for.join(", ")
        ));
    }
    if let Some(refused) = &report.refused {
        out.push_str(&format!("tasks: {refused}\n"));
    }
    for push in &report.push {
        out.push_str(&format!(
            "{} push: {} intent(s), {} stored ({} new), {} to retry, {} refused\n",
            push.system, push.intents, push.stored, push.created, push.retryable, push.permanent
        ));
    }
    out.push_str(&format!("{} API call(s) in all\n", report.api_calls));
    out
}

fn plan_summary(plan: &Plan) -> String {
    let mut out = format!(
        "Plan as of {}: {} to create, {} to update, {} to close; {} unchanged, {} waiting for a rep's daily budget, {} answered by reps, {} snoozed, {} invalid; {} earlier intent(s) to retry, {} refused by a CRM\n",
        plan.as_of,
        plan.create.len(),
        plan.update.len(),
        plan.close.len(),
        plan.unchanged,
        plan.waiting.len(),
        plan.answered,
        plan.snoozed,
        plan.invalid.len(),
        plan.retries,
        plan.refused
    );
    let b = &plan.breaker;
    if b.tripped {
        out.push_str(&format!(
            "CIRCUIT BREAKER: this plan updates or closes {} of {} open tasks (limit {:.0}%); `sync` will refuse it unless run with --allow-mass-change\n",
            b.changes,
            b.open_tasks,
            b.limit_share * 100.0
        ));
    }
    for (label, tasks) in [
        ("create", &plan.create),
        ("update", &plan.update),
        ("close", &plan.close),
        ("waiting", &plan.waiting),
    ] {
        if tasks.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{label} ({}):\n", tasks.len()));
        for task in tasks {
            out.push_str(&format!(
                "  {:<10} {:<20} owner {:<20} {}\n",
                task.system,
                task.rule,
                task.owner_id.as_deref().unwrap_or("(queue)"),
                task.title
            ));
        }
    }
    if !plan.invalid.is_empty() {
        out.push_str(&format!("\ninvalid ({}):\n", plan.invalid.len()));
        for invalid in &plan.invalid {
            out.push_str(&format!("  {:<20} {}\n", invalid.rule, invalid.problem));
        }
    }
    out
}

/// Prints `value` as one JSON line, or its text form.
fn print_report<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<(), Failure> {
    if json {
        println!(
            "{}",
            serde_json::to_string(value).context("cannot encode the report")?
        );
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// The ledger a config names, which must exist already (commands that read it).
fn open_existing_ledger(config: &Config) -> Result<Ledger, Failure> {
    let settings = &config.ledger;
    Ok(Ledger::open_existing(
        &settings.path,
        Duration::from_secs(settings.busy_timeout_seconds),
    )?)
}

/// The config without its secrets, for commands that only read the ledger.
fn load_offline(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load_offline(path).map_err(|error| Failure::Usage(error.into()))
}

fn load_config(path: &std::path::Path) -> Result<LoadedConfig, Failure> {
    Config::load(path).map_err(|error| Failure::Usage(error.into()))
}

fn open_ledger(loaded: &LoadedConfig) -> Result<Ledger, Failure> {
    let ledger = &loaded.config.ledger;
    Ok(Ledger::open(
        &ledger.path,
        Duration::from_secs(ledger.busy_timeout_seconds),
    )?)
}

/// The generic layout, for importing named files when no `[connectors.ehr]` is configured.
fn default_ehr() -> refbridge::config::EhrConfig {
    refbridge::config::EhrConfig {
        inbox: PathBuf::new(),
        level_of_care_scheme: "asam3".to_string(),
        csv: Default::default(),
        fhir: Default::default(),
    }
}

fn import_summary(report: &ImportReport) -> String {
    let mut out = String::new();
    for file in &report.file_reports {
        let c = &file.counts;
        out.push_str(&format!(
            "{} [{}] {}: {} rows, {} new, {} updated, {} unchanged, {} quarantined, {} warnings, {} skipped\n",
            file.path.display(),
            file.format.unwrap_or("-"),
            file.outcome.as_str(),
            c.rows,
            c.referrals_new,
            c.referrals_updated,
            c.referrals_unchanged,
            c.quarantined,
            c.warnings,
            c.skipped
        ));
        if let Some(message) = &file.message {
            out.push_str(&format!("  {message}\n"));
        }
    }
    let t = &report.totals;
    out.push_str(&format!(
        "{} file(s): {} rows, {} referrals new, {} updated, {} unchanged, {} quarantined, {} warnings; {} new partner(s)\n",
        report.files, t.rows, t.referrals_new, t.referrals_updated, t.referrals_unchanged, t.quarantined, t.warnings, report.partners_new
    ));
    if t.quarantined + t.warnings > 0 {
        out.push_str("See `refbridge status` for each quarantined row's location and reason.\n");
    }
    out
}
