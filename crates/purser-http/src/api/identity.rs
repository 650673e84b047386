//! `/v1/me`, `/v1/users`, `/v1/tokens`, `/v1/boundaries`: who may do and see what.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use purser_core::identity::{NewUser, Role, User, check_password};
use purser_core::{BoundaryRule, Permission};
use purser_store::ApiToken;
use serde::{Deserialize, Serialize};

use crate::auth::{ApiCaller, Caller};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub clearances: Vec<String>,
    pub residency: Option<String>,
    pub disabled: bool,
    pub created_at: String,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        UserView {
            id: user.id,
            username: user.username,
            display_name: user.display_name,
            roles: user.roles.into_iter().collect(),
            clearances: user.clearances.into_iter().collect(),
            residency: user.residency.map(|c| c.to_string()),
            disabled: user.disabled_at.is_some(),
            created_at: user.created_at.to_string(),
        }
    }
}

/// Who you are, as Purser sees you.
#[utoipa::path(get, path = "/v1/me", tag = "identity", responses((status = 200, body = UserView)))]
pub async fn me(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<axum::Json<UserView>, ApiError> {
    Ok(axum::Json(
        state.store.user(&caller.principal.user_id).await?.into(),
    ))
}

/// Every user.
#[utoipa::path(get, path = "/v1/users", tag = "identity",
    responses((status = 200, body = Vec<UserView>), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<axum::Json<Vec<UserView>>, ApiError> {
    caller.require(&state, Permission::ManageUsers).await?;
    Ok(axum::Json(
        state
            .store
            .users()
            .await?
            .into_iter()
            .map(UserView::from)
            .collect(),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    pub username: String,
    #[serde(default)]
    pub display_name: String,
    /// At least 12 characters. Omit for a user who only uses API tokens.
    pub password: Option<String>,
    pub roles: Vec<String>,
    #[serde(default)]
    pub clearances: Vec<String>,
    /// ISO 3166-1 alpha-2 country of residence.
    pub residency: Option<String>,
}

/// Create a user.
#[utoipa::path(post, path = "/v1/users", tag = "identity", request_body = NewUserRequest,
    responses((status = 201, body = UserView), (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(request): ApiJson<NewUserRequest>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageUsers).await?;
    let user = create_user_from(&state, &caller, request).await?;
    Ok((StatusCode::CREATED, axum::Json(UserView::from(user))).into_response())
}

/// Validates, hashes the password, stores: shared by the API and the users page.
pub async fn create_user_from(
    state: &AppState,
    caller: &impl Caller,
    request: NewUserRequest,
) -> Result<User, ApiError> {
    let mut errors = purser_core::ValidationErrors::new();
    let user = NewUser::validate(
        &request.username,
        &request.display_name,
        &request.roles,
        &request.clearances,
        request.residency.as_deref(),
    )
    .map_err(|e| errors.errors.extend(e.errors))
    .ok();
    let password = request.password.filter(|p| !p.is_empty());
    if let Some(password) = &password
        && let Err(e) = check_password(password)
    {
        errors.errors.extend(e.errors);
    }
    let user = errors.into_result(user)?.ok_or_else(ApiError::internal)?;
    let hash = match password {
        Some(password) => Some(crate::auth::hash_password(password).await?),
        None => None,
    };
    Ok(state.store.create_user(&caller.actor(), user, hash).await?)
}

/// A change to a user: each field present replaces the stored one.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub display_name: Option<String>,
    pub roles: Option<Vec<String>>,
    /// Replaces all clearances; `[]` withdraws them, effective at the user's next request.
    pub clearances: Option<Vec<String>>,
    /// ISO 3166-1 alpha-2; `""` clears it.
    pub residency: Option<String>,
    /// A new password (12+ characters).
    pub password: Option<String>,
    /// Disable (ends the user's sessions and stops their tokens) or re-enable.
    pub disabled: Option<bool>,
}

/// Change a user: name, roles, clearances, residency, password, or disable them.
#[utoipa::path(patch, path = "/v1/users/{user_id}", tag = "identity", request_body = UserChange,
    params(("user_id" = String, Path, description = "The user's id")),
    responses((status = 200, body = UserView), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn update_user(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(user_id): Path<String>,
    ApiJson(change): ApiJson<UserChange>,
) -> Result<axum::Json<UserView>, ApiError> {
    caller.require(&state, Permission::ManageUsers).await?;
    let user = change_user(&state, &caller, &user_id, change).await?;
    Ok(axum::Json(user.into()))
}

/// Applies a change to a user, validated whole: shared by the API and the user page.
pub async fn change_user(
    state: &AppState,
    caller: &impl Caller,
    user_id: &str,
    change: UserChange,
) -> Result<User, ApiError> {
    let current = state
        .store
        .user(user_id)
        .await
        .map_err(crate::error::or_not_found("user"))?;
    let disabled = change.disabled;
    let touches_profile = change.display_name.is_some()
        || change.roles.is_some()
        || change.clearances.is_some()
        || change.residency.is_some()
        || change.password.is_some();
    let mut user = current.clone();
    if touches_profile {
        let roles = change.roles.unwrap_or_else(|| {
            current
                .roles
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect()
        });
        let clearances = change
            .clearances
            .unwrap_or_else(|| current.clearances.iter().cloned().collect());
        let residency = change
            .residency
            .or_else(|| current.residency.map(|c| c.to_string()));
        let mut errors = purser_core::ValidationErrors::new();
        let validated = NewUser::validate(
            &current.username,
            change
                .display_name
                .as_deref()
                .unwrap_or(&current.display_name),
            &roles,
            &clearances,
            residency.as_deref(),
        )
        .map_err(|e| errors.errors.extend(e.errors))
        .ok();
        if let Some(password) = &change.password
            && let Err(e) = check_password(password)
        {
            errors.errors.extend(e.errors);
        }
        if user_id == caller.principal().user_id
            && validated.as_ref().is_some_and(|v| {
                !v.roles
                    .iter()
                    .any(|r| r.permissions().contains(&Permission::ManageUsers))
            })
        {
            errors.add(
                "roles",
                "you cannot take away your own right to manage users",
            );
        }
        let validated = errors
            .into_result(validated)?
            .ok_or_else(ApiError::internal)?;
        let hash = match change.password {
            Some(password) => Some(crate::auth::hash_password(password).await?),
            None => None,
        };
        user = state
            .store
            .update_user(&caller.actor(), user_id, &validated, hash)
            .await
            .map_err(crate::error::or_not_found("user"))?;
    }
    if let Some(disabled) = disabled
        && disabled != current.disabled_at.is_some()
    {
        user = set_disabled(state, caller, user_id, disabled).await?;
    }
    Ok(user)
}

/// Disables or re-enables a user: shared by the API and the users page.
pub async fn set_disabled(
    state: &AppState,
    caller: &impl Caller,
    user_id: &str,
    disabled: bool,
) -> Result<User, ApiError> {
    if disabled && user_id == caller.principal().user_id {
        return Err(ApiError::field("disabled", "you cannot disable yourself"));
    }
    state
        .store
        .set_user_disabled(&caller.actor(), user_id, disabled)
        .await
        .map_err(crate::error::or_not_found("user"))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub name: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
}

impl From<ApiToken> for TokenView {
    fn from(token: ApiToken) -> Self {
        TokenView {
            id: token.id,
            user_id: token.user_id,
            username: token.username,
            name: token.name,
            created_at: token.created_at.to_string(),
            expires_at: token.expires_at.to_string(),
            revoked_at: token.revoked_at.map(|t| t.to_string()),
        }
    }
}

/// Your tokens; an administrator sees everyone's.
#[utoipa::path(get, path = "/v1/tokens", tag = "identity", responses((status = 200, body = Vec<TokenView>)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<axum::Json<Vec<TokenView>>, ApiError> {
    caller.require(&state, Permission::ManageOwnTokens).await?;
    let owner = (!caller.principal.can(Permission::ManageUsers))
        .then_some(caller.principal.user_id.as_str());
    Ok(axum::Json(
        state
            .store
            .tokens(owner)
            .await?
            .into_iter()
            .map(TokenView::from)
            .collect(),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// What the token is for (`ci`, `tableau`); unique among your tokens.
    pub name: String,
    /// Days until it expires: 1 to the configured maximum (365 by default).
    pub expires_in_days: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewTokenResponse {
    pub token: TokenView,
    /// The secret, shown this once: Purser keeps only its digest.
    pub secret: String,
}

/// Create a token for yourself. The secret is in this response and nowhere else.
#[utoipa::path(post, path = "/v1/tokens", tag = "identity", request_body = NewTokenRequest,
    responses((status = 201, body = NewTokenResponse), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(request): ApiJson<NewTokenRequest>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageOwnTokens).await?;
    let (token, secret) =
        issue_token(&state, &caller, &request.name, request.expires_in_days).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(NewTokenResponse {
            token: token.into(),
            secret,
        }),
    )
        .into_response())
}

/// Validates and stores a new token for the caller; returns it with its secret.
pub async fn issue_token(
    state: &AppState,
    caller: &impl Caller,
    name: &str,
    expires_in_days: i64,
) -> Result<(ApiToken, String), ApiError> {
    let mut errors = purser_core::ValidationErrors::new();
    let name = purser_core::validation::text(&mut errors, "name", name, true, 64);
    let max = state.settings.token_max_days;
    if !(1..=max).contains(&expires_in_days) {
        errors.add("expires_in_days", format!("must be between 1 and {max}"));
    }
    let name = errors.into_result(name)?.unwrap_or_default();
    let secret = format!(
        "{}{}",
        crate::auth::TOKEN_PREFIX,
        crate::auth::random_secret()
    );
    let expires_at =
        jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * expires_in_days);
    let token = state
        .store
        .create_token(
            &caller.actor(),
            &caller.principal().user_id,
            &name,
            &purser_core::identity::secret_digest(&secret),
            expires_at,
        )
        .await?;
    Ok((token, secret))
}

/// Revoke a token: your own, or anyone's if you are an administrator.
#[utoipa::path(delete, path = "/v1/tokens/{token_id}", tag = "identity",
    params(("token_id" = String, Path, description = "The token's id")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(token_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&state, Permission::ManageOwnTokens).await?;
    revoke(&state, &caller, &token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn revoke(
    state: &AppState,
    caller: &impl Caller,
    token_id: &str,
) -> Result<(), ApiError> {
    let principal = caller.principal();
    let owner = (!principal.can(Permission::ManageUsers)).then_some(principal.user_id.as_str());
    state
        .store
        .revoke_token(&caller.actor(), token_id, owner)
        .await
        .map_err(crate::error::or_not_found("live token"))
}

/// The data boundaries and who may see each.
#[utoipa::path(get, path = "/v1/boundaries", tag = "identity", responses((status = 200, body = Vec<BoundaryRule>)))]
pub async fn list_boundaries(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<axum::Json<Vec<BoundaryRule>>, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    Ok(axum::Json(state.store.boundary_rules().await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBoundaryRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub required_clearance: Option<String>,
    #[serde(default)]
    pub allowed_residencies: Vec<String>,
}

/// Define a new data boundary.
#[utoipa::path(post, path = "/v1/boundaries", tag = "identity", request_body = NewBoundaryRequest,
    responses((status = 201, body = BoundaryRule), (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_boundary(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(request): ApiJson<NewBoundaryRequest>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageBoundaries).await?;
    let rule = BoundaryRule::new(
        &request.name,
        &request.description,
        request.required_clearance.as_deref(),
        &request.allowed_residencies,
    )?;
    let rule = state.store.create_boundary(&caller.actor(), rule).await?;
    Ok((StatusCode::CREATED, axum::Json(rule)).into_response())
}
