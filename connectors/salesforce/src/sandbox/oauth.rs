//! `POST /services/oauth2/token` and the access tokens it issues.
//!
//! Grants: JWT bearer (RS256 assertion checked against the configured public key, `iss` = the
//! sandbox's client id, `sub` = a known active username, `aud` = the sandbox URL or
//! login/test.salesforce.com, `exp` in the future and at most five minutes ahead — Salesforce asks
//! for three, the sandbox allows two more for clock skew), refresh token, and client credentials
//! (id and secret in the body or HTTP Basic). Errors are answered as Salesforce does, HTTP 400
//! `{"error", "error_description"}` — the one error shape that is not a JSON array.
//!
//! Tokens are random-looking but derived from a counter and the client secret; this module never
//! logs a token or an assertion.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{
    GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD,
};
use chrono::Utc;
use hmac::Mac;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

/// The audiences a JWT may name besides the sandbox's own URL.
pub const LOGIN_AUDIENCES: [&str; 2] = [
    "https://login.salesforce.com",
    "https://test.salesforce.com",
];

/// How far ahead a JWT's `exp` may lie.
const MAX_ASSERTION_LIFETIME_SECONDS: i64 = 300;

/// URL-safe base64 that accepts segments with or without padding, as JWT libraries differ.
const URL_SAFE_NO_PAD_INDIFFERENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// An OAuth error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }

    fn invalid_grant(description: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_grant", description)
    }

    pub fn body(&self) -> String {
        json!({"error": self.error, "error_description": self.description}).to_string()
    }
}

/// Why a configured public key is unusable.
#[derive(Debug, thiserror::Error)]
#[error("the JWT public key is neither an SPKI \"PUBLIC KEY\" nor a PKCS#1 \"RSA PUBLIC KEY\" PEM")]
pub struct PublicKeyError;

/// Parses an SPKI (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`) PEM.
pub fn parse_public_key(pem: &str) -> Result<VerifyingKey<Sha256>, PublicKeyError> {
    let key = rsa::RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|_| PublicKeyError)?;
    Ok(VerifyingKey::<Sha256>::new(key))
}

/// A user the token endpoint may issue tokens for.
#[derive(Debug, Clone)]
pub struct LoginUser {
    pub user_id: String,
    pub active: bool,
}

/// The sandbox's connected app and its users.
#[derive(Debug)]
pub struct OAuthConfig {
    pub client_id: String,
    pub client_secret: String,
    pub org_id: String,
    pub base_url: String,
    pub verifying_key: Option<VerifyingKey<Sha256>>,
    /// Lower-cased username → user.
    pub users: HashMap<String, LoginUser>,
}

#[derive(Debug, Clone)]
struct AccessToken {
    user_id: String,
    expires_at: Instant,
}

/// Issued tokens.
#[derive(Debug, Default)]
pub struct TokenRegistry {
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, String>,
    counter: u64,
}

impl TokenRegistry {
    fn mint(&mut self, config: &OAuthConfig, kind: &str) -> String {
        self.counter += 1;
        let mut hasher = Sha256::new();
        hasher.update(config.client_secret.as_bytes());
        hasher.update(kind.as_bytes());
        hasher.update(self.counter.to_le_bytes());
        hasher.update(
            Utc::now()
                .timestamp_nanos_opt()
                .unwrap_or_default()
                .to_le_bytes(),
        );
        let digest = URL_SAFE_NO_PAD.encode(hasher.finalize());
        let org15 = config.org_id.get(..15).unwrap_or(&config.org_id);
        format!("{org15}!AQ{}", digest.replace(['-', '_'], "."))
    }

    /// A new access token for `user_id`, valid for `ttl`.
    pub fn issue_access(&mut self, config: &OAuthConfig, user_id: &str, ttl: Duration) -> String {
        let token = self.mint(config, "access");
        self.access.insert(
            token.clone(),
            AccessToken {
                user_id: user_id.to_string(),
                expires_at: Instant::now() + ttl,
            },
        );
        token
    }

    /// A new refresh token for `user_id` (refresh tokens do not expire in the sandbox).
    pub fn issue_refresh(&mut self, config: &OAuthConfig, user_id: &str) -> String {
        let token = format!("5Aep{}", self.mint(config, "refresh").replace('!', "."));
        self.refresh.insert(token.clone(), user_id.to_string());
        token
    }

    /// The user an unexpired access token belongs to.
    pub fn user_of(&self, token: &str) -> Option<&str> {
        self.access
            .get(token)
            .filter(|access| access.expires_at > Instant::now())
            .map(|access| access.user_id.as_str())
    }

    /// True for a token this sandbox issued whose lifetime is over.
    pub fn is_expired(&self, token: &str) -> bool {
        self.access
            .get(token)
            .is_some_and(|access| access.expires_at <= Instant::now())
    }

    /// Every access token issued so far stops working now (refresh tokens keep working).
    pub fn expire_all(&mut self) -> usize {
        let now = Instant::now();
        let mut expired = 0;
        for access in self.access.values_mut() {
            if access.expires_at > now {
                expired += 1;
            }
            access.expires_at = now;
        }
        expired
    }
}

/// The client id and secret from HTTP Basic, if the request used it.
pub fn basic_credentials(header: Option<&str>) -> Option<(String, String)> {
    let encoded = header?.trim().strip_prefix("Basic ")?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// Answers a token request. `form` is the decoded body; `ttl` the lifetime of access tokens
/// issued now.
pub fn token(
    config: &OAuthConfig,
    registry: &mut TokenRegistry,
    form: &HashMap<String, String>,
    basic: Option<(String, String)>,
    ttl: Duration,
) -> Result<Json, OAuthError> {
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    let identity = |user_id: &str| format!("{}/id/{}/{}", config.base_url, config.org_id, user_id);
    match grant_type {
        JWT_BEARER => {
            let assertion = form
                .get("assertion")
                .ok_or_else(|| OAuthError::invalid_grant("invalid assertion"))?;
            let user_id = verify_assertion(config, assertion)?;
            let access_token = registry.issue_access(config, &user_id, ttl);
            Ok(json!({
                "access_token": access_token,
                "scope": "api",
                "instance_url": config.base_url,
                "id": identity(&user_id),
                "token_type": "Bearer",
            }))
        }
        "refresh_token" => {
            let client_id = form
                .get("client_id")
                .cloned()
                .or_else(|| basic.as_ref().map(|(id, _)| id.clone()));
            if client_id.as_deref() != Some(config.client_id.as_str()) {
                return Err(OAuthError::new(
                    "invalid_client_id",
                    "client identifier invalid",
                ));
            }
            let secret = form
                .get("client_secret")
                .cloned()
                .or_else(|| basic.map(|(_, secret)| secret));
            if secret.is_some_and(|secret| secret != config.client_secret) {
                return Err(OAuthError::new(
                    "invalid_client",
                    "invalid client credentials",
                ));
            }
            let user_id = form
                .get("refresh_token")
                .and_then(|token| registry.refresh.get(token))
                .cloned()
                .ok_or_else(|| OAuthError::invalid_grant("expired access/refresh token"))?;
            let access_token = registry.issue_access(config, &user_id, ttl);
            Ok(signed_response(config, access_token, identity(&user_id)))
        }
        "client_credentials" => {
            let (client_id, secret) =
                match (form.get("client_id"), form.get("client_secret"), basic) {
                    (Some(id), Some(secret), _) => (id.clone(), secret.clone()),
                    (_, _, Some(pair)) => pair,
                    _ => {
                        return Err(OAuthError::new(
                            "invalid_client",
                            "invalid client credentials",
                        ));
                    }
                };
            if client_id != config.client_id {
                return Err(OAuthError::new(
                    "invalid_client_id",
                    "client identifier invalid",
                ));
            }
            if secret != config.client_secret {
                return Err(OAuthError::new(
                    "invalid_client",
                    "invalid client credentials",
                ));
            }
            let user_id = config
                .users
                .get(super::seed::INTEGRATION_USERNAME)
                .map(|user| user.user_id.clone())
                .ok_or_else(|| OAuthError::invalid_grant("no client credentials user enabled"))?;
            let access_token = registry.issue_access(config, &user_id, ttl);
            Ok(signed_response(config, access_token, identity(&user_id)))
        }
        "" => Err(OAuthError::new(
            "unsupported_grant_type",
            "grant type not supported",
        )),
        _ => Err(OAuthError::new(
            "unsupported_grant_type",
            "grant type not supported",
        )),
    }
}

/// The response of the refresh and client-credentials grants: `issued_at` and `signature`.
fn signed_response(config: &OAuthConfig, access_token: String, id: String) -> Json {
    let issued_at = Utc::now().timestamp_millis().to_string();
    let signature = match hmac::Hmac::<Sha256>::new_from_slice(config.client_secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(id.as_bytes());
            mac.update(issued_at.as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    json!({
        "access_token": access_token,
        "signature": signature,
        "scope": "api refresh_token",
        "instance_url": config.base_url,
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
    })
}

/// Checks a JWT bearer assertion; answers the user id it logs in.
fn verify_assertion(config: &OAuthConfig, assertion: &str) -> Result<String, OAuthError> {
    let invalid = || OAuthError::invalid_grant("invalid assertion");
    let Some(key) = &config.verifying_key else {
        return Err(OAuthError::invalid_grant(
            "invalid assertion: no certificate is configured for this connected app",
        ));
    };
    let mut parts = assertion.trim().split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD_INDIFFERENT
            .decode(part)
            .map_err(|_| invalid())
    };
    let header_json: Json = serde_json::from_slice(&decode(header)?).map_err(|_| invalid())?;
    if header_json.get("alg").and_then(Json::as_str) != Some("RS256") {
        return Err(OAuthError::invalid_grant(
            "invalid assertion: the signing algorithm must be RS256",
        ));
    }
    let signature = Signature::try_from(decode(signature)?.as_slice()).map_err(|_| invalid())?;
    let signed = &assertion.trim()[..header.len() + 1 + payload.len()];
    key.verify(signed.as_bytes(), &signature)
        .map_err(|_| invalid())?;
    let claims: Json = serde_json::from_slice(&decode(payload)?).map_err(|_| invalid())?;

    let claim = |name: &str| claims.get(name).and_then(Json::as_str).unwrap_or("");
    if claim("iss") != config.client_id {
        return Err(OAuthError::new(
            "invalid_client_id",
            "client identifier invalid",
        ));
    }
    let audience_ok = |audience: &str| {
        let audience = audience.trim_end_matches('/');
        audience == config.base_url || LOGIN_AUDIENCES.contains(&audience)
    };
    let audiences_match = match claims.get("aud") {
        Some(Json::String(audience)) => audience_ok(audience),
        Some(Json::Array(audiences)) => audiences.iter().filter_map(Json::as_str).any(audience_ok),
        _ => false,
    };
    if !audiences_match {
        return Err(OAuthError::invalid_grant("audience is invalid"));
    }
    // simple-salesforce sends `exp` as a string of seconds.
    let exp = match claims.get("exp") {
        Some(Json::Number(number)) => number.as_f64(),
        Some(Json::String(text)) => text.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| OAuthError::invalid_grant("invalid assertion: exp is missing"))?;
    let now = Utc::now().timestamp() as f64;
    if exp <= now {
        return Err(OAuthError::invalid_grant("expired authorization code"));
    }
    if exp > now + MAX_ASSERTION_LIFETIME_SECONDS as f64 {
        return Err(OAuthError::invalid_grant(
            "invalid assertion: exp is too far in the future",
        ));
    }
    let user = config
        .users
        .get(&claim("sub").to_lowercase())
        .filter(|user| user.active)
        .ok_or_else(|| OAuthError::invalid_grant("user hasn't approved this consumer"))?;
    Ok(user.user_id.clone())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding as _, Signer as _};

    /// A 2048-bit key for tests only (PKCS#1), with its public halves in both PEM forms.
    pub const TEST_PRIVATE_KEY: &str = include_str!("../../tests/data/jwt_test_key.pem");
    pub const TEST_PUBLIC_KEY_SPKI: &str = include_str!("../../tests/data/jwt_test_key.pub.pem");
    pub const TEST_PUBLIC_KEY_PKCS1: &str =
        include_str!("../../tests/data/jwt_test_key.rsa.pub.pem");

    pub fn sign_jwt(claims: &Json) -> String {
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(TEST_PRIVATE_KEY).unwrap();
        let signing = SigningKey::<Sha256>::new(key);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let signature = signing.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    fn config(pem: &str) -> OAuthConfig {
        let mut users = HashMap::new();
        users.insert(
            "refbridge@sandbox.example".to_string(),
            LoginUser {
                user_id: "005Dn0000000001AAA".to_string(),
                active: true,
            },
        );
        users.insert(
            "gone@example.org".to_string(),
            LoginUser {
                user_id: "005Dn0000000002AAA".to_string(),
                active: false,
            },
        );
        OAuthConfig {
            client_id: "3MVGclient".to_string(),
            client_secret: "secret".to_string(),
            org_id: "00DDn0000000001AAA".to_string(),
            base_url: "http://127.0.0.1:9".to_string(),
            verifying_key: Some(parse_public_key(pem).unwrap()),
            users,
        }
    }

    fn jwt_grant(config: &OAuthConfig, claims: Json) -> Result<Json, OAuthError> {
        let mut form = HashMap::new();
        form.insert("grant_type".to_string(), JWT_BEARER.to_string());
        form.insert("assertion".to_string(), sign_jwt(&claims));
        token(
            config,
            &mut TokenRegistry::default(),
            &form,
            None,
            Duration::from_secs(60),
        )
    }

    #[test]
    fn jwt_bearer_checks_signature_issuer_subject_audience_and_expiry() {
        let now = Utc::now().timestamp();
        for pem in [TEST_PUBLIC_KEY_SPKI, TEST_PUBLIC_KEY_PKCS1] {
            let config = config(pem);
            let good = json!({"iss": "3MVGclient", "sub": "refbridge@sandbox.example", "aud": "https://login.salesforce.com", "exp": now + 120});
            let answer = jwt_grant(&config, good.clone()).unwrap();
            assert_eq!(answer["instance_url"], "http://127.0.0.1:9");
            assert_eq!(answer["token_type"], "Bearer");
            assert!(answer.get("refresh_token").is_none());
            // exp as a string, own URL as the audience: both fine.
            let mut variant = good.clone();
            variant["exp"] = json!((now + 60).to_string());
            variant["aud"] = json!("http://127.0.0.1:9");
            assert!(jwt_grant(&config, variant).is_ok());
            // (claim change, error, description fragment)
            let cases = [
                (
                    "iss",
                    json!("other"),
                    "invalid_client_id",
                    "client identifier invalid",
                ),
                (
                    "sub",
                    json!("nobody@example.org"),
                    "invalid_grant",
                    "approved",
                ),
                (
                    "sub",
                    json!("gone@example.org"),
                    "invalid_grant",
                    "approved",
                ),
                (
                    "aud",
                    json!("https://evil.example"),
                    "invalid_grant",
                    "audience",
                ),
                ("exp", json!(now - 1), "invalid_grant", "expired"),
                ("exp", json!(now + 3600), "invalid_grant", "too far"),
            ];
            for (claim, value, error, fragment) in cases {
                let mut claims = good.clone();
                claims[claim] = value;
                let failure = jwt_grant(&config, claims).unwrap_err();
                assert_eq!(failure.error, error, "{claim}");
                assert!(
                    failure.description.contains(fragment),
                    "{claim}: {}",
                    failure.description
                );
                assert_eq!(failure.status, StatusCode::BAD_REQUEST);
            }
            // A tampered payload no longer matches the signature.
            let signed = sign_jwt(&good);
            let mut pieces: Vec<&str> = signed.split('.').collect();
            let forged = URL_SAFE_NO_PAD.encode(json!({"iss": "3MVGclient", "sub": "refbridge@sandbox.example", "aud": "https://login.salesforce.com", "exp": now + 100}).to_string());
            pieces[1] = &forged;
            let mut form = HashMap::new();
            form.insert("grant_type".to_string(), JWT_BEARER.to_string());
            form.insert("assertion".to_string(), pieces.join("."));
            let failure = token(
                &config,
                &mut TokenRegistry::default(),
                &form,
                None,
                Duration::from_secs(60),
            )
            .unwrap_err();
            assert_eq!(
                failure.body(),
                r#"{"error":"invalid_grant","error_description":"invalid assertion"}"#
            );
        }
        assert!(
            parse_public_key("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----").is_err()
        );
    }

    #[test]
    fn refresh_and_client_credentials_grants_and_their_errors() {
        let config = config(TEST_PUBLIC_KEY_SPKI);
        let mut registry = TokenRegistry::default();
        let refresh = registry.issue_refresh(&config, "005Dn0000000001AAA");
        let form = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        };
        let ttl = Duration::from_secs(60);
        let answer = token(
            &config,
            &mut registry,
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", "3MVGclient"),
            ]),
            None,
            ttl,
        )
        .unwrap();
        assert!(answer["issued_at"].as_str().unwrap().parse::<i64>().is_ok());
        assert!(!answer["signature"].as_str().unwrap().is_empty());
        let access = answer["access_token"].as_str().unwrap();
        assert_eq!(registry.user_of(access), Some("005Dn0000000001AAA"));
        let bad = token(
            &config,
            &mut registry,
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "nope"),
                ("client_id", "3MVGclient"),
            ]),
            None,
            ttl,
        )
        .unwrap_err();
        assert_eq!(
            (bad.error, bad.description.as_str()),
            ("invalid_grant", "expired access/refresh token")
        );
        let basic = basic_credentials(Some(&format!(
            "Basic {}",
            STANDARD.encode("3MVGclient:secret")
        )));
        let answer = token(
            &config,
            &mut registry,
            &form(&[("grant_type", "client_credentials")]),
            basic,
            ttl,
        )
        .unwrap();
        assert_eq!(answer["token_type"], "Bearer");
        let wrong = token(
            &config,
            &mut registry,
            &form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "3MVGclient"),
                ("client_secret", "guess"),
            ]),
            None,
            ttl,
        )
        .unwrap_err();
        assert_eq!(wrong.error, "invalid_client");
        let unsupported = token(
            &config,
            &mut registry,
            &form(&[("grant_type", "password")]),
            None,
            ttl,
        )
        .unwrap_err();
        assert_eq!(unsupported.error, "unsupported_grant_type");
        assert_eq!(registry.expire_all(), 2);
        assert_eq!(registry.user_of(access), None);
    }
}
