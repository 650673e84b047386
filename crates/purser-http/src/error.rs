//! The one error shape of the whole API.
//!
//! Every failure, whether raised by a handler, an extractor, the router (unknown path,
//! wrong method) or a layer (body too large), leaves as
//! `{"error": {"status", "code", "message", "details": [{"field", "reason"}], "request_id"}}`.
//! Handlers return [`ApiError`]; [`error_shape`] (a middleware that knows the request
//! id) writes the body, and rewrites any other failure response into the same shape,
//! or into an error page for the pages.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use purser_core::{FieldError, ValidationErrors};
use purser_store::StoreError;
use serde::Serialize;

use crate::state::AppState;

/// A failure, as the caller will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable and machine-readable: clients may branch on it.
    pub code: &'static str,
    /// For people.
    pub message: String,
    pub details: Vec<FieldError>,
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    pub status: u16,
    /// `bad_request`, `validation_failed`, `unauthenticated`, `forbidden`, `not_found`,
    /// `conflict`, `payload_too_large`, `csrf_failed`, `unavailable`, `internal`, …
    pub code: String,
    pub message: String,
    pub details: Vec<FieldError>,
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Vec<FieldError>) -> Self {
        self.details = details;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn field(field: &str, reason: impl Into<String>) -> Self {
        ValidationErrors::single(field, reason).into()
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; the request id identifies it in the logs",
        )
    }

    /// The stable code for a status that no handler chose (router and layer failures).
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such page or resource"),
            StatusCode::METHOD_NOT_ALLOWED => {
                ("method_not_allowed", "this method is not allowed here")
            }
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                "the request body is larger than this server accepts",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "send JSON with Content-Type: application/json",
            ),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
            status if status.is_server_error() => ("internal", "something went wrong on our side"),
            _ => ("bad_request", "the request could not be understood"),
        };
        Self::new(status, code, message)
    }

    pub fn body(&self, request_id: Option<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                status: self.status.as_u16(),
                code: self.code.to_owned(),
                message: self.message.clone(),
                details: self.details.clone(),
                request_id,
            },
        }
    }
}

/// Maps a store miss to "`what` not found", and any other store error as usual.
pub fn or_not_found(what: &'static str) -> impl FnOnce(StoreError) -> ApiError {
    move |error| match error {
        StoreError::NotFound => ApiError::not_found(what),
        other => other.into(),
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        let message = match errors.errors.as_slice() {
            [one] => format!("{} {}", one.field, one.reason),
            many => format!("{} fields are not valid", many.len()),
        };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
        .with_details(errors.errors)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Invalid(errors) => errors.into(),
            StoreError::Conflict { field, message } => {
                let details = field
                    .map(|field| {
                        vec![FieldError {
                            field,
                            reason: message.clone(),
                        }]
                    })
                    .unwrap_or_default();
                ApiError::new(StatusCode::CONFLICT, "conflict", message).with_details(details)
            }
            StoreError::Unavailable(message) | StoreError::ReadOnly(message) => {
                tracing::warn!(%message, "storage unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is not available; try again shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The body is written by `error_shape`, which knows the request id.
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Whether a path belongs to the pages (HTML errors) rather than the API (JSON).
pub fn is_page_path(path: &str) -> bool {
    !(path.starts_with("/v1/")
        || path == "/v1"
        || path == "/openapi.json"
        || path == "/metrics"
        || path == "/healthz"
        || path == "/readyz")
}

/// Writes every error response in the one shape, with its request id.
pub async fn error_shape(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(crate::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let page = is_page_path(request.uri().path())
        && !request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.starts_with("application/json"));
    let session = if page {
        crate::auth::cookie_value(request.headers(), crate::auth::SESSION_COOKIE).map(str::to_owned)
    } else {
        None
    };
    let current_path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let status = response.status();
    let error = match response.extensions_mut().remove::<ApiError>() {
        Some(error) => error,
        None if status.is_client_error() || status.is_server_error() => {
            // Failures from the router and layers carry no ApiError; their plain-text
            // bodies are replaced, keeping headers such as WWW-Authenticate.
            let already_shaped = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| {
                    v.as_bytes().starts_with(b"application/json")
                        || v.as_bytes().starts_with(b"text/html")
                });
            if already_shaped {
                return response;
            }
            ApiError::for_status(status)
        }
        None => return response,
    };
    let mut shaped = if page {
        // Keep the person's navigation on an error page: one more read, on errors only.
        let chrome = match session {
            Some(secret) => match state
                .store
                .session(
                    &purser_core::identity::secret_digest(&secret),
                    jiff::Timestamp::now(),
                )
                .await
            {
                Ok(Some(session)) => crate::pages::Chrome::signed_in(
                    &session.user.display_name,
                    &session.principal,
                    &session.csrf_token,
                    &current_path,
                ),
                _ => crate::pages::Chrome::anonymous(),
            },
            None => crate::pages::Chrome::anonymous(),
        };
        crate::pages::error_page(&error, request_id.as_deref(), chrome)
    } else {
        (error.status, axum::Json(error.body(request_id))).into_response()
    };
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    if error.status == StatusCode::UNAUTHORIZED && !page {
        shaped.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"purser\""),
        );
    }
    shaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_stable_codes() {
        let cases = [
            (StoreError::NotFound, StatusCode::NOT_FOUND, "not_found"),
            (
                StoreError::Invalid(ValidationErrors::single("name", "is required")),
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            ),
            (
                StoreError::Conflict {
                    field: Some("external_id".into()),
                    message: "taken".into(),
                },
                StatusCode::CONFLICT,
                "conflict",
            ),
            (
                StoreError::Unavailable("down".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
            (
                StoreError::Backend("syntax".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
        ];
        for (error, status, code) in cases {
            let api = ApiError::from(error);
            assert_eq!((api.status, api.code), (status, code));
        }
    }

    #[test]
    fn internal_details_never_reach_the_caller() {
        let api = ApiError::from(StoreError::Backend(
            "relation accounts does not exist".into(),
        ));
        assert!(!api.message.contains("relation"));
    }

    #[test]
    fn validation_errors_name_their_fields() {
        let mut errors = ValidationErrors::new();
        errors.add("name", "is required");
        errors.add("region", "is required");
        let api = ApiError::from(errors);
        assert_eq!(api.message, "2 fields are not valid");
        assert_eq!(api.details.len(), 2);
        assert_eq!(api.details[1].field, "region");
    }
}
