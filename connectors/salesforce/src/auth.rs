//! Access tokens: obtained by one of three OAuth 2.0 grants, shared by every request, refreshed
//! by one task at a time.
//!
//! The refresh-token and client-credentials grants go through the `oauth2` crate's `BasicClient`
//! over refbridge's own reqwest client ([`OAuthTransport`] implements `AsyncHttpClient`). `oauth2`
//! has no JWT bearer grant, so the RS256 assertion (iss = client id, sub = username, aud = login
//! URL, exp three minutes ahead) is signed here and posted with the same client. A refused grant
//! (`invalid_grant`, a wrong client) is a configuration error whose message says what to fix,
//! and is never retried; 5xx, 429 and transport failures of the token endpoint follow the retry
//! policy. This module never logs, prints or returns a token, an assertion or a secret: tokens
//! live in [`AccessToken`], whose `Debug` is redacted and which has no `Display`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2::basic::{BasicClient, BasicErrorResponse, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RefreshToken, RequestTokenError,
    TokenResponse, TokenUrl,
};
use refbridge_http::{OAuthTransport, TransportFailure};
use refbridge_http::{retry_after, transport_summary};
use refbridge_model::crm::{FailureClass, RetryDecision, RetryPolicy};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::{Mutex, RwLock};

use crate::config::{AuthMethod, SalesforceConfig, SalesforceSecrets};
use crate::error::SalesforceError;

/// How long a JWT assertion is valid (Salesforce accepts at most three minutes).
const ASSERTION_LIFETIME_SECONDS: i64 = 170;
/// A token this close to a known expiry is replaced before use.
const EARLY_REFRESH: Duration = Duration::from_secs(60);
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

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
    /// Known only when the grant answered `expires_in` (Salesforce usually does not).
    expires_at: Option<Instant>,
    /// Counts sessions, so a task that saw a stale one can tell whether another task replaced it.
    generation: u64,
}

impl Session {
    fn expiring(&self) -> bool {
        self.expires_at
            .is_some_and(|at| at.saturating_duration_since(Instant::now()) < EARLY_REFRESH)
    }
}

type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The chosen grant with what it needs (secrets included; none of it is ever printed).
enum Grant {
    JwtBearer {
        client_id: String,
        username: String,
        audience: String,
        key: Box<SigningKey<Sha256>>,
    },
    RefreshToken {
        client: Box<TokenClient>,
        refresh_token: RefreshToken,
    },
    ClientCredentials {
        client: Box<TokenClient>,
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

fn secret_text(bytes: &Option<Vec<u8>>, key: &str) -> Result<String, SalesforceError> {
    let bytes = bytes.as_ref().ok_or_else(|| {
        SalesforceError::Config(format!(
            "the secret of auth.{key} was not loaded; set auth.{key}"
        ))
    })?;
    let text = std::str::from_utf8(bytes).map_err(|_| {
        SalesforceError::Config(format!("the file of auth.{key} is not UTF-8 text"))
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(SalesforceError::Config(format!(
            "the file of auth.{key} is empty"
        )));
    }
    Ok(text.to_string())
}

/// Parses a PEM RSA key, PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
fn signing_key(pem: &str) -> Result<SigningKey<Sha256>, SalesforceError> {
    let key = RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|_| {
            SalesforceError::Config(
                "auth.private_key_file holds no RSA private key in PEM (PKCS#8 \"PRIVATE KEY\" or PKCS#1 \"RSA PRIVATE KEY\")"
                    .to_string(),
            )
        })?;
    Ok(SigningKey::<Sha256>::new(key))
}

impl Auth {
    pub(crate) fn new(
        config: &SalesforceConfig,
        secrets: &SalesforceSecrets,
        http: reqwest::Client,
        policy: RetryPolicy,
    ) -> Result<Auth, SalesforceError> {
        let auth = &config.auth;
        let login = config.login_url.trim_end_matches('/').to_string();
        let token_url = format!("{login}/services/oauth2/token");
        let oauth_client = |secret: Option<String>| -> Result<Box<TokenClient>, SalesforceError> {
            let url = TokenUrl::new(token_url.clone()).map_err(|_| {
                SalesforceError::Config("login_url does not make a valid token URL".to_string())
            })?;
            let mut client = BasicClient::new(ClientId::new(auth.client_id.clone()))
                .set_auth_type(AuthType::RequestBody)
                .set_token_uri(url);
            if let Some(secret) = secret {
                client = client.set_client_secret(ClientSecret::new(secret));
            }
            Ok(Box::new(client))
        };
        let grant = match auth.method {
            AuthMethod::JwtBearer => Grant::JwtBearer {
                client_id: auth.client_id.clone(),
                username: auth.username.clone().unwrap_or_default(),
                audience: login.clone(),
                key: Box::new(signing_key(&secret_text(
                    &secrets.private_key_pem,
                    "private_key_file",
                )?)?),
            },
            AuthMethod::RefreshToken => Grant::RefreshToken {
                client: oauth_client(
                    secrets
                        .client_secret
                        .as_ref()
                        .map(|_| secret_text(&secrets.client_secret, "client_secret_file"))
                        .transpose()?,
                )?,
                refresh_token: RefreshToken::new(secret_text(
                    &secrets.refresh_token,
                    "refresh_token_file",
                )?),
            },
            AuthMethod::ClientCredentials => Grant::ClientCredentials {
                client: oauth_client(Some(secret_text(
                    &secrets.client_secret,
                    "client_secret_file",
                )?))?,
            },
        };
        Ok(Auth {
            grant,
            token_url,
            transport: OAuthTransport { http },
            policy,
            current: RwLock::new(None),
            refreshing: Mutex::new(()),
            generations: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
        })
    }

    /// Token requests sent so far (they do not count against the API quota).
    pub(crate) fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    /// The current session, logging in first when there is none or it is about to expire.
    pub(crate) async fn session(&self) -> Result<Arc<Session>, SalesforceError> {
        if let Some(session) = self.current.read().await.as_ref()
            && !session.expiring()
        {
            return Ok(Arc::clone(session));
        }
        self.replace(None).await
    }

    /// A new session because `stale` was refused; if another task has already replaced it, that
    /// one is returned without a second login.
    pub(crate) async fn refresh(&self, stale: &Session) -> Result<Arc<Session>, SalesforceError> {
        self.replace(Some(stale.generation)).await
    }

    async fn replace(&self, stale: Option<u64>) -> Result<Arc<Session>, SalesforceError> {
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
        let session = Arc::new(Session {
            token,
            expires_at: expires_in.map(|lifetime| Instant::now() + lifetime),
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
        });
        *self.current.write().await = Some(Arc::clone(&session));
        tracing::debug!(token_url = %self.token_url, "salesforce session obtained");
        Ok(session)
    }

    /// One grant, retried by the policy.
    async fn login(&self) -> Result<(AccessToken, Option<Duration>), SalesforceError> {
        let mut retries = 0;
        loop {
            self.token_requests.fetch_add(1, Ordering::Relaxed);
            let failure = match self.grant_once().await {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            match self
                .policy
                .decide(&failure.class, retries, true, crate::http::jitter())
            {
                RetryDecision::Wait(delay) => {
                    tracing::warn!(attempt = retries + 1, reason = %failure.message, "salesforce login failed; retrying");
                    retries += 1;
                    tokio::time::sleep(delay).await;
                }
                RetryDecision::RefreshCredentials | RetryDecision::GiveUp => {
                    return Err(failure.into_error(&self.token_url, retries + 1));
                }
            }
        }
    }

    async fn grant_once(&self) -> Result<(AccessToken, Option<Duration>), LoginFailure> {
        match &self.grant {
            Grant::JwtBearer {
                client_id,
                username,
                audience,
                key,
            } => {
                let assertion = sign_assertion(key, client_id, username, audience)?;
                self.jwt_bearer(&assertion).await
            }
            Grant::RefreshToken {
                client,
                refresh_token,
            } => {
                let answer = client
                    .exchange_refresh_token(refresh_token)
                    .request_async(&self.transport)
                    .await;
                token_answer(answer, AuthMethod::RefreshToken)
            }
            Grant::ClientCredentials { client } => {
                let answer = client
                    .exchange_client_credentials()
                    .request_async(&self.transport)
                    .await;
                token_answer(answer, AuthMethod::ClientCredentials)
            }
        }
    }

    async fn jwt_bearer(
        &self,
        assertion: &str,
    ) -> Result<(AccessToken, Option<Duration>), LoginFailure> {
        let response = self
            .transport
            .http
            .post(&self.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion)])
            .send()
            .await
            .map_err(LoginFailure::transport)?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.map_err(LoginFailure::transport)?;
        if status == 200 {
            #[derive(Deserialize)]
            struct Answer {
                access_token: String,
                #[serde(default)]
                expires_in: Option<u64>,
            }
            let answer: Answer = serde_json::from_slice(&body).map_err(|_| LoginFailure {
                class: FailureClass::Retryable,
                message: "the token endpoint answered 200 without an access token".to_string(),
            })?;
            return Ok((
                AccessToken(answer.access_token),
                answer.expires_in.map(Duration::from_secs),
            ));
        }
        #[derive(Deserialize)]
        struct ErrorAnswer {
            error: String,
            #[serde(default)]
            error_description: Option<String>,
        }
        match serde_json::from_slice::<ErrorAnswer>(&body) {
            Ok(answer) if status < 500 && status != 429 => Err(refused(
                AuthMethod::JwtBearer,
                &answer.error,
                answer.error_description.as_deref(),
            )),
            _ => Err(LoginFailure {
                class: FailureClass::from_status(status, retry_after),
                message: format!("the token endpoint answered HTTP {status}"),
            }),
        }
    }
}

/// Signs the JWT bearer assertion: header `{"alg":"RS256"}`, claims iss/sub/aud/exp.
fn sign_assertion(
    key: &SigningKey<Sha256>,
    client_id: &str,
    username: &str,
    audience: &str,
) -> Result<String, LoginFailure> {
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": username,
        "aud": audience,
        "exp": chrono::Utc::now().timestamp() + ASSERTION_LIFETIME_SECONDS,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.try_sign(input.as_bytes()).map_err(|_| LoginFailure {
        class: FailureClass::Config,
        message: "the key of auth.private_key_file cannot sign an RS256 assertion".to_string(),
    })?;
    Ok(format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    ))
}

/// Why one login attempt failed.
#[derive(Debug)]
struct LoginFailure {
    class: FailureClass,
    message: String,
}

impl LoginFailure {
    fn transport(error: reqwest::Error) -> LoginFailure {
        LoginFailure {
            class: FailureClass::transport(),
            message: transport_summary(&error),
        }
    }

    fn into_error(self, token_url: &str, attempts: u32) -> SalesforceError {
        match self.class {
            FailureClass::Config | FailureClass::PermanentRow | FailureClass::Auth => {
                SalesforceError::Config(self.message)
            }
            FailureClass::Quota { retry_after } => SalesforceError::Quota {
                retry_after,
                detail: format!("the token endpoint is throttled ({})", self.message),
            },
            FailureClass::Retryable => SalesforceError::Unavailable {
                request: format!("POST {token_url}"),
                attempts,
                detail: self.message,
            },
        }
    }
}

/// What a refused grant means and what to fix.
fn refused(method: AuthMethod, error: &str, description: Option<&str>) -> LoginFailure {
    let said = match description {
        Some(description) => format!("{error}: {description}"),
        None => error.to_string(),
    };
    let advice = match (error, method) {
        ("invalid_grant", AuthMethod::JwtBearer) => {
            "check that auth.username is an active user pre-authorized for the connected app \
             (auth.client_id), that the app's certificate matches auth.private_key_file, and that \
             login_url is the right login host (https://test.salesforce.com for sandboxes)"
        }
        ("invalid_grant", AuthMethod::RefreshToken) => {
            "the refresh token was revoked or expired or belongs to another connected app: \
             authorize again and store the new token in auth.refresh_token_file"
        }
        ("invalid_grant", AuthMethod::ClientCredentials) => {
            "enable the client credentials flow with a run-as user on the connected app, and set \
             login_url to the org's My Domain URL"
        }
        ("invalid_client_id", _) => "auth.client_id is not the connected app's consumer key",
        ("invalid_client", _) => {
            "the consumer key (auth.client_id) and secret (auth.client_secret_file) do not match"
        }
        ("unsupported_grant_type", _) => {
            "the connected app does not allow this login; check auth.method"
        }
        _ => "check the [connectors.salesforce.auth] table against the connected app",
    };
    LoginFailure {
        class: FailureClass::Config,
        message: format!(
            "Salesforce refused the {} login ({said}); {advice}",
            method.as_str()
        ),
    }
}

fn token_answer(
    answer: Result<
        oauth2::basic::BasicTokenResponse,
        RequestTokenError<TransportFailure, BasicErrorResponse>,
    >,
    method: AuthMethod,
) -> Result<(AccessToken, Option<Duration>), LoginFailure> {
    match answer {
        Ok(response) => Ok((
            AccessToken(response.access_token().secret().clone()),
            response.expires_in(),
        )),
        Err(RequestTokenError::ServerResponse(error)) => {
            let code = match error.error() {
                BasicErrorResponseType::InvalidGrant => "invalid_grant".to_string(),
                BasicErrorResponseType::InvalidClient => "invalid_client".to_string(),
                BasicErrorResponseType::UnsupportedGrantType => {
                    "unsupported_grant_type".to_string()
                }
                other => other.as_ref().to_string(),
            };
            Err(refused(
                method,
                &code,
                error.error_description().map(String::as_str),
            ))
        }
        Err(RequestTokenError::Request(failure)) => Err(LoginFailure {
            class: failure.class,
            message: failure.message,
        }),
        // The body is deliberately dropped: a success body would hold a token.
        Err(RequestTokenError::Parse(_, _)) => Err(LoginFailure {
            class: FailureClass::Retryable,
            message: "the token endpoint's answer could not be read".to_string(),
        }),
        Err(RequestTokenError::Other(_)) => Err(LoginFailure {
            class: FailureClass::Retryable,
            message: "the token endpoint answered with an unexpected response".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_grants_are_config_errors_that_say_what_to_fix() {
        let failure = refused(
            AuthMethod::RefreshToken,
            "invalid_grant",
            Some("expired access/refresh token"),
        );
        assert_eq!(failure.class, FailureClass::Config);
        assert!(
            failure.message.contains("auth.refresh_token_file"),
            "{}",
            failure.message
        );
        let error = failure.into_error("https://login.salesforce.com/services/oauth2/token", 1);
        assert!(matches!(error, SalesforceError::Config(_)));
        let failure = refused(AuthMethod::JwtBearer, "invalid_grant", None);
        assert!(failure.message.contains("auth.username"));
    }

    #[test]
    fn tokens_and_keys_never_print() {
        assert_eq!(
            format!("{:?}", AccessToken("00D!secret".into())),
            "AccessToken([redacted])"
        );
        let error = signing_key("not a key").err().unwrap();
        assert!(error.to_string().contains("auth.private_key_file"));
    }

    #[test]
    fn the_assertion_carries_the_claims_and_expires_within_three_minutes() {
        let pem = include_str!("../tests/data/jwt_test_key.pem");
        let key = signing_key(pem).unwrap();
        let assertion = sign_assertion(
            &key,
            "3MVG9",
            "u@example.com",
            "https://login.salesforce.com",
        )
        .unwrap();
        let parts: Vec<&str> = assertion.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "3MVG9");
        assert_eq!(claims["sub"], "u@example.com");
        assert_eq!(claims["aud"], "https://login.salesforce.com");
        let ahead = claims["exp"].as_i64().unwrap() - chrono::Utc::now().timestamp();
        assert!((1..=180).contains(&ahead), "{ahead}");
    }
}
