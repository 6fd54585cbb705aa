//! The TOML configuration: its serde model, loading, and validation that reports every problem.
//!
//! Loading never stops at the first semantic problem: [`Config::load`] collects each one with its
//! key path and `line:column` in the file. Secrets are only ever read from files (see [`secret`]);
//! nothing in this module prints a secret's value. Relative paths are resolved against the
//! directory of the config file.

mod locate;
pub mod secret;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use refbridge_ehr::{CsvLayout, FhirOptions};
use refbridge_hubspot::{HubspotConfig, HubspotSecrets};
use refbridge_model::{LevelOfCare, Npi};
use refbridge_salesforce::{SalesforceConfig, SalesforceSecrets, SecretKind};
use serde::Deserialize;

use crate::daemon::config::{HttpConfig, MaintenanceConfig, ScheduleConfig};
use crate::routing::RoutingConfig;
use locate::Locator;
pub use secret::Secret;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub ledger: LedgerConfig,
    pub privacy: PrivacyConfig,
    #[serde(default)]
    pub connectors: ConnectorsConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub rules: crate::rules::RulesConfig,
    #[serde(default)]
    pub outbox: crate::rules::OutboxConfig,
    /// `[health]`: see `crate::health::HealthConfig`.
    #[serde(default)]
    pub health: crate::health::HealthConfig,
    /// `[routing]`: refer-out suggestions (see `crate::routing`).
    #[serde(default)]
    pub routing: RoutingConfig,
    /// `[schedule]`: when `refbridge run` runs each job (see `crate::daemon::config`).
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// `[http]`: the daemon's optional loopback listener.
    #[serde(default)]
    pub http: HttpConfig,
    /// `[maintenance]`: backups and pruning.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
}

/// `[ledger]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// The SQLite ledger file; created (mode 0600) on first use.
    pub path: PathBuf,
    /// How long a writer waits for another connection's lock before failing.
    #[serde(default = "default_busy_timeout_seconds")]
    pub busy_timeout_seconds: u64,
    /// Rows stored per transaction during an import.
    #[serde(default = "default_import_batch_rows")]
    pub import_batch_rows: usize,
}

fn default_busy_timeout_seconds() -> u64 {
    10
}

fn default_import_batch_rows() -> usize {
    50_000
}

/// `[privacy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The facility's patient key (at least 16 bytes; 32 random bytes recommended). When absent,
    /// `$CREDENTIALS_DIRECTORY/patient_key` is used.
    pub patient_key_file: Option<PathBuf>,
}

/// `[connectors]`: one table per connector; an absent table means the connector is off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsConfig {
    pub ehr: Option<EhrConfig>,
    /// `[connectors.salesforce]`: see `refbridge_salesforce::SalesforceConfig`.
    pub salesforce: Option<SalesforceConfig>,
    /// `[connectors.hubspot]`: see `refbridge_hubspot::HubspotConfig`.
    pub hubspot: Option<HubspotConfig>,
}

/// `[connectors.ehr]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EhrConfig {
    /// Directory where exports are dropped; `refbridge import` without files imports from it.
    pub inbox: PathBuf,
    /// `asam3` or `asam4`: the scheme level-of-care codes are read in.
    #[serde(default = "default_level_of_care_scheme")]
    pub level_of_care_scheme: String,
    #[serde(default)]
    pub csv: CsvLayout,
    #[serde(default)]
    pub fhir: FhirOptions,
}

fn default_level_of_care_scheme() -> String {
    "asam3".to_string()
}

/// `[identity]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// `[[identity.alias]]`: names that mean a given partner.
    #[serde(default)]
    pub alias: Vec<AliasConfig>,
    /// `[[identity.merge]]`: records that are one partner, whatever the evidence says.
    #[serde(default)]
    pub merge: Vec<MergeConfig>,
    /// `[[identity.split]]`: records that are a partner of their own, whatever the evidence says.
    #[serde(default)]
    pub split: Vec<SplitConfig>,
    /// Not a key of `[identity]`: each CRM connector's `queue_owner_id`, as (system, owner id),
    /// filled in when the config is loaded. A partner record owned by the team queue has no rep.
    #[serde(skip)]
    pub queue_owners: Vec<(String, String)>,
}

/// One `[[identity.merge]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeConfig {
    /// Two or more `system:key` references (`ehr:<spelling>`, `salesforce:<Account Id>`,
    /// `hubspot:<company id>`).
    pub records: Vec<String>,
}

/// One `[[identity.split]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// A `system:key` reference.
    pub record: String,
}

/// One `[[identity.alias]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// The partner's name as it should appear.
    pub partner: String,
    /// The partner's NPI, when known.
    pub npi: Option<String>,
    /// Other spellings that mean this partner ("MERCY HOSP ED", "Dr. A. Lee - Mercy").
    pub names: Vec<String>,
}

/// A loaded, validated configuration and what was read on its behalf.
#[derive(Debug)]
pub struct LoadedConfig {
    pub config: Config,
    pub source: PathBuf,
    pub patient_key: Secret,
    /// The Salesforce connector's secrets, read from their files, when it is configured.
    pub salesforce_secrets: Option<SalesforceSecrets>,
    /// The HubSpot connector's secrets, read from their files, when it is configured.
    pub hubspot_secrets: Option<HubspotSecrets>,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `connectors.ehr.csv.date_formats[0]`.
    pub key: String,
    /// 1-based line and column of the key (or of the nearest table that holds it).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why a config could not be used: every problem found, or a file that could not be read.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "{} has {count} problem{}:",
            self.file.display(),
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(
                f,
                "\n  {}:{}:{}: ",
                self.file.display(),
                problem.line,
                problem.column
            )?;
            if !problem.key.is_empty() {
                write!(f, "{}: ", problem.key)?;
            }
            f.write_str(&problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates `path` without reading any secret: for the commands that only
    /// read the ledger (`status`, `health`, `plan`, `route`), which must work when the secrets are
    /// not at hand (a stopped service's systemd credentials exist only while it runs).
    pub fn load_offline(path: &Path) -> Result<Config, ConfigError> {
        Config::read(path, false).map(|loaded| loaded.0)
    }

    /// Reads, parses and validates `path`, reading the secrets it names. Every problem is reported.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let (config, secrets) = Config::read(path, true)?;
        let (patient_key, salesforce_secrets, hubspot_secrets) =
            secrets.expect("secrets are read when asked for");
        Ok(LoadedConfig {
            config,
            source: path.to_path_buf(),
            patient_key,
            salesforce_secrets,
            hubspot_secrets,
        })
    }

    #[allow(clippy::type_complexity)]
    fn read(
        path: &Path,
        with_secrets: bool,
    ) -> Result<
        (
            Config,
            Option<(Secret, Option<SalesforceSecrets>, Option<HubspotSecrets>)>,
        ),
        ConfigError,
    > {
        let error = |problems| ConfigError {
            file: path.to_path_buf(),
            problems,
        };
        let text = std::fs::read_to_string(path).map_err(|io| {
            error(vec![ConfigProblem {
                key: String::new(),
                line: 1,
                column: 1,
                message: format!("cannot read the config file: {io}"),
            }])
        })?;
        let locator = Locator::new(&text);
        let mut config: Config = toml::from_str(&text).map_err(|parse| {
            let (line, column) = parse
                .span()
                .map_or((1, 1), |span| locator.line_column(span.start));
            error(vec![ConfigProblem {
                key: String::new(),
                line,
                column,
                message: parse.message().trim().to_string(),
            }])
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve_paths(&base);
        config.identity.queue_owners = config.queue_owners();

        let mut problems = Problems {
            locator: &locator,
            found: Vec::new(),
        };
        config.validate(&mut problems);
        if !with_secrets {
            problems
                .found
                .sort_by_key(|problem| (problem.line, problem.column));
            return match problems.found.is_empty() {
                true => Ok((config, None)),
                false => Err(error(problems.found)),
            };
        }
        let patient_key = config.read_patient_key(&mut problems);
        let salesforce_secrets = config.read_salesforce_secrets(&mut problems);
        let hubspot_secrets = config.read_hubspot_secrets(&mut problems);
        problems
            .found
            .sort_by_key(|problem| (problem.line, problem.column));
        match patient_key {
            Some(patient_key) if problems.found.is_empty() => Ok((
                config,
                Some((patient_key, salesforce_secrets, hubspot_secrets)),
            )),
            _ => Err(error(problems.found)),
        }
    }

    /// The CRMs this config pushes to.
    pub fn configured_crms(&self) -> Vec<refbridge_model::crm::CrmSystem> {
        use refbridge_model::crm::CrmSystem;
        let mut systems = Vec::new();
        if self.connectors.salesforce.is_some() {
            systems.push(CrmSystem::Salesforce);
        }
        if self.connectors.hubspot.is_some() {
            systems.push(CrmSystem::Hubspot);
        }
        systems
    }

    /// Each configured CRM's team queue owner, as (system, owner id).
    fn queue_owners(&self) -> Vec<(String, String)> {
        let salesforce = self
            .connectors
            .salesforce
            .as_ref()
            .and_then(|c| c.queue_owner_id.clone());
        let hubspot = self
            .connectors
            .hubspot
            .as_ref()
            .and_then(|c| c.queue_owner_id.clone());
        [("salesforce", salesforce), ("hubspot", hubspot)]
            .into_iter()
            .filter_map(|(system, owner)| owner.map(|owner| (system.to_string(), owner)))
            .collect()
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        resolve(&mut self.ledger.path);
        if let Some(file) = &mut self.privacy.patient_key_file {
            resolve(file);
        }
        if let Some(ehr) = &mut self.connectors.ehr {
            resolve(&mut ehr.inbox);
        }
        if let Some(directory) = &mut self.maintenance.backup_dir {
            resolve(directory);
        }
        if let Some(hubspot) = &mut self.connectors.hubspot {
            let auth = &mut hubspot.auth;
            for file in [
                &mut auth.access_token_file,
                &mut auth.client_secret_file,
                &mut auth.refresh_token_file,
            ]
            .into_iter()
            .flatten()
            {
                resolve(file);
            }
        }
        if let Some(salesforce) = &mut self.connectors.salesforce {
            let auth = &mut salesforce.auth;
            for file in [
                &mut auth.private_key_file,
                &mut auth.client_secret_file,
                &mut auth.refresh_token_file,
            ]
            .into_iter()
            .flatten()
            {
                resolve(file);
            }
        }
    }

    fn validate(&self, problems: &mut Problems<'_>) {
        if self.ledger.path.as_os_str().is_empty() || self.ledger.path.is_dir() {
            problems.add(
                &["ledger", "path"],
                "must name a file (the ledger database), not a directory",
            );
        }
        if self.ledger.busy_timeout_seconds == 0 {
            problems.add(&["ledger", "busy_timeout_seconds"], "must be at least 1");
        }
        if self.ledger.import_batch_rows == 0 {
            problems.add(&["ledger", "import_batch_rows"], "must be at least 1");
        }
        if let Some(ehr) = &self.connectors.ehr {
            if ehr.inbox.exists() && !ehr.inbox.is_dir() {
                problems.add(
                    &["connectors", "ehr", "inbox"],
                    "exists but is not a directory",
                );
            }
            if !LevelOfCare::SCHEMES.contains(&ehr.level_of_care_scheme.as_str()) {
                problems.add(
                    &["connectors", "ehr", "level_of_care_scheme"],
                    &format!("must be one of {}", LevelOfCare::SCHEMES.join(", ")),
                );
            }
            for (below, message) in ehr.csv.problems(&ehr.level_of_care_scheme) {
                problems.add_below(&["connectors", "ehr", "csv"], &below, &message);
            }
            for (below, message) in ehr.fhir.problems() {
                problems.add_below(&["connectors", "ehr", "fhir"], &below, &message);
            }
        }
        if let Some(salesforce) = &self.connectors.salesforce {
            for (below, message) in salesforce.problems() {
                problems.add_below(&["connectors", "salesforce"], &below, &message);
            }
        }
        if let Some(hubspot) = &self.connectors.hubspot {
            for (below, message) in hubspot.problems() {
                problems.add_below(&["connectors", "hubspot"], &below, &message);
            }
        }
        for (below, message) in self.rules.problems() {
            problems.add_below(&["rules"], &below, &message);
        }
        for (below, message) in self.outbox.problems() {
            problems.add_below(&["outbox"], &below, &message);
        }
        for (below, message) in self.health.problems() {
            problems.add_below(&["health"], &below, &message);
        }
        for (below, message) in self.routing.problems() {
            problems.add_below(&["routing"], &below, &message);
        }
        for (below, message) in self.schedule.problems() {
            problems.add_below(&["schedule"], &below, &message);
        }
        for (below, message) in self.http.problems() {
            problems.add_below(&["http"], &below, &message);
        }
        let inbox = self.connectors.ehr.as_ref().map(|ehr| ehr.inbox.as_path());
        for (below, message) in self.maintenance.problems(&self.ledger.path, inbox) {
            problems.add_below(&["maintenance"], &below, &message);
        }
        self.validate_identity_overrides(problems);
        let mut alias_owner: HashMap<String, usize> = HashMap::new();
        for (index, alias) in self.identity.alias.iter().enumerate() {
            let at = index.to_string();
            if alias.partner.trim().is_empty() {
                problems.add(&["identity", "alias", &at, "partner"], "cannot be empty");
            }
            if let Some(npi) = &alias.npi
                && let Err(error) = Npi::parse(npi)
            {
                problems.add(
                    &["identity", "alias", &at, "npi"],
                    &format!("not a valid NPI: {error}"),
                );
            }
            if alias.names.is_empty() {
                problems.add(
                    &["identity", "alias", &at, "names"],
                    "list at least one name",
                );
            }
            for name in &alias.names {
                let key = crate::partners::normalize_name(name);
                if let Some(other) = alias_owner.insert(key, index)
                    && other != index
                {
                    problems.add(
                        &["identity", "alias", &at, "names"],
                        &format!(
                            "{name:?} is also an alias of identity.alias[{other}]; a name can mean only one partner"
                        ),
                    );
                }
            }
        }
    }

    /// `[[identity.merge]]` and `[[identity.split]]`: well-formed references, and no record
    /// claimed twice (by two merges, or by a merge and a split).
    fn validate_identity_overrides(&self, problems: &mut Problems<'_>) {
        use crate::identity::RecordRef;
        // reference → where it was first named
        let mut claimed: HashMap<RecordRef, String> = HashMap::new();
        for (index, merge) in self.identity.merge.iter().enumerate() {
            let at = index.to_string();
            let path = ["identity", "merge", at.as_str(), "records"];
            let mut distinct = Vec::new();
            for text in &merge.records {
                match RecordRef::parse(text) {
                    Err(message) => problems.add(&path, &format!("{text:?}: {message}")),
                    Ok(reference) if distinct.contains(&reference) => {
                        problems.add(&path, &format!("{text:?} is listed twice"))
                    }
                    Ok(reference) => {
                        if let Some(other) = claimed.get(&reference) {
                            problems.add(
                                &path,
                                &format!(
                                    "{text:?} is also in {other}; a record can be merged only once (put the records in one merge)"
                                ),
                            );
                        } else {
                            claimed.insert(reference.clone(), format!("identity.merge[{index}]"));
                        }
                        distinct.push(reference);
                    }
                }
            }
            if merge.records.len() < 2 {
                problems.add(
                    &path,
                    "list at least two records (`system:key`) that are one partner",
                );
            }
        }
        for (index, split) in self.identity.split.iter().enumerate() {
            let at = index.to_string();
            let path = ["identity", "split", at.as_str(), "record"];
            match RecordRef::parse(&split.record) {
                Err(message) => problems.add(&path, &format!("{:?}: {message}", split.record)),
                Ok(reference) => {
                    if let Some(other) = claimed.get(&reference) {
                        problems.add(
                            &path,
                            &format!(
                                "{:?} is also in {other}; a record cannot be both merged and split",
                                split.record
                            ),
                        );
                    } else {
                        claimed.insert(reference, format!("identity.split[{index}]"));
                    }
                }
            }
        }
    }

    /// Reads the secret files the configured Salesforce login needs.
    fn read_salesforce_secrets(&self, problems: &mut Problems<'_>) -> Option<SalesforceSecrets> {
        let salesforce = self.connectors.salesforce.as_ref()?;
        let mut secrets = SalesforceSecrets::default();
        for (below, kind, file) in salesforce.secret_files() {
            match Secret::read_file(&file) {
                Ok(secret) => {
                    let bytes = Some(secret.expose().to_vec());
                    match kind {
                        SecretKind::PrivateKey => secrets.private_key_pem = bytes,
                        SecretKind::ClientSecret => secrets.client_secret = bytes,
                        SecretKind::RefreshToken => secrets.refresh_token = bytes,
                    }
                }
                Err(error) => {
                    problems.add_below(&["connectors", "salesforce"], &below, &error.to_string())
                }
            }
        }
        Some(secrets)
    }

    /// Reads the secret files the configured HubSpot login needs.
    fn read_hubspot_secrets(&self, problems: &mut Problems<'_>) -> Option<HubspotSecrets> {
        let hubspot = self.connectors.hubspot.as_ref()?;
        let mut secrets = HubspotSecrets::default();
        for (below, kind, file) in hubspot.secret_files() {
            match Secret::read_file(&file) {
                Ok(secret) => {
                    let bytes = Some(secret.expose().to_vec());
                    match kind {
                        refbridge_hubspot::SecretKind::AccessToken => secrets.access_token = bytes,
                        refbridge_hubspot::SecretKind::ClientSecret => {
                            secrets.client_secret = bytes
                        }
                        refbridge_hubspot::SecretKind::RefreshToken => {
                            secrets.refresh_token = bytes
                        }
                    }
                }
                Err(error) => {
                    problems.add_below(&["connectors", "hubspot"], &below, &error.to_string())
                }
            }
        }
        Some(secrets)
    }

    fn read_patient_key(&self, problems: &mut Problems<'_>) -> Option<Secret> {
        let key = ["privacy", "patient_key_file"];
        let path = match &self.privacy.patient_key_file {
            Some(path) => path.clone(),
            None => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(directory) => PathBuf::from(directory).join("patient_key"),
                None => {
                    problems.add(
                        &key,
                        "no patient key: set privacy.patient_key_file, or run under systemd with LoadCredential=patient_key",
                    );
                    return None;
                }
            },
        };
        match Secret::read_file(&path) {
            Ok(secret) if secret.expose().len() < 16 => {
                problems.add(
                    &key,
                    &format!(
                        "{} is too short for a patient key: use at least 16 bytes (e.g. `head -c 32 /dev/urandom > FILE`)",
                        path.display()
                    ),
                );
                None
            }
            Ok(secret) => Some(secret),
            Err(error) => {
                problems.add(&key, &error.to_string());
                None
            }
        }
    }
}

/// Collects problems, locating each key in the file.
struct Problems<'a> {
    locator: &'a Locator,
    found: Vec<ConfigProblem>,
}

impl Problems<'_> {
    fn add(&mut self, path: &[&str], message: &str) {
        let (line, column) = self.locator.locate(path);
        self.found.push(ConfigProblem {
            key: locate::display_path(path),
            line,
            column,
            message: message.to_string(),
        });
    }

    fn add_below(&mut self, prefix: &[&str], below: &[String], message: &str) {
        let path: Vec<&str> = prefix
            .iter()
            .copied()
            .chain(below.iter().map(String::as_str))
            .collect();
        self.add(&path, message);
    }
}
