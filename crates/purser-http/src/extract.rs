//! Request body and query extractors that fail in the one error shape, naming the
//! field that was wrong (`owners.csm: invalid type: integer, expected a string`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use purser_core::FieldError;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = body_bytes(request, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Reads the whole body within the configured limit.
pub async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::for_status(status)
            } else {
                ApiError::bad_request(format!("the request body could not be read: {rejection}"))
            }
        })
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(
            ApiError::bad_request("the body is not valid UTF-8").with_details(vec![FieldError {
                field: "body".into(),
                reason: "JSON must be encoded as UTF-8".into(),
            }]),
        );
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let field = if path == "." || path.is_empty() {
            // serde names an unknown field only in its message.
            unknown_field(&inner.to_string()).unwrap_or_else(|| "body".to_owned())
        } else {
            path
        };
        ApiError::bad_request(format!("the JSON body is not valid: {inner}")).with_details(vec![
            FieldError {
                field,
                reason: inner.to_string(),
            },
        ])
    })
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// A query parameter as given, trimmed; `None` when absent or blank (forms send blank
/// fields for "any").
pub fn nonempty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let field = error.path().to_string();
        let inner = error.into_inner();
        let field = if field == "." {
            unknown_field(&inner.to_string()).unwrap_or_else(|| "query".into())
        } else {
            field
        };
        ApiError::bad_request(format!("a query parameter is not valid: {inner}")).with_details(
            vec![FieldError {
                field,
                reason: inner.to_string(),
            }],
        )
    })
}

fn form_urlencoded_parse(input: &[u8]) -> url::form_urlencoded::Parse<'_> {
    url::form_urlencoded::parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        owners: Owners,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Owners {
        csm: String,
    }

    #[test]
    fn a_wrong_type_names_its_path() {
        let error =
            parse_json::<Body>(br#"{"name": "a", "owners": {"csm": 5}}"#).expect_err("invalid");
        assert_eq!(error.details[0].field, "owners.csm");
        assert!(error.details[0].reason.contains("expected a string"));
    }

    #[test]
    fn an_unknown_field_is_named() {
        let error =
            parse_json::<Body>(br#"{"name": "a", "colour": "red", "owners": {"csm": "x"}}"#)
                .expect_err("invalid");
        assert_eq!(error.details[0].field, "colour");
    }

    #[test]
    fn invalid_utf8_and_syntax_errors_are_bad_requests() {
        let error = parse_json::<Body>(b"{\"name\": \"\xff\"}").expect_err("invalid");
        assert_eq!(
            (error.status, error.details[0].field.as_str()),
            (StatusCode::BAD_REQUEST, "body")
        );
        // A body cut short is reported where it broke off.
        let error = parse_json::<Body>(b"{\"name\": ").expect_err("invalid");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.details[0].field, "name");
        assert!(
            error.details[0].reason.contains("EOF"),
            "{}",
            error.details[0].reason
        );
    }
}
