//! Who is calling, and what they may do.
//!
//! The API (`/v1`) takes bearer tokens only; the pages take a session cookie only. A
//! cookie never authorises an API call, so cross-site requests cannot ride on a
//! signed-in browser, and every page form carries a CSRF token tied to its session.
//! Secrets are compared by their digest, looked up by an indexed equality.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use purser_core::AccountScope;
use purser_core::audit::Actor;
use purser_core::identity::{Permission, Principal, User, secret_digest};
use rand::RngCore;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "purser_session";
/// The double-submit cookie that protects the sign-in form, before any session exists.
pub const SIGNIN_CSRF_COOKIE: &str = "purser_signin_csrf";
/// API tokens start with this, so a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "psr_";

/// 32 random bytes, hex: for tokens, sessions and CSRF values.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn request_id(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(crate::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// What every authenticated caller can do, whichever way they came in.
pub trait Caller: Sync {
    fn principal(&self) -> &Principal;
    fn request_id(&self) -> Option<String>;

    fn actor(&self) -> Actor {
        Actor::new(self.principal().audit_actor(), self.request_id())
    }

    /// Refuses, and audits the refusal, unless the caller's roles allow `permission`.
    fn require(
        &self,
        state: &AppState,
        permission: Permission,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        let allowed = self.principal().can(permission);
        let draft = self
            .actor()
            .draft("permission.denied")
            .details(serde_json::json!({ "permission": permission }));
        let store = state.store.clone();
        async move {
            if allowed {
                return Ok(());
            }
            let _ = store.record(draft).await;
            Err(ApiError::forbidden(format!(
                "your roles do not allow this ({})",
                serde_json::to_value(permission)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )))
        }
    }

    /// The accounts this caller may see, built from the current boundary rules.
    fn scope(
        &self,
        state: &AppState,
    ) -> impl Future<Output = Result<AccountScope, ApiError>> + Send {
        self.scope_for(state, purser_core::Permission::ReadAccounts)
    }

    /// The accounts the caller may report usage for.
    fn ingest_scope(
        &self,
        state: &AppState,
    ) -> impl Future<Output = Result<AccountScope, ApiError>> + Send {
        self.scope_for(state, purser_core::Permission::IngestUsage)
    }

    /// The accounts the caller may do `work` on: the boundary rules applied to their
    /// clearances and residency, none without the permission.
    fn scope_for(
        &self,
        state: &AppState,
        work: purser_core::Permission,
    ) -> impl Future<Output = Result<AccountScope, ApiError>> + Send {
        let principal = self.principal().clone();
        let request_id = self.request_id();
        let store = state.store.clone();
        async move {
            let rules = store.boundary_rules().await?;
            Ok(AccountScope::for_work(&principal, &rules, request_id, work))
        }
    }
}

/// A caller of the JSON API, authenticated by `Authorization: Bearer psr_…`.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub principal: Principal,
    pub request_id: Option<String>,
}

impl Caller for ApiCaller {
    fn principal(&self) -> &Principal {
        &self.principal
    }
    fn request_id(&self) -> Option<String> {
        self.request_id.clone()
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let request_id = request_id(parts);
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "this API needs a token: send Authorization: Bearer <token> (create one on the Tokens page)",
                )
            })?
            .to_str()
            .map_err(|_| ApiError::unauthenticated("the Authorization header is not valid text"))?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthenticated("the Authorization header must be `Bearer <token>`")
            })?;
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
            return Err(ApiError::unauthenticated("that is not a Purser API token"));
        }
        let now = jiff::Timestamp::now();
        match state
            .store
            .principal_for_token(&secret_digest(token), now)
            .await?
        {
            Some(principal) => Ok(ApiCaller {
                principal,
                request_id,
            }),
            None => {
                // Only a prefix of the token is kept: enough to recognise it, useless to use.
                let shown: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
                let _ = state
                    .store
                    .record(
                        Actor::new("anonymous", request_id)
                            .draft("token.rejected")
                            .details(serde_json::json!({ "token_prefix": shown })),
                    )
                    .await;
                Err(ApiError::unauthenticated(
                    "the API token is unknown, expired or revoked",
                ))
            }
        }
    }
}

/// A signed-in person on the pages.
#[derive(Debug, Clone)]
pub struct PageCaller {
    pub principal: Principal,
    pub user: User,
    pub csrf_token: String,
    pub request_id: Option<String>,
}

impl Caller for PageCaller {
    fn principal(&self) -> &Principal {
        &self.principal
    }
    fn request_id(&self) -> Option<String> {
        self.request_id.clone()
    }
}

/// Not signed in: off to the sign-in page, coming back afterwards.
pub struct SignInRequired(Response);

impl IntoResponse for SignInRequired {
    fn into_response(self) -> Response {
        self.0
    }
}

pub fn cookie_value<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

impl FromRequestParts<AppState> for PageCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(caller) = parts.extensions.get::<PageCaller>() {
            return Ok(caller.clone());
        }
        let cookie = cookie_value(&parts.headers, SESSION_COOKIE).map(str::to_owned);
        let session = match &cookie {
            Some(secret) => state
                .store
                .session(&secret_digest(secret), jiff::Timestamp::now())
                .await
                .map_err(|e| ApiError::from(e).into_response())?,
            None => None,
        };
        let Some(session) = session else {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let reason = if cookie.is_some() {
                "&reason=session"
            } else {
                ""
            };
            let target = format!("/signin?next={}{reason}", urlencode(next));
            let mut response = Redirect::to(&target).into_response();
            if cookie.is_some() {
                // A cookie we do not know (forged, expired, signed out): forget it.
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
            }
            return Err(SignInRequired(response).into_response());
        };
        let caller = PageCaller {
            principal: session.principal,
            user: session.user,
            csrf_token: session.csrf_token,
            request_id: request_id(parts),
        };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

pub fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub fn session_cookie(secret: &str, max_age_seconds: i64, secure: bool) -> header::HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    header::HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{secure}"
    ))
    .unwrap_or_else(|_| header::HeaderValue::from_static(""))
}

pub fn clear_cookie(name: &'static str) -> header::HeaderValue {
    header::HeaderValue::from_str(&format!(
        "{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
    ))
    .unwrap_or_else(|_| header::HeaderValue::from_static(""))
}

/// Constant-time comparison, so a forger learns nothing from timing.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A page form from a signed-in person, accepted only with its session's CSRF token
/// in the `_csrf` field.
pub struct CsrfForm<T> {
    pub caller: PageCaller,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let caller = PageCaller::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts, body);
        let bytes = crate::extract::body_bytes(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let presented = url::form_urlencoded::parse(&bytes)
            .find(|(key, _)| key == "_csrf")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        if !same_secret(&presented, &caller.csrf_token) {
            let _ = state
                .store
                .record(caller.actor().draft("csrf.rejected"))
                .await;
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "this form is out of date or did not come from Purser: reload the page and try again",
            )
            .into_response());
        }
        let form =
            crate::extract::parse_query(std::str::from_utf8(&bytes).map_err(|_| {
                ApiError::bad_request("the form is not valid UTF-8").into_response()
            })?)
            .map_err(IntoResponse::into_response)?;
        Ok(CsrfForm { caller, form })
    }
}

/// Failed sign-ins per username, counted in this process. After
/// [`SignInThrottle::MAX_FAILURES`] within [`SignInThrottle::WINDOW`], the username is
/// refused until the oldest failure ages out: it slows password guessing to a crawl
/// without letting anyone lock a colleague out for long.
#[derive(Debug, Default)]
pub struct SignInThrottle {
    failures: std::sync::Mutex<
        std::collections::HashMap<String, std::collections::VecDeque<std::time::Instant>>,
    >,
}

impl SignInThrottle {
    pub const MAX_FAILURES: usize = 5;
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);
    /// Past this many usernames, those without recent failures are forgotten.
    const MAX_TRACKED: usize = 10_000;

    /// `Err(wait)` when the username must wait before trying again.
    pub fn check(&self, username: &str) -> Result<(), std::time::Duration> {
        let now = std::time::Instant::now();
        let Ok(mut failures) = self.failures.lock() else {
            return Ok(());
        };
        let Some(recent) = failures.get_mut(username) else {
            return Ok(());
        };
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Self::WINDOW)
        {
            recent.pop_front();
        }
        match recent.front() {
            Some(oldest) if recent.len() >= Self::MAX_FAILURES => {
                Err(Self::WINDOW - now.duration_since(*oldest))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, username: &str) {
        let now = std::time::Instant::now();
        if let Ok(mut failures) = self.failures.lock() {
            if failures.len() >= Self::MAX_TRACKED {
                failures.retain(|_, times| {
                    times
                        .back()
                        .is_some_and(|t| now.duration_since(*t) < Self::WINDOW)
                });
            }
            failures
                .entry(username.to_owned())
                .or_default()
                .push_back(now);
        }
    }

    pub fn clear(&self, username: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(username);
        }
    }
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes), off the async threads: a
/// hash takes tens of milliseconds by design.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| {
            argon2::password_hash::Error::SaltInvalid(
                argon2::password_hash::errors::InvalidValue::Malformed,
            )
        })?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|_| ApiError::internal())
}

/// Checks a password against a stored hash. With no hash (unknown user, token-only
/// user) a dummy hash is checked anyway, so timing does not reveal which users exist.
pub async fn verify_password(password: String, stored: Option<String>) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0a6Xn9VfzbJNbCVl0T+o3xXx9gV4u0hq5bY0Yq9xw3M";
    let known = stored.is_some();
    tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| DUMMY.to_owned());
        let Ok(hash) = PasswordHash::new(&stored) else {
            return false;
        };
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
            && known
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn random_secrets_are_256_bits_of_hex() {
        let a = random_secret();
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_secret());
    }
}
