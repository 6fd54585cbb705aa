//! Who may call the sandbox: one private-app token (never expires) and OAuth access tokens issued
//! by `POST /oauth/v1/token` (grant `refresh_token`) that expire after a TTL, plus HubSpot's 401
//! bodies for missing, unknown and expired tokens.
//!
//! The token endpoint answers HubSpot's OAuth error shape (`{status:"BAD_REFRESH_TOKEN", message}`),
//! which differs from the CRM error shape. Secrets here are sandbox-only values; none is logged.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::error::{ApiError, correlation_id, json_response};
use super::store::iso_ms;

/// The sandbox's credentials and the access tokens it has issued.
#[derive(Debug)]
pub(crate) struct TokenBook {
    pub private_app_token: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// Access token → expiry (epoch ms).
    access: HashMap<String, i64>,
    issued: u64,
    salt: u64,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AuthFailure {
    Missing,
    Expired { expired_ms: i64, now_ms: i64 },
}

impl AuthFailure {
    pub(crate) fn into_api_error(self) -> ApiError {
        match self {
            AuthFailure::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            ),
            AuthFailure::Expired { expired_ms, now_ms } => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "EXPIRED_AUTHENTICATION",
                format!(
                    "The OAuth token used to make this call expired {} ago.",
                    elapsed_words(now_ms - expired_ms)
                ),
            )
            .with_context(json!({ "expire time": [iso_ms(expired_ms)] })),
        }
    }
}

/// "0 second(s)", "5 minute(s)", "2 hour(s)", "3 day(s)".
fn elapsed_words(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    match seconds {
        s if s < 60 => format!("{s} second(s)"),
        s if s < 3600 => format!("{} minute(s)", s / 60),
        s if s < 86_400 => format!("{} hour(s)", s / 3600),
        s => format!("{} day(s)", s / 86_400),
    }
}

fn hex_token(seed: u64, n: u64, length: usize) -> String {
    let mut out = String::with_capacity(length + 16);
    let mut state = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    while out.len() < length {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.push_str(&format!("{:016x}", z ^ (z >> 31)));
    }
    out.truncate(length);
    out
}

impl TokenBook {
    /// Credentials derived from `seed`, so a sandbox started twice from one world has the same ones.
    pub(crate) fn new(seed: u64) -> TokenBook {
        let salt = seed ^ 0x4855_4253_504F_5421;
        let id = hex_token(salt, 1, 32);
        TokenBook {
            private_app_token: format!("pat-na1-{}", uuid_like(&hex_token(salt, 2, 32))),
            client_id: uuid_like(&id),
            client_secret: uuid_like(&hex_token(salt, 3, 32)),
            refresh_token: format!("na1-{}", uuid_like(&hex_token(salt, 4, 32))),
            access: HashMap::new(),
            issued: 0,
            salt,
        }
    }

    /// Issues an access token valid for `ttl_seconds` from `now_ms`.
    pub(crate) fn issue(&mut self, now_ms: i64, ttl_seconds: u64) -> String {
        self.issued += 1;
        let token = format!("CN{}", hex_token(self.salt, 1000 + self.issued, 94));
        let ttl_ms = i64::try_from(ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.access
            .insert(token.clone(), now_ms.saturating_add(ttl_ms));
        // Forget tokens that expired more than a day ago, so the book stays small.
        self.access
            .retain(|_, expires| *expires > now_ms - 86_400_000);
        token
    }

    /// Checks an `Authorization` header value.
    pub(crate) fn check(&self, header: Option<&str>, now_ms: i64) -> Result<(), AuthFailure> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Missing)?;
        if token == self.private_app_token {
            return Ok(());
        }
        match self.access.get(token) {
            Some(&expires) if expires > now_ms => Ok(()),
            Some(&expires) => Err(AuthFailure::Expired {
                expired_ms: expires,
                now_ms,
            }),
            None => Err(AuthFailure::Missing),
        }
    }

    /// Makes every issued access token expire now (the private-app token is unaffected).
    pub(crate) fn expire_all(&mut self, now_ms: i64) -> usize {
        let mut expired = 0;
        for expires in self.access.values_mut() {
            if *expires > now_ms {
                *expires = now_ms;
                expired += 1;
            }
        }
        expired
    }
}

fn uuid_like(hex: &str) -> String {
    let hex = format!("{hex:0<32}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The OAuth endpoint's error body (`{status:"BAD_REFRESH_TOKEN", message, correlationId}`).
fn oauth_error(status: &str, message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"status": status, "message": message, "correlationId": correlation_id(), "requestId": correlation_id()}),
    )
}

/// `POST /oauth/v1/token` with a form body. Only the refresh-token grant is supported.
pub(crate) fn token_response(
    book: &mut TokenBook,
    form: &[u8],
    now_ms: i64,
    ttl_seconds: u64,
) -> Response {
    let fields: HashMap<String, String> = form_urlencoded::parse(form).into_owned().collect();
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    match field("grant_type") {
        "refresh_token" => {}
        "authorization_code" => {
            return oauth_error("BAD_AUTH_CODE", "missing or unknown auth code");
        }
        _ => return oauth_error("BAD_GRANT_TYPE", "missing or unknown grant type"),
    }
    if field("client_id") != book.client_id {
        return oauth_error("BAD_CLIENT_ID", "missing or unknown client id");
    }
    if field("client_secret") != book.client_secret {
        return oauth_error("BAD_CLIENT_SECRET", "missing or unknown client secret");
    }
    if field("refresh_token") != book.refresh_token {
        return oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token");
    }
    let access_token = book.issue(now_ms, ttl_seconds);
    let body: Value = json!({
        "token_type": "bearer",
        "refresh_token": book.refresh_token,
        "access_token": access_token,
        "expires_in": ttl_seconds,
    });
    json_response(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_and_the_private_app_token_does_not() {
        let mut book = TokenBook::new(7);
        assert_eq!(book.client_id, TokenBook::new(7).client_id);
        let token = book.issue(1_000, 30);
        let header = format!("Bearer {token}");
        assert_eq!(book.check(Some(&header), 2_000), Ok(()));
        assert_eq!(
            book.check(Some(&header), 31_000),
            Err(AuthFailure::Expired {
                expired_ms: 31_000,
                now_ms: 31_000
            })
        );
        assert_eq!(book.check(None, 0), Err(AuthFailure::Missing));
        assert_eq!(
            book.check(Some("Bearer nope"), 0),
            Err(AuthFailure::Missing)
        );
        let private = format!("Bearer {}", book.private_app_token);
        assert_eq!(book.check(Some(&private), i64::MAX), Ok(()));
        let other = book.issue(0, 1800);
        assert_eq!(
            book.expire_all(10),
            2,
            "both issued tokens were still valid"
        );
        assert!(book.check(Some(&format!("Bearer {other}")), 10).is_err());
        assert_eq!(elapsed_words(7_200_000), "2 hour(s)");
    }
}
