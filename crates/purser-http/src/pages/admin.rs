//! Users, API tokens, the audit log and jobs.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use purser_core::{FieldError, Permission};
use serde::Deserialize;

use super::{Chrome, NoFields, comma_list, render, see_other, when};
use crate::api::audit::AuditQuery;
use crate::api::identity::{NewUserRequest, UserView, create_user_from, issue_token, revoke};
use crate::auth::{Caller, CsrfForm, PageCaller};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct UserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    roles: String,
    #[serde(default)]
    clearances: String,
    #[serde(default)]
    residency: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    chrome_user_id: String,
    users: Vec<UserView>,
    form: UserForm,
    errors: Vec<FieldError>,
    notice: Option<String>,
}

async fn users_page(
    state: &AppState,
    caller: &PageCaller,
    form: UserForm,
    errors: Vec<FieldError>,
    notice: Option<String>,
) -> Result<Response, ApiError> {
    let status = if errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut response = render(&UsersPage {
        chrome: Chrome::for_caller(caller, "/users"),
        chrome_user_id: caller.user.id.clone(),
        users: state
            .store
            .users()
            .await?
            .into_iter()
            .map(UserView::from)
            .collect(),
        form,
        errors,
        notice,
    });
    *response.status_mut() = status;
    Ok(response)
}

pub async fn users(
    State(state): State<AppState>,
    caller: PageCaller,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageUsers).await?;
    users_page(&state, &caller, UserForm::default(), vec![], None).await
}

#[derive(Template)]
#[template(path = "user_edit.html")]
struct UserEditPage {
    chrome: Chrome,
    user_id: String,
    username: String,
    form: UserForm,
    errors: Vec<FieldError>,
    notice: Option<String>,
}

fn user_form(user: &purser_core::User) -> UserForm {
    UserForm {
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        password: String::new(),
        roles: user
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        clearances: user
            .clearances
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        residency: user.residency.map(|c| c.to_string()).unwrap_or_default(),
    }
}

pub async fn edit_user(
    State(state): State<AppState>,
    caller: PageCaller,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageUsers).await?;
    let user = state
        .store
        .user(&user_id)
        .await
        .map_err(crate::error::or_not_found("user"))?;
    Ok(render(&UserEditPage {
        chrome: Chrome::for_caller(&caller, "/users"),
        user_id,
        username: user.username.clone(),
        form: user_form(&user),
        errors: vec![],
        notice: None,
    }))
}

pub async fn update_user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    CsrfForm { caller, form }: CsrfForm<UserForm>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageUsers).await?;
    let change = crate::api::identity::UserChange {
        display_name: Some(form.display_name.clone()),
        roles: Some(comma_list(&form.roles)),
        clearances: Some(comma_list(&form.clearances)),
        residency: Some(form.residency.clone()),
        password: Some(form.password.clone()).filter(|p| !p.is_empty()),
        disabled: None,
    };
    let (form, errors, notice) =
        match crate::api::identity::change_user(&state, &caller, &user_id, change).await {
            Ok(user) => (user_form(&user), vec![], Some("Saved.".to_owned())),
            Err(error) if !error.details.is_empty() => (form, error.details, None),
            Err(error) => return Err(error),
        };
    let status = if errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut response = render(&UserEditPage {
        chrome: Chrome::for_caller(&caller, "/users"),
        user_id,
        username: form.username.clone(),
        form,
        errors,
        notice,
    });
    *response.status_mut() = status;
    Ok(response)
}

pub async fn create_user(
    State(state): State<AppState>,
    CsrfForm { caller, form }: CsrfForm<UserForm>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageUsers).await?;
    let request = NewUserRequest {
        username: form.username.clone(),
        display_name: form.display_name.clone(),
        password: Some(form.password.clone()).filter(|p| !p.is_empty()),
        roles: comma_list(&form.roles),
        clearances: comma_list(&form.clearances),
        residency: Some(form.residency.clone()).filter(|r| !r.trim().is_empty()),
    };
    match create_user_from(&state, &caller, request).await {
        Ok(user) => {
            users_page(
                &state,
                &caller,
                UserForm::default(),
                vec![],
                Some(format!("Added {}.", user.username)),
            )
            .await
        }
        Err(error) if !error.details.is_empty() => {
            users_page(&state, &caller, form, error.details, None).await
        }
        Err(error) => Err(error),
    }
}

async fn set_disabled(
    state: &AppState,
    caller: &PageCaller,
    user_id: &str,
    disabled: bool,
) -> Result<Response, ApiError> {
    caller.require(state, Permission::ManageUsers).await?;
    crate::api::identity::set_disabled(state, caller, user_id, disabled).await?;
    Ok(see_other("/users"))
}

pub async fn disable_user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    form: CsrfForm<NoFields>,
) -> Result<Response, ApiError> {
    set_disabled(&state, &form.caller, &user_id, true).await
}

pub async fn enable_user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    form: CsrfForm<NoFields>,
) -> Result<Response, ApiError> {
    set_disabled(&state, &form.caller, &user_id, false).await
}

struct TokenRow {
    id: String,
    name: String,
    username: String,
    created_at: String,
    expires_at: String,
    revoked: bool,
    expired: bool,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    chrome: Chrome,
    tokens: Vec<TokenRow>,
    new_secret: Option<String>,
    errors: Vec<FieldError>,
}

async fn tokens_page(
    state: &AppState,
    caller: &PageCaller,
    new_secret: Option<String>,
    errors: Vec<FieldError>,
) -> Result<Response, ApiError> {
    let owner = (!caller.principal.can(Permission::ManageUsers)).then_some(caller.user.id.as_str());
    let now = jiff::Timestamp::now();
    let tokens = state
        .store
        .tokens(owner)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            username: t.username,
            created_at: when(t.created_at),
            expires_at: when(t.expires_at),
            revoked: t.revoked_at.is_some(),
            expired: t.expires_at <= now,
        })
        .collect();
    let status = if errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut response = render(&TokensPage {
        chrome: Chrome::for_caller(caller, "/tokens"),
        tokens,
        new_secret,
        errors,
    });
    *response.status_mut() = status;
    // The page may carry a secret: never cache it.
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

pub async fn tokens(
    State(state): State<AppState>,
    caller: PageCaller,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageOwnTokens).await?;
    tokens_page(&state, &caller, None, vec![]).await
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires_in_days: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    CsrfForm { caller, form }: CsrfForm<TokenForm>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageOwnTokens).await?;
    let Ok(days) = form.expires_in_days.trim().parse::<i64>() else {
        let errors = vec![FieldError {
            field: "expires_in_days".into(),
            reason: "must be a whole number of days".into(),
        }];
        return tokens_page(&state, &caller, None, errors).await;
    };
    match issue_token(&state, &caller, &form.name, days).await {
        Ok((_, secret)) => tokens_page(&state, &caller, Some(secret), vec![]).await,
        Err(error) if !error.details.is_empty() => {
            tokens_page(&state, &caller, None, error.details).await
        }
        Err(error) => Err(error),
    }
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Path(token_id): Path<String>,
    form: CsrfForm<NoFields>,
) -> Result<Response, ApiError> {
    form.caller
        .require(&state, Permission::ManageOwnTokens)
        .await?;
    revoke(&state, &form.caller, &token_id).await?;
    Ok(see_other("/tokens"))
}

struct AuditRow {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    account_id: Option<String>,
    details: String,
}

#[derive(Default)]
struct AuditQueryView {
    actor: String,
    account_id: String,
    action: String,
    from: String,
    to: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    entries: Vec<AuditRow>,
    q: AuditQueryView,
    checkpoint: String,
    next_href: Option<String>,
}

pub async fn audit(
    State(state): State<AppState>,
    caller: PageCaller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadAudit).await?;
    let (filter, page) = query.filter()?;
    let scope = caller.scope(&state).await?;
    let result = state.store.audit_entries(&scope, &filter, &page).await?;
    let q = AuditQueryView {
        actor: query.actor.clone().unwrap_or_default(),
        account_id: query.account_id.clone().unwrap_or_default(),
        action: query.action.clone().unwrap_or_default(),
        from: query.from.clone().unwrap_or_default(),
        to: query.to.clone().unwrap_or_default(),
    };
    let next_href = result.next_cursor.map(|cursor| {
        let mut params = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("actor", &q.actor),
            ("account_id", &q.account_id),
            ("action", &q.action),
            ("from", &q.from),
            ("to", &q.to),
        ] {
            if !value.is_empty() {
                params.append_pair(key, value);
            }
        }
        params.append_pair("cursor", &cursor);
        format!("/audit?{}", params.finish())
    });
    let entries = result
        .items
        .into_iter()
        .map(|e| AuditRow {
            seq: e.seq,
            at: when(e.at),
            actor: e.actor,
            action: e.action,
            account_id: e.account_id,
            details: serde_json::from_str::<serde_json::Value>(&e.details)
                .ok()
                .filter(|v| !v.is_null())
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_default(),
        })
        .collect();
    Ok(render(&AuditPage {
        chrome: Chrome::for_caller(&caller, "/audit"),
        entries,
        q,
        checkpoint: state.store.audit_recorded_head().await?.to_string(),
        next_href,
    }))
}

struct JobRow {
    job: String,
    slot: String,
    state: String,
    owner: String,
    attempts: i64,
    outcome: String,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    chrome: Chrome,
    runs: Vec<JobRow>,
}

pub async fn jobs(State(state): State<AppState>, caller: PageCaller) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadJobs).await?;
    let runs = state
        .store
        .job_runs(None, 200)
        .await?
        .into_iter()
        .map(|r| JobRow {
            job: r.job,
            slot: when(r.slot),
            state: r.state,
            owner: r.owner.unwrap_or_default(),
            attempts: r.attempts,
            outcome: r.outcome.unwrap_or_default(),
        })
        .collect();
    Ok(render(&JobsPage {
        chrome: Chrome::for_caller(&caller, "/jobs"),
        runs,
    }))
}
