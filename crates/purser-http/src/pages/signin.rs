//! Signing in and out.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use purser_core::audit::Actor;
use purser_core::identity::secret_digest;
use serde::Deserialize;

use super::{Chrome, render, see_other};
use crate::auth::{self, CsrfForm, SESSION_COOKIE, SIGNIN_CSRF_COOKIE};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    chrome: Chrome,
    csrf: String,
    next: String,
    username: String,
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    reason: Option<String>,
}

fn page(next: &str, username: &str, message: Option<String>) -> Response {
    let csrf = auth::random_secret();
    let mut response = render(&SignInPage {
        chrome: Chrome::anonymous(),
        csrf: csrf.clone(),
        next: next.to_owned(),
        username: username.to_owned(),
        message,
    });
    if let Ok(cookie) = header::HeaderValue::from_str(&format!(
        "{SIGNIN_CSRF_COOKIE}={csrf}; Path=/signin; HttpOnly; SameSite=Strict; Max-Age=3600"
    )) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub async fn form(Query(query): Query<SignInQuery>) -> Response {
    let message = match query.reason.as_deref() {
        Some("session") => {
            Some("Your session ended or is not valid. Please sign in again.".to_owned())
        }
        _ => None,
    };
    page(&safe_next(query.next.as_deref()), "", message)
}

/// Only a path on this site: never `//elsewhere` or `https://elsewhere`.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/accounts".to_owned(),
    }
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    match sign_in(&state, &headers, request).await {
        Ok(response) => response,
        Err(response) => response,
    }
}

async fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    request: axum::extract::Request,
) -> Result<Response, Response> {
    let request_id = headers
        .get(crate::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = crate::extract::body_bytes(request, state)
        .await
        .map_err(IntoResponse::into_response)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("the form is not valid UTF-8").into_response())?;
    let form: SignInForm =
        crate::extract::parse_query(text).map_err(IntoResponse::into_response)?;
    let cookie_csrf = auth::cookie_value(headers, SIGNIN_CSRF_COOKIE).unwrap_or_default();
    if cookie_csrf.is_empty() || !auth::same_secret(cookie_csrf, &form.csrf) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "csrf_failed",
            "this sign-in form is out of date or did not come from Purser: reload the page and try again",
        )
        .into_response());
    }
    let next = safe_next(form.next.as_deref());
    let username = form.username.trim().to_lowercase();
    if let Err(wait) = state.sign_in_throttle.check(&username) {
        let _ = state
            .store
            .record(
                Actor::new("anonymous", request_id)
                    .draft("session.sign_in_throttled")
                    .details(serde_json::json!({ "username": username })),
            )
            .await;
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let mut response = page(
            &next,
            &form.username,
            Some(format!(
                "Too many failed sign-ins for this username. Try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            )),
        );
        *response.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
        return Err(response);
    }
    let credentials = state
        .store
        .user_credentials(&form.username)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let (user, hash) = match credentials {
        Some((user, hash)) if user.disabled_at.is_none() => (Some(user), hash),
        _ => (None, None),
    };
    let verified = auth::verify_password(form.password.clone(), hash).await;
    let Some(user) = user.filter(|_| verified) else {
        state.sign_in_throttle.record_failure(&username);
        let _ = state
            .store
            .record(
                Actor::new("anonymous", request_id)
                    .draft("session.sign_in_failed")
                    .details(serde_json::json!({ "username": username })),
            )
            .await;
        return Err(page(
            &next,
            &form.username,
            Some("That username and password do not match an active user.".into()),
        ));
    };
    state.sign_in_throttle.clear(&username);
    let secret = auth::random_secret();
    let expires_at = jiff::Timestamp::now() + state.settings.session_ttl;
    state
        .store
        .create_session(
            &user.id,
            &secret_digest(&secret),
            &auth::random_secret(),
            expires_at,
        )
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let _ = state
        .store
        .record(Actor::new(format!("user:{}", user.username), request_id).draft("session.sign_in"))
        .await;
    let mut response = see_other(&next);
    response.headers_mut().append(
        header::SET_COOKIE,
        auth::session_cookie(
            &secret,
            state.settings.session_ttl.as_secs(),
            state.settings.cookie_secure,
        ),
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, auth::clear_cookie(SIGNIN_CSRF_COOKIE));
    Ok(response)
}

pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: CsrfForm<super::NoFields>,
) -> Response {
    if let Some(secret) = auth::cookie_value(&headers, SESSION_COOKIE) {
        let _ = state.store.end_session(&secret_digest(secret)).await;
    }
    let _ = state
        .store
        .record(crate::auth::Caller::actor(&form.caller).draft("session.sign_out"))
        .await;
    let mut response = see_other("/signin");
    response
        .headers_mut()
        .append(header::SET_COOKIE, auth::clear_cookie(SESSION_COOKIE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/accounts/1")), "/accounts/1");
        assert_eq!(safe_next(Some("//evil.example")), "/accounts");
        assert_eq!(safe_next(Some("https://evil.example")), "/accounts");
        assert_eq!(safe_next(Some("/\\evil.example")), "/accounts");
        assert_eq!(safe_next(None), "/accounts");
    }
}
