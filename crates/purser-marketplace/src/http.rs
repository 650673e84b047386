//! One HTTP exchange, recorded as evidence.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use reqwest::header::HeaderMap;
use uuid::Uuid;

use crate::Exchange;

/// An answer that came back, whatever its status.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3).
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.headers.get("retry-after")?.to_str().ok()?.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
        let wait = at.duration_since(Timestamp::now());
        Duration::try_from(wait).ok()
    }
}

/// Why no answer came.
pub(crate) enum NoAnswer {
    /// The request may have reached the marketplace and been applied.
    Timeout(String),
    /// Never sent: the connection could not be made, or the request not built.
    NotSent(String),
    /// Sent, but the answer was lost or unreadable: it may have been applied.
    Lost(String),
}

impl NoAnswer {
    pub fn reason(&self, operation: &str) -> String {
        match self {
            NoAnswer::Timeout(m) => format!(
                "{operation} timed out ({m}); the marketplace may have applied it, and a resend with the same record is safe"
            ),
            NoAnswer::NotSent(m) => format!("{operation}: not sent: {m}"),
            NoAnswer::Lost(m) => {
                format!("{operation}: answer lost ({m}); the marketplace may have applied it")
            }
        }
    }

    /// The outcome for the records of a request without an answer. `applies` is false
    /// for requests that change nothing (services.check), whose loss proves nothing.
    pub fn outcome(&self, operation: &str, applies: bool) -> crate::RecordOutcome {
        let reason = self.reason(operation);
        match self {
            NoAnswer::NotSent(_) => crate::retry(reason),
            _ if applies => crate::retry_maybe_applied(reason),
            _ => crate::retry(reason),
        }
    }
}

/// What to record of a request: its body as evidence (for token requests, a version
/// without the secret) and the records it carries.
pub(crate) struct Evidence {
    pub marketplace: purser_core::account::Marketplace,
    pub operation: &'static str,
    pub request_body: String,
    pub record_keys: Vec<Uuid>,
    /// Rewrites the answer's body before it is recorded (token answers drop the token).
    pub redact_response: Option<fn(&str) -> String>,
}

/// Sends `request` and records the exchange. Headers are never recorded: they carry
/// the credentials.
pub(crate) async fn send(
    client: &reqwest::Client,
    request: reqwest::Request,
    evidence: Evidence,
) -> (Exchange, Result<Answer, NoAnswer>) {
    let started_at = Timestamp::now();
    let clock = Instant::now();
    let method = request.method().to_string();
    let url = request.url().to_string();
    let result = match client.execute(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            match response.text().await {
                Ok(body) => Ok(Answer {
                    status,
                    headers,
                    body,
                }),
                Err(e) if e.is_timeout() => Err(NoAnswer::Timeout(error_chain(&e))),
                Err(e) => Err(NoAnswer::Lost(format!(
                    "HTTP {status}, body unreadable: {}",
                    error_chain(&e)
                ))),
            }
        }
        Err(e) if e.is_timeout() => Err(NoAnswer::Timeout(error_chain(&e))),
        Err(e) if e.is_connect() || e.is_builder() => Err(NoAnswer::NotSent(error_chain(&e))),
        Err(e) => Err(NoAnswer::Lost(error_chain(&e))),
    };
    let elapsed_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (status, response_body, error) = match &result {
        Ok(answer) => {
            let body = match evidence.redact_response {
                Some(redact) => redact(&answer.body),
                None => answer.body.clone(),
            };
            (Some(answer.status), Some(body), None)
        }
        Err(NoAnswer::Timeout(m)) => (None, None, Some(format!("timed out: {m}"))),
        Err(NoAnswer::NotSent(m)) => (None, None, Some(format!("not sent: {m}"))),
        Err(NoAnswer::Lost(m)) => (None, None, Some(format!("answer lost: {m}"))),
    };
    let exchange = Exchange {
        started_at,
        marketplace: evidence.marketplace,
        operation: evidence.operation.into(),
        method,
        url,
        request_body: evidence.request_body,
        status,
        response_body,
        error,
        elapsed_ms,
        record_keys: evidence.record_keys,
    };
    (exchange, result)
}

/// reqwest's error with its causes, which is where the useful part usually is.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The HTTP client every marketplace client owns: one connection pool, a timeout per
/// request.
pub(crate) fn build_client(timeout_ms: u64) -> Result<reqwest::Client, crate::ClientError> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(timeout_ms.max(1)))
        .user_agent(concat!("purser/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::ClientError::Config(format!("HTTP client: {}", error_chain(&e))))
}

/// `base` without a trailing slash, so paths join with one.
pub(crate) fn trim_base(base: &str) -> String {
    base.trim_end_matches('/').to_owned()
}
