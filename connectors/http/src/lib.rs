//! HTTP pieces every CRM connector shares, so that they exist once: `oauth2`'s HTTP client over
//! refbridge's reqwest client (429 and 5xx token answers classified, so a throttled token endpoint is
//! retried), the `Retry-After` of a response, and transport errors told in a sentence that never
//! carries the URL (which could hold a query), and answers counted by HTTP status class. Nothing
//! here knows a CRM.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};
use refbridge_model::crm::{FailureClass, parse_retry_after};

/// `Retry-After` of a response.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after)
}

/// API answers counted by HTTP status class, and requests that got no answer at all.
#[derive(Debug, Default)]
pub struct StatusCounter {
    /// 2xx, 3xx, 4xx, 5xx, no answer.
    counts: [AtomicU64; 5],
}

/// A snapshot of a [`StatusCounter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub success: u64,
    pub redirect: u64,
    pub client_error: u64,
    pub server_error: u64,
    /// Requests that got no answer (connection refused, reset, timed out).
    pub no_answer: u64,
}

impl StatusCounter {
    /// Counts one answer.
    pub fn answered(&self, status: u16) {
        let slot = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request that got no answer.
    pub fn unanswered(&self) {
        self.counts[4].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatusCounts {
        let count = |slot: usize| self.counts[slot].load(Ordering::Relaxed);
        StatusCounts {
            success: count(0),
            redirect: count(1),
            client_error: count(2),
            server_error: count(3),
            no_answer: count(4),
        }
    }
}

impl StatusCounts {
    /// Each class with its label (`2xx`, `3xx`, `4xx`, `5xx`, `none` for no answer).
    pub fn by_class(&self) -> [(&'static str, u64); 5] {
        [
            ("2xx", self.success),
            ("3xx", self.redirect),
            ("4xx", self.client_error),
            ("5xx", self.server_error),
            ("none", self.no_answer),
        ]
    }
}

impl std::ops::AddAssign for StatusCounts {
    fn add_assign(&mut self, other: StatusCounts) {
        self.success += other.success;
        self.redirect += other.redirect;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
        self.no_answer += other.no_answer;
    }
}

/// A transport error in a sentence, without the URL (which could carry a query).
pub fn transport_summary(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the answer was cut short"
    } else {
        "the connection failed"
    };
    kind.to_string()
}

/// A token-endpoint failure as `oauth2` sees it: transport errors and 429/5xx answers, classed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TransportFailure {
    pub class: FailureClass,
    pub message: String,
}

/// `oauth2`'s HTTP client: refbridge's reqwest client. 429 and 5xx answers become
/// [`TransportFailure`]s carrying their class (so a throttled or failing token endpoint is
/// retried); other answers go to `oauth2` to be read.
pub struct OAuthTransport {
    pub http: reqwest::Client,
}

impl<'c> AsyncHttpClient<'c> for OAuthTransport {
    type Error = TransportFailure;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, TransportFailure>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let failure = |error: reqwest::Error| TransportFailure {
                class: FailureClass::transport(),
                message: transport_summary(&error),
            };
            let request = reqwest::Request::try_from(request).map_err(failure)?;
            let response = self.http.execute(request).await.map_err(failure)?;
            let status = response.status();
            if status.as_u16() == 429 || status.is_server_error() {
                return Err(TransportFailure {
                    class: FailureClass::from_status(
                        status.as_u16(),
                        retry_after(response.headers()),
                    ),
                    message: format!("the token endpoint answered HTTP {}", status.as_u16()),
                });
            }
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(failure)?;
            let mut builder = oauth2::http::Response::builder().status(status);
            for (name, value) in &headers {
                builder = builder.header(name, value);
            }
            builder.body(body.to_vec()).map_err(|_| TransportFailure {
                class: FailureClass::Retryable,
                message: "the token endpoint's answer could not be read".to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_class_and_silence_apart() {
        let counter = StatusCounter::default();
        for status in [200, 201, 204, 302, 400, 404, 429, 500, 503, 999] {
            counter.answered(status);
        }
        counter.unanswered();
        let counts = counter.snapshot();
        assert_eq!(
            counts.by_class(),
            [("2xx", 3), ("3xx", 1), ("4xx", 3), ("5xx", 3), ("none", 1)]
        );
        let mut total = StatusCounts::default();
        total += counts;
        total += counts;
        assert_eq!(total.client_error, 6);
    }
}
