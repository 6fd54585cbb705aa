//! Access tokens: a private app's token read from a file, or OAuth access tokens obtained with the
//! refresh-token grant (`POST /oauth/v1/token`), shared by every request and refreshed early by one
//! task at a time.
//!
//! The refresh grant goes through the `oauth2` crate's `BasicClient` over refbridge's own reqwest
//! client: [`OAuthTransport`] is the small `AsyncHttpClient` adapter, a deliberate copy of the
//! Salesforce crate's (about forty lines; it is HTTP glue, so it cannot live in the pure model
//! crate). HubSpot answers a refused grant with its own body (`{status:"BAD_REFRESH_TOKEN",
//! message}`), not RFC 6749's, so that body is read here and turned into a configuration error
//! that says what to fix; it is never retried. 5xx, 429 and transport failures of the token
//! endpoint follow the retry policy. This module never logs, prints or returns a token or a
//! secret: tokens live in [`AccessToken`], whose `Debug` is redacted and which has no `Display`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oauth2::basic::{BasicClient, BasicErrorResponse};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RefreshToken, RequestTokenError,
    TokenResponse, TokenUrl,
};
use refbridge_http::{OAuthTransport, TransportFailure};
use refbridge_model::crm::{FailureClass, RetryDecision, RetryPolicy};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use crate::config::{AuthMethod, HubspotConfig, HubspotSecrets};
use crate::error::HubspotError;

/// A token is replaced when less than this share of its lifetime (at most a minute) is left.
const EARLY_REFRESH_MAX: Duration = Duration::from_secs(60);

/// An access token. `Debug` prints `[redacted]`; there is no `Display`.
#[derive(Clone)]
pub struct AccessToken(String);

impl AccessToken {
    /// The value, for the `Authorization` header only.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// A token and what is known of its life.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) token: AccessToken,
    /// When to replace it (a little before it expires); `None` for a private app token.
    refresh_at: Option<Instant>,
    pub(crate) generation: u64,
}

impl Session {
    fn expiring(&self) -> bool {
        self.refresh_at.is_some_and(|at| Instant::now() >= at)
    }
}

type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

enum Grant {
    PrivateApp,
    Oauth {
        client: Box<TokenClient>,
        refresh_token: std::sync::Mutex<RefreshToken>,
    },
}

/// The shared token: one session at a time, replaced under a lock by one task.
pub(crate) struct Auth {
    grant: Grant,
    token_url: String,
    transport: OAuthTransport,
    policy: RetryPolicy,
    current: RwLock<Option<Arc<Session>>>,
    refreshing: Mutex<()>,
    generations: AtomicU64,
    token_requests: AtomicU64,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

fn secret_text(bytes: &Option<Vec<u8>>, key: &str) -> Result<String, HubspotError> {
    let bytes = bytes.as_ref().ok_or_else(|| {
        HubspotError::Config(format!(
            "the secret of auth.{key} was not loaded; set auth.{key}"
        ))
    })?;
    let text = std::str::from_utf8(bytes)
        .map_err(|_| HubspotError::Config(format!("the file of auth.{key} is not UTF-8 text")))?
        .trim();
    if text.is_empty() {
        return Err(HubspotError::Config(format!(
            "the file of auth.{key} is empty"
        )));
    }
    Ok(text.to_string())
}

impl Auth {
    pub(crate) fn new(
        config: &HubspotConfig,
        secrets: &HubspotSecrets,
        http: reqwest::Client,
        policy: RetryPolicy,
    ) -> Result<Auth, HubspotError> {
        let token_url = format!("{}/oauth/v1/token", config.base_url.trim_end_matches('/'));
        let mut first = None;
        let grant = match config.auth.method {
            AuthMethod::PrivateApp => {
                first = Some(Arc::new(Session {
                    token: AccessToken(secret_text(&secrets.access_token, "access_token_file")?),
                    refresh_at: None,
                    generation: 0,
                }));
                Grant::PrivateApp
            }
            AuthMethod::Oauth => {
                let url = TokenUrl::new(token_url.clone()).map_err(|_| {
                    HubspotError::Config("base_url does not make a valid token URL".to_string())
                })?;
                let client_id = config.auth.client_id.clone().unwrap_or_default();
                let client = BasicClient::new(ClientId::new(client_id))
                    .set_auth_type(AuthType::RequestBody)
                    .set_client_secret(ClientSecret::new(secret_text(
                        &secrets.client_secret,
                        "client_secret_file",
                    )?))
                    .set_token_uri(url);
                Grant::Oauth {
                    client: Box::new(client),
                    refresh_token: std::sync::Mutex::new(RefreshToken::new(secret_text(
                        &secrets.refresh_token,
                        "refresh_token_file",
                    )?)),
                }
            }
        };
        Ok(Auth {
            grant,
            token_url,
            transport: OAuthTransport { http },
            policy,
            current: RwLock::new(first),
            refreshing: Mutex::new(()),
            generations: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
        })
    }

    /// Token requests sent so far (they do not count against the API limits).
    pub(crate) fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    /// The current session, refreshing first when there is none or it is about to expire.
    pub(crate) async fn session(&self) -> Result<Arc<Session>, HubspotError> {
        if let Some(session) = self.current.read().await.as_ref()
            && !session.expiring()
        {
            return Ok(Arc::clone(session));
        }
        self.replace(None).await
    }

    /// A new session because `stale` was refused (once per request); if another task has
    /// already replaced it, that one is returned without a second refresh.
    pub(crate) async fn refresh(&self, stale: &Session) -> Result<Arc<Session>, HubspotError> {
        if matches!(self.grant, Grant::PrivateApp) {
            return Err(HubspotError::Config(
                "HubSpot refused the private app's access token: it was rotated or the app was \
                 deleted; store the app's current token in auth.access_token_file"
                    .to_string(),
            ));
        }
        self.replace(Some(stale.generation)).await
    }

    async fn replace(&self, stale: Option<u64>) -> Result<Arc<Session>, HubspotError> {
        let _one_at_a_time = self.refreshing.lock().await;
        if let Some(session) = self.current.read().await.as_ref() {
            let replaced_meanwhile = match stale {
                Some(generation) => session.generation != generation,
                None => !session.expiring(),
            };
            if replaced_meanwhile {
                return Ok(Arc::clone(session));
            }
        }
        let (token, expires_in) = self.login().await?;
        let refresh_at = expires_in.map(|lifetime| {
            let early = (lifetime / 4).min(EARLY_REFRESH_MAX);
            Instant::now() + lifetime.saturating_sub(early)
        });
        let session = Arc::new(Session {
            token,
            refresh_at,
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
        });
        *self.current.write().await = Some(Arc::clone(&session));
        tracing::debug!("hubspot access token refreshed");
        Ok(session)
    }

    /// One refresh grant, retried by the policy.
    async fn login(&self) -> Result<(AccessToken, Option<Duration>), HubspotError> {
        let Grant::Oauth {
            client,
            refresh_token,
        } = &self.grant
        else {
            return Err(HubspotError::Config(
                "the private app token cannot be refreshed".to_string(),
            ));
        };
        let mut retries = 0;
        loop {
            self.token_requests.fetch_add(1, Ordering::Relaxed);
            let current = refresh_token
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            let answer = client
                .exchange_refresh_token(&current)
                .request_async(&self.transport)
                .await;
            let failure = match answer {
                Ok(response) => {
                    if let Some(rotated) = response.refresh_token() {
                        *refresh_token
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner()) = rotated.clone();
                    }
                    return Ok((
                        AccessToken(response.access_token().secret().clone()),
                        response.expires_in(),
                    ));
                }
                Err(error) => login_failure(error),
            };
            match self
                .policy
                .decide(&failure.class, retries, true, crate::http::jitter())
            {
                RetryDecision::Wait(delay) => {
                    tracing::warn!(attempt = retries + 1, reason = %failure.message, "hubspot token refresh failed; retrying");
                    retries += 1;
                    tokio::time::sleep(delay).await;
                }
                RetryDecision::RefreshCredentials | RetryDecision::GiveUp => {
                    return Err(failure.into_error(&self.token_url, retries + 1));
                }
            }
        }
    }
}

/// Why one refresh attempt failed.
#[derive(Debug)]
struct LoginFailure {
    class: FailureClass,
    message: String,
}

impl LoginFailure {
    fn into_error(self, token_url: &str, attempts: u32) -> HubspotError {
        match self.class {
            FailureClass::Config | FailureClass::PermanentRow | FailureClass::Auth => {
                HubspotError::Config(self.message)
            }
            FailureClass::Quota { retry_after } => HubspotError::Quota {
                retry_after,
                detail: format!("the token endpoint is throttled ({})", self.message),
            },
            FailureClass::Retryable => HubspotError::Unavailable {
                request: format!("POST {}", path_of(token_url)),
                attempts,
                detail: self.message,
            },
        }
    }
}

fn path_of(url: &str) -> &str {
    url.find("://")
        .and_then(|scheme| {
            url[scheme + 3..]
                .find('/')
                .map(|at| &url[scheme + 3 + at..])
        })
        .unwrap_or(url)
}

/// What a refused refresh means and what to fix. `status` is HubSpot's code
/// (`BAD_REFRESH_TOKEN`, `BAD_CLIENT_ID`, …) or RFC 6749's `error`.
pub(crate) fn refused(status: &str, message: &str) -> LoginFailureView {
    let advice = match status {
        "BAD_REFRESH_TOKEN" | "invalid_grant" => {
            "the refresh token was revoked, or the app was uninstalled from the portal: install \
             the app again and store the new refresh token in auth.refresh_token_file"
        }
        "BAD_CLIENT_ID" | "invalid_client" => {
            "auth.client_id is not the app's client id, or does not match auth.client_secret_file"
        }
        "BAD_CLIENT_SECRET" => "auth.client_secret_file does not hold the app's client secret",
        _ => "check the [connectors.hubspot.auth] table against the app's settings",
    };
    LoginFailureView(format!(
        "HubSpot refused the OAuth refresh ({status}: {message}); {advice}"
    ))
}

/// A refused refresh, as a message (kept apart so that tests can read it).
#[derive(Debug)]
pub(crate) struct LoginFailureView(pub(crate) String);

fn login_failure(error: RequestTokenError<TransportFailure, BasicErrorResponse>) -> LoginFailure {
    let config = |view: LoginFailureView| LoginFailure {
        class: FailureClass::Config,
        message: view.0,
    };
    match error {
        RequestTokenError::ServerResponse(error) => config(refused(
            error.error().as_ref(),
            error.error_description().map(String::as_str).unwrap_or(""),
        )),
        RequestTokenError::Request(failure) => LoginFailure {
            class: failure.class,
            message: failure.message,
        },
        // HubSpot's own error shape does not parse as RFC 6749's; read it here. A success body
        // that failed to parse would hold a token: only `status` and `message` are ever read.
        RequestTokenError::Parse(_, body) => oauth_error_body(&body),
        RequestTokenError::Other(_) => LoginFailure {
            class: FailureClass::Retryable,
            message: "the token endpoint answered with an unexpected response".to_string(),
        },
    }
}

/// HubSpot's own OAuth error shape (`{status, message}`), which does not parse as RFC 6749's. A
/// success body that failed to parse would hold a token: only `status` and `message` are read.
fn oauth_error_body(body: &[u8]) -> LoginFailure {
    #[derive(Deserialize)]
    struct HubspotOAuthError {
        status: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<HubspotOAuthError>(body) {
        Ok(answer) if !answer.status.is_empty() => LoginFailure {
            class: FailureClass::Config,
            message: refused(&answer.status, &answer.message).0,
        },
        _ => LoginFailure {
            class: FailureClass::Retryable,
            message: "the token endpoint's answer could not be read".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_refresh_says_what_to_fix() {
        let view = refused("BAD_REFRESH_TOKEN", "missing or unknown refresh token");
        assert!(view.0.contains("auth.refresh_token_file"), "{}", view.0);
        let view = refused("BAD_CLIENT_SECRET", "missing or unknown client secret");
        assert!(view.0.contains("auth.client_secret_file"), "{}", view.0);
        let failure = LoginFailure {
            class: FailureClass::Config,
            message: "m".into(),
        };
        assert!(matches!(
            failure.into_error("https://api.hubapi.com/oauth/v1/token", 1),
            HubspotError::Config(_)
        ));
        assert_eq!(
            path_of("https://api.hubapi.com/oauth/v1/token"),
            "/oauth/v1/token"
        );
    }

    #[test]
    fn hubspot_oauth_error_bodies_are_read_and_garbage_is_retryable() {
        let body = br#"{"status":"BAD_REFRESH_TOKEN","message":"missing or unknown refresh token","correlationId":"x"}"#;
        let failure = oauth_error_body(body);
        assert_eq!(failure.class, FailureClass::Config);
        assert!(failure.message.contains("BAD_REFRESH_TOKEN"));
        assert_eq!(oauth_error_body(b"<html>").class, FailureClass::Retryable);
        assert_eq!(
            oauth_error_body(br#"{"access_token":"CNsecret"}"#).class,
            FailureClass::Retryable
        );
    }

    #[test]
    fn tokens_never_print() {
        assert_eq!(
            format!("{:?}", AccessToken("CNsecret".into())),
            "AccessToken([redacted])"
        );
    }
}
