//! One call of a marketplace's subscription API (Procurement, Pub/Sub, SaaS
//! Fulfillment, ResolveCustomer, GetEntitlements): send, read the answer, name what
//! went wrong. Shared so that every subscription client reports a refusal, a lost
//! answer and an unreadable body the same way.

use purser_core::account::Marketplace;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ClientError;
use crate::auth::BearerToken;
use crate::http::{self, Answer, Evidence};

/// Sends `request`; an answer of any status comes back, no answer is `Transport`.
pub(crate) async fn send(
    http_client: &reqwest::Client,
    request: reqwest::Request,
    marketplace: Marketplace,
    operation: &'static str,
    request_body: String,
) -> Result<Answer, ClientError> {
    let (_exchange, result) = http::send(
        http_client,
        request,
        Evidence {
            marketplace,
            operation,
            request_body,
            record_keys: Vec::new(),
            redact_response: None,
        },
    )
    .await;
    result.map_err(|e| ClientError::Transport {
        operation,
        message: e.reason(operation),
    })
}

/// The answer's body as `T`, or `Decode` naming the field and position that failed.
pub(crate) fn decode<T: DeserializeOwned>(
    operation: &'static str,
    body: &str,
) -> Result<T, ClientError> {
    let mut deserializer = serde_json::Deserializer::from_str(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| ClientError::Decode {
        operation,
        message: format!("{} (at {})", e.inner(), e.path()),
    })
}

/// A non-2xx answer as an error: `Refused` with the marketplace's own code when the body
/// carries one (Google `{"error":{"code":400,"status":"FAILED_PRECONDITION",...}}`,
/// Azure `{"error":{"code":"BadArgument",...}}`, AWS `{"__type":"...","message":...}`),
/// `Status` otherwise.
pub(crate) fn refusal(operation: &'static str, answer: &Answer) -> ClientError {
    let message_of = |v: &Value| {
        v.get("message")
            .or_else(|| v.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    if let Ok(body) = serde_json::from_str::<Value>(&answer.body) {
        if let Some(error) = body.get("error") {
            let code = error
                .get("status")
                .and_then(Value::as_str)
                .or_else(|| error.get("code").and_then(Value::as_str));
            if let Some(code) = code {
                return ClientError::Refused {
                    operation,
                    status: answer.status,
                    code: code.to_owned(),
                    message: message_of(error),
                };
            }
        }
        if let Some(kind) = body.get("__type").and_then(Value::as_str) {
            // JSON 1.1 errors may be namespaced: `com.amazonaws...#ExpiredTokenException`.
            let code = kind.rsplit('#').next().unwrap_or(kind);
            return ClientError::Refused {
                operation,
                status: answer.status,
                code: code.to_owned(),
                message: message_of(&body),
            };
        }
    }
    ClientError::Status {
        operation,
        status: answer.status,
        message: answer.body.chars().take(500).collect(),
    }
}

/// A client of a JSON API authorised by a bearer token (Google's and Azure's).
pub(crate) struct BearerApi {
    pub http: reqwest::Client,
    pub token: BearerToken,
    pub marketplace: Marketplace,
}

/// What a [`BearerApi`] call sends besides the URL.
pub(crate) struct Request<'a> {
    pub operation: &'static str,
    pub method: Method,
    pub url: &'a str,
    pub query: &'a [(&'a str, String)],
    pub headers: &'a [(&'static str, String)],
    pub body: Option<String>,
}

impl BearerApi {
    /// Sends the request with a current token and returns the 2xx answer; any other
    /// status is an error (a 401/403 also forgets the token, so the next call fetches
    /// a new one).
    pub(crate) async fn call(&self, request: Request<'_>) -> Result<Answer, ClientError> {
        let operation = request.operation;
        let mut token_exchanges = Vec::new();
        let token = self
            .token
            .get(&self.http, &mut token_exchanges)
            .await
            .map_err(ClientError::Auth)?;
        let mut builder = self
            .http
            .request(request.method, request.url)
            .bearer_auth(token.expose());
        if !request.query.is_empty() {
            builder = builder.query(request.query);
        }
        for (name, value) in request.headers {
            builder = builder.header(*name, value);
        }
        let body = request.body.unwrap_or_default();
        if !body.is_empty() {
            builder = builder
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let built = builder.build().map_err(|e| ClientError::InvalidArgument {
            operation,
            message: format!("request not built: {e}"),
        })?;
        let answer = send(&self.http, built, self.marketplace, operation, body).await?;
        if matches!(answer.status, 401 | 403) {
            self.token.clear().await;
        }
        if !answer.is_success() {
            return Err(refusal(operation, &answer));
        }
        Ok(answer)
    }
}

/// A path segment the marketplace's name pattern takes (`[^/]+`), checked before it is
/// put into a URL.
pub(crate) fn segment(operation: &'static str, what: &str, value: &str) -> Result<(), ClientError> {
    if value.is_empty() || value.contains(['/', '?', '#', '%']) || value.trim() != value {
        return Err(ClientError::InvalidArgument {
            operation,
            message: format!("{what} {value:?} is not a single path segment"),
        });
    }
    Ok(())
}
