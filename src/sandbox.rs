//! `refbridge sandbox`: both CRM sandboxes on loopback, seeded with one synthetic facility.
//!
//! Generates the world, starts the Salesforce and HubSpot sandboxes (each owned by its connector
//! crate), optionally writes the world's EHR exports and a refbridge config that uses them, prints
//! one JSON line with the base URLs and ready-to-use credentials, and serves until SIGINT/SIGTERM.
//! Nothing here speaks a CRM protocol itself.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use chrono::NaiveDate;
use refbridge_synthetic::faults::FaultPlan;
use refbridge_synthetic::{Scale, WorldSpec, exports, generate};
use serde_json::json;

/// What `refbridge sandbox` was asked for.
#[derive(Debug, Clone)]
pub struct SandboxRequest {
    pub host: IpAddr,
    pub salesforce_port: u16,
    pub hubspot_port: u16,
    pub seed: u64,
    pub scale: Scale,
    pub as_of: NaiveDate,
    pub faults: FaultPlan,
    pub export_dir: Option<PathBuf>,
    pub write_config: Option<PathBuf>,
    /// PEM public key that Salesforce JWT bearer assertions are verified with.
    pub salesforce_jwt_public_key: Option<PathBuf>,
    /// No rate limits or daily quotas (benchmarks): every call is answered at once.
    pub unthrottled: bool,
}

/// A limit no benchmark reaches.
const UNLIMITED: u64 = u64::MAX / 4;

/// Runs the sandboxes until a termination signal.
pub async fn serve(request: SandboxRequest) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let world = Arc::new(generate(WorldSpec {
        seed: request.seed,
        scale: request.scale,
        as_of: request.as_of,
    }));
    tracing::info!(
        seed = request.seed,
        scale = request.scale.as_str(),
        partners = world.partners.len(),
        contacts = world.contacts.len(),
        referrals = world.referrals.len(),
        activities = world.activities.len(),
        "synthetic world generated"
    );
    let jwt_public_key_pem = match &request.salesforce_jwt_public_key {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the JWT public key {}", path.display()))?,
        ),
        None => None,
    };
    let salesforce = refbridge_salesforce::sandbox::start(
        world.clone(),
        refbridge_salesforce::sandbox::SandboxOptions {
            bind: SocketAddr::new(request.host, request.salesforce_port),
            faults: request.faults.clone(),
            jwt_public_key_pem,
            ..if request.unthrottled {
                refbridge_salesforce::sandbox::SandboxOptions {
                    daily_api_limit: UNLIMITED,
                    ..Default::default()
                }
            } else {
                Default::default()
            }
        },
    )
    .await
    .with_context(|| {
        format!(
            "cannot start the Salesforce sandbox on {}:{}",
            request.host, request.salesforce_port
        )
    })?;
    let hubspot = refbridge_hubspot::sandbox::start(
        world.clone(),
        refbridge_hubspot::sandbox::SandboxOptions {
            bind: SocketAddr::new(request.host, request.hubspot_port),
            faults: request.faults.clone(),
            ..if request.unthrottled {
                refbridge_hubspot::sandbox::SandboxOptions {
                    daily_limit: UNLIMITED,
                    ten_secondly_limit: UNLIMITED,
                    search_per_second: UNLIMITED,
                    ..Default::default()
                }
            } else {
                Default::default()
            }
        },
    )
    .await
    .with_context(|| {
        format!(
            "cannot start the HubSpot sandbox on {}:{}",
            request.host, request.hubspot_port
        )
    })?;

    if let Some(directory) = &request.export_dir {
        let files = exports::write_exports(&world, directory).with_context(|| {
            format!("cannot write the EHR exports into {}", directory.display())
        })?;
        tracing::info!(directory = %directory.display(), csv = %files.generic_csv.display(), "EHR exports written");
    }
    if let Some(config) = &request.write_config {
        write_config(config, &salesforce, &hubspot, &world.facility.npi)
            .with_context(|| format!("cannot write the config {}", config.display()))?;
        tracing::info!(config = %config.display(), "refbridge config written");
    }

    let ready = json!({
        "salesforce": salesforce.credentials(),
        "hubspot": hubspot.credentials(),
        "seed": request.seed,
        "scale": request.scale.as_str(),
        "as_of": request.as_of.to_string(),
        "faults": request.faults.to_string(),
        "unthrottled": request.unthrottled,
        "export_dir": request.export_dir.as_ref().map(|d| d.display().to_string()),
        "config": request.write_config.as_ref().map(|c| c.display().to_string()),
        "admin": {
            "faults": "POST {base_url}/__admin/faults with a plan such as 429=0.1,503=0.05",
            "expire_tokens": "POST {base_url}/__admin/expire-tokens",
        },
    });
    println!("{ready}");
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "sandboxes ready; stop with Ctrl-C or SIGTERM"
    );

    wait_for_termination().await?;
    tracing::info!("stopping the sandboxes");
    salesforce.shutdown().await;
    hubspot.shutdown().await;
    Ok(())
}

async fn wait_for_termination() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// Writes a secret file readable by its owner only (replacing an older one).
fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut file, bytes)
}

/// Writes a config next to a state folder (`<config stem>.d/`: ledger, patient key, inbox) so that
/// `refbridge … --config FILE` works at once. An existing patient key is kept.
pub(crate) fn write_config(
    path: &Path,
    salesforce: &refbridge_salesforce::sandbox::RunningSandbox,
    hubspot: &refbridge_hubspot::sandbox::RunningSandbox,
    facility_npi: &str,
) -> anyhow::Result<()> {
    let directory = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = path
        .file_stem()
        .map_or_else(|| "refbridge".into(), |s| s.to_string_lossy().into_owned());
    let state = std::path::absolute(directory.join(format!("{stem}.d")))?;
    std::fs::create_dir_all(state.join("inbox"))?;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700))?;
    let key = state.join("patient_key");
    if !key.exists() {
        let mut bytes = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
        write_secret(&key, &bytes)?;
    }
    let credentials = salesforce.credentials();
    let text_of = |name: &str| credentials[name].as_str().unwrap_or_default().to_string();
    let salesforce_secret = state.join("salesforce_client_secret");
    write_secret(&salesforce_secret, text_of("client_secret").as_bytes())?;
    let hubspot_credentials = hubspot.credentials();
    let hubspot_token = state.join("hubspot_private_app_token");
    write_secret(
        &hubspot_token,
        hubspot_credentials["private_app_token"]
            .as_str()
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let text = format!(
        "# Written by `refbridge sandbox`: a refbridge config for the local sandboxes.\n\
         # Salesforce sandbox: {salesforce_url}\n\
         # HubSpot sandbox:    {hubspot_url}\n\
         \n\
         [ledger]\n\
         path = {ledger:?}\n\
         \n\
         [privacy]\n\
         patient_key_file = {key:?}\n\
         \n\
         [connectors.ehr]\n\
         inbox = {inbox:?}\n\
         \n\
         [connectors.ehr.fhir]\n\
         facility_npi = {facility_npi:?}\n\
         \n\
         [connectors.salesforce]\n\
         instance_url = {salesforce_url:?}\n\
         login_url = {salesforce_url:?}\n\
         # A sandbox settles at once; a real org wants the default (300).\n\
         settle_lag_seconds = 2\n\
         # The integration user holds the accounts no rep has claimed: the team queue.\n\
         queue_owner_id = {queue_owner:?}\n\
         \n\
         [connectors.salesforce.auth]\n\
         method = \"client_credentials\"\n\
         client_id = {client_id:?}\n\
         client_secret_file = {secret:?}\n\
         \n\
         [connectors.hubspot]\n\
         base_url = {hubspot_url:?}\n\
         settle_lag_seconds = 2\n\
         \n\
         [connectors.hubspot.auth]\n\
         method = \"private_app\"\n\
         access_token_file = {hubspot_token:?}\n",
        hubspot_token = hubspot_token.display().to_string(),
        client_id = text_of("client_id"),
        queue_owner = text_of("user_id"),
        secret = salesforce_secret.display().to_string(),
        salesforce_url = salesforce.base_url(),
        hubspot_url = hubspot.base_url(),
        ledger = state.join("ledger.db").display().to_string(),
        key = key.display().to_string(),
        inbox = state.join("inbox").display().to_string(),
    );
    std::fs::write(path, text)?;
    Ok(())
}
