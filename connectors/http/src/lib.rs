//! HTTP pieces every CRM connector shares, so that they exist once: `oauth2`'s HTTP client over
//! refbridge's reqwest client (429 and 5xx token answers classified, so a throttled token endpoint is
//! retried), the `Retry-After` of a response, and transport errors told in a sentence that never
//! carries the URL (which could hold a query). Nothing here knows a CRM.

use std::future::Future;
use std::pin::Pin;
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
