//! Logging through `tracing`: human-readable or JSON lines, on standard output for the daemon
//! (journald reads it) and on standard error for every other command.
//!
//! Events are key/value pairs with a sentence for a message; they carry file names, ledger ids and
//! counts, never row values, patient values or secrets.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDestination {
    Stdout,
    Stderr,
}

/// The level when `RUST_LOG` is not set: `info`, with the scheduler library's own chatter
/// (a line per job it adds) held to warnings.
const DEFAULT_FILTER: &str = "info,tokio_cron_scheduler=warn";

/// Installs the global subscriber. `RUST_LOG` overrides the default level.
pub fn init(format: LogFormat, destination: LogDestination) {
    init_with_filter(format, destination, DEFAULT_FILTER);
}

/// Installs the global subscriber with another default filter (`RUST_LOG` still overrides it).
pub fn init_with_filter(format: LogFormat, destination: LogDestination, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match (destination, format) {
        (LogDestination::Stdout, LogFormat::Text) => builder
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .init(),
        (LogDestination::Stdout, LogFormat::Json) => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stdout)
            .init(),
        (LogDestination::Stderr, LogFormat::Text) => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
        (LogDestination::Stderr, LogFormat::Json) => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .init(),
    }
}
