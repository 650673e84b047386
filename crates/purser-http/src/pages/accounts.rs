//! The account pages: the searchable list, one account, create and edit.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use purser_core::account::{Account, AccountDraft, AccountStatus, Marketplace, Owners};
use purser_core::{AccountScope, FieldError, Permission};
use purser_store::{AuditFilter, PageRequest, StoreError};
use serde::Deserialize;

use super::{Chrome, SelectOption, options, render, see_other, when};
use crate::api::accounts::{AccountQuery, known_boundaries, not_found};
use crate::auth::{Caller, CsrfForm, PageCaller};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// An account as a row or a page shows it.
pub struct AccountRow {
    pub id: String,
    pub name: String,
    pub external_id: String,
    pub marketplace: &'static str,
    pub buyer_label: &'static str,
    pub marketplace_account_id: String,
    pub crm_account_id: String,
    pub boundary: String,
    pub restricted: bool,
    pub region: String,
    pub status: &'static str,
    pub account_executive: String,
    pub csm: String,
    pub tam: String,
    pub created_at: String,
    pub updated_at: String,
}

impl AccountRow {
    fn new(account: Account, scope: &AccountScope) -> Self {
        let f = account.fields;
        AccountRow {
            id: account.id.0,
            restricted: scope.is_restricted(&f.boundary),
            name: f.name,
            external_id: f.external_id,
            marketplace: f.marketplace.as_str(),
            buyer_label: f.marketplace.buyer_id_label(),
            marketplace_account_id: f.marketplace_account_id.unwrap_or_default(),
            crm_account_id: f.crm_account_id.unwrap_or_default(),
            boundary: f.boundary.to_string(),
            region: f.region,
            status: f.status.as_str(),
            account_executive: f.owners.account_executive.unwrap_or_default(),
            csm: f.owners.csm.unwrap_or_default(),
            tam: f.owners.tam.unwrap_or_default(),
            created_at: when(account.created_at),
            updated_at: when(account.updated_at),
        }
    }
}

#[derive(Template)]
#[template(path = "accounts.html")]
struct ListPage {
    chrome: Chrome,
    accounts: Vec<AccountRow>,
    q: String,
    marketplaces: Vec<SelectOption>,
    boundaries: Vec<SelectOption>,
    statuses: Vec<SelectOption>,
    can_write: bool,
    next_href: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: PageCaller,
    ApiQuery(query): ApiQuery<AccountQuery>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let (filter, page) = query.filter()?;
    let scope = caller.scope(&state).await?;
    let result = state.store.list_accounts(&scope, &filter, &page).await?;
    let next_href = result.next_cursor.map(|cursor| {
        let mut params = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("q", &query.q),
            ("marketplace", &query.marketplace),
            ("boundary", &query.boundary),
            ("status", &query.status),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                params.append_pair(key, value);
            }
        }
        params.append_pair("cursor", &cursor);
        format!("/accounts?{}", params.finish())
    });
    let boundaries = visible_boundaries(&state, &scope).await?;
    Ok(render(&ListPage {
        chrome: Chrome::for_caller(&caller, "/accounts"),
        accounts: result
            .items
            .into_iter()
            .map(|a| AccountRow::new(a, &scope))
            .collect(),
        marketplaces: options(
            Marketplace::ALL.map(Marketplace::as_str),
            query.marketplace.as_deref().unwrap_or(""),
        ),
        boundaries: options(boundaries, query.boundary.as_deref().unwrap_or("")),
        statuses: options(
            AccountStatus::ALL.map(AccountStatus::as_str),
            query.status.as_deref().unwrap_or(""),
        ),
        q: query.q.unwrap_or_default(),
        can_write: caller.principal.can(Permission::WriteAccounts),
        next_href,
    }))
}

/// Boundaries offered in filters and forms: only those the caller may see, so a form
/// never suggests placing an account where its author could not follow it.
async fn visible_boundaries(
    state: &AppState,
    scope: &AccountScope,
) -> Result<Vec<String>, ApiError> {
    Ok(known_boundaries(state)
        .await?
        .into_iter()
        .filter(|b| scope.permits(b))
        .map(|b| b.to_string())
        .collect())
}

#[derive(Template)]
#[template(path = "account.html")]
struct ShowPage {
    chrome: Chrome,
    a: AccountRow,
    can_write: bool,
    history: Vec<HistoryRow>,
    entitlements: Vec<EntitlementRow>,
}

struct EntitlementRow {
    offer: String,
    start: String,
    end: String,
    status: &'static str,
    /// `capacity: 360000 per month, overage 0.0125 USD above 100 (hourly)`, one per line.
    commitments: Vec<String>,
}

struct HistoryRow {
    at: String,
    actor: String,
    action: String,
}

pub async fn show(
    State(state): State<AppState>,
    caller: PageCaller,
    Path(account_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let scope = caller.scope(&state).await?;
    let account = state
        .store
        .account(&scope, &account_id)
        .await
        .map_err(not_found)?;
    let history = if caller.principal.can(Permission::ReadAudit) {
        let filter = AuditFilter {
            account_id: Some(account_id.clone()),
            ..AuditFilter::default()
        };
        let page = PageRequest {
            after: None,
            limit: Some(20),
        };
        state
            .store
            .audit_entries(&scope, &filter, &page)
            .await?
            .items
            .into_iter()
            .map(|e| HistoryRow {
                at: when(e.at),
                actor: e.actor,
                action: e.action,
            })
            .collect()
    } else {
        Vec::new()
    };
    let offers = state.store.offers().await?;
    let entitlements = state
        .store
        .entitlements(&scope, &account_id)
        .await?
        .into_iter()
        .map(|e| EntitlementRow {
            offer: offers
                .iter()
                .find(|o| o.id == e.offer_id)
                .map_or_else(|| e.offer_id.clone(), |o| o.name.clone()),
            start: when(e.start),
            end: when(e.end),
            status: e.status.as_str(),
            commitments: e
                .commitments
                .iter()
                .map(|(dimension, c)| {
                    let reporting = match c.overage.reporting {
                        purser_core::commercial::OverageReporting::Hourly => "reported hourly",
                        purser_core::commercial::OverageReporting::TrueUp => {
                            "trued up at period end"
                        }
                    };
                    format!(
                        "{dimension}: {} per month; overage {} per unit above {} more, {reporting}",
                        c.committed_per_period, c.overage.price_per_unit, c.overage.threshold
                    )
                })
                .collect(),
        })
        .collect();
    Ok(render(&ShowPage {
        chrome: Chrome::for_caller(&caller, "/accounts"),
        a: AccountRow::new(account, &scope),
        can_write: caller.principal.can(Permission::WriteAccounts),
        history,
        entitlements,
    }))
}

/// The account form's fields, flat as HTML forms send them.
#[derive(Debug, Default, Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub external_id: String,
    #[serde(default)]
    pub marketplace: String,
    #[serde(default)]
    pub marketplace_account_id: String,
    #[serde(default)]
    pub crm_account_id: String,
    #[serde(default)]
    pub boundary: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub owner_account_executive: String,
    #[serde(default)]
    pub owner_csm: String,
    #[serde(default)]
    pub owner_tam: String,
    /// When the edited account was read, for the stale-write check.
    #[serde(default)]
    pub expected_updated_at: String,
}

impl AccountForm {
    fn draft(&self) -> AccountDraft {
        let optional = |v: &str| Some(v.to_owned()).filter(|v| !v.trim().is_empty());
        AccountDraft {
            name: self.name.clone(),
            external_id: self.external_id.clone(),
            marketplace: self.marketplace.clone(),
            marketplace_account_id: optional(&self.marketplace_account_id),
            crm_account_id: optional(&self.crm_account_id),
            boundary: optional(&self.boundary),
            region: self.region.clone(),
            owners: Owners {
                account_executive: optional(&self.owner_account_executive),
                csm: optional(&self.owner_csm),
                tam: optional(&self.owner_tam),
            },
            status: optional(&self.status),
        }
    }

    fn from_account(account: &Account) -> Self {
        let f = &account.fields;
        AccountForm {
            name: f.name.clone(),
            external_id: f.external_id.clone(),
            marketplace: f.marketplace.as_str().into(),
            marketplace_account_id: f.marketplace_account_id.clone().unwrap_or_default(),
            crm_account_id: f.crm_account_id.clone().unwrap_or_default(),
            boundary: f.boundary.to_string(),
            region: f.region.clone(),
            status: f.status.as_str().into(),
            owner_account_executive: f.owners.account_executive.clone().unwrap_or_default(),
            owner_csm: f.owners.csm.clone().unwrap_or_default(),
            owner_tam: f.owners.tam.clone().unwrap_or_default(),
            expected_updated_at: account.updated_at.as_microsecond().to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "account_form.html")]
struct FormPage {
    chrome: Chrome,
    heading: String,
    action: String,
    cancel: String,
    form: AccountForm,
    expected_updated_at: String,
    errors: Vec<FieldError>,
    marketplaces: Vec<SelectOption>,
    boundaries: Vec<SelectOption>,
    statuses: Vec<SelectOption>,
}

/// Where an account form is: its heading, where it posts, where Cancel goes.
struct FormTarget {
    heading: String,
    action: String,
    cancel: String,
}

impl FormTarget {
    fn new_account() -> Self {
        FormTarget {
            heading: "New account".into(),
            action: "/accounts/new".into(),
            cancel: "/accounts".into(),
        }
    }

    fn edit(account_id: &str, name: &str) -> Self {
        FormTarget {
            heading: format!("Edit {name}"),
            action: format!("/accounts/{account_id}/edit"),
            cancel: format!("/accounts/{account_id}"),
        }
    }
}

async fn form_page(
    state: &AppState,
    caller: &PageCaller,
    scope: &AccountScope,
    target: FormTarget,
    form: AccountForm,
    errors: Vec<FieldError>,
) -> Result<Response, ApiError> {
    let FormTarget {
        heading,
        action,
        cancel,
    } = target;
    let status = if errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut response = render(&FormPage {
        chrome: Chrome::for_caller(caller, "/accounts"),
        heading,
        action,
        cancel,
        expected_updated_at: form.expected_updated_at.clone(),
        marketplaces: options(Marketplace::ALL.map(Marketplace::as_str), &form.marketplace),
        boundaries: options(visible_boundaries(state, scope).await?, &form.boundary),
        statuses: options(AccountStatus::ALL.map(AccountStatus::as_str), &form.status),
        form,
        errors,
    });
    *response.status_mut() = status;
    Ok(response)
}

pub async fn new_form(
    State(state): State<AppState>,
    caller: PageCaller,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::WriteAccounts).await?;
    let scope = caller.scope(&state).await?;
    let form = AccountForm {
        marketplace: "gcp".into(),
        boundary: "standard".into(),
        status: "onboarding".into(),
        ..AccountForm::default()
    };
    form_page(
        &state,
        &caller,
        &scope,
        FormTarget::new_account(),
        form,
        vec![],
    )
    .await
}

pub async fn create(
    State(state): State<AppState>,
    CsrfForm { caller, form }: CsrfForm<AccountForm>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::WriteAccounts).await?;
    let scope = caller.scope(&state).await?;
    let known = known_boundaries(&state).await?;
    let result = match form.draft().validate(&known) {
        Ok(fields) => state.store.create_account(&scope, fields).await,
        Err(errors) => Err(StoreError::Invalid(errors)),
    };
    match result {
        Ok(account) => Ok(see_other(&format!("/accounts/{}", account.id))),
        Err(error) => {
            let errors = form_errors(error)?;
            form_page(
                &state,
                &caller,
                &scope,
                FormTarget::new_account(),
                form,
                errors,
            )
            .await
        }
    }
}

pub async fn edit_form(
    State(state): State<AppState>,
    caller: PageCaller,
    Path(account_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::WriteAccounts).await?;
    let scope = caller.scope(&state).await?;
    let account = state
        .store
        .account(&scope, &account_id)
        .await
        .map_err(not_found)?;
    let form = AccountForm::from_account(&account);
    form_page(
        &state,
        &caller,
        &scope,
        FormTarget::edit(&account_id, &account.fields.name),
        form,
        vec![],
    )
    .await
}

pub async fn update(
    State(state): State<AppState>,
    Path(account_id): Path<String>,
    CsrfForm { caller, form }: CsrfForm<AccountForm>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::WriteAccounts).await?;
    let scope = caller.scope(&state).await?;
    let known = known_boundaries(&state).await?;
    let expected = form
        .expected_updated_at
        .parse::<i64>()
        .ok()
        .and_then(|micros| jiff::Timestamp::from_microsecond(micros).ok())
        .ok_or_else(|| {
            ApiError::field(
                "expected_updated_at",
                "is missing: reload the page and try again",
            )
        })?;
    let result = match form.draft().validate(&known) {
        Ok(fields) => {
            state
                .store
                .update_account(&scope, &account_id, expected, fields)
                .await
        }
        Err(errors) => Err(StoreError::Invalid(errors)),
    };
    match result {
        Ok(_) => Ok(see_other(&format!("/accounts/{account_id}"))),
        Err(StoreError::NotFound) => Err(ApiError::not_found("account")),
        Err(error) => {
            let errors = form_errors(error)?;
            form_page(
                &state,
                &caller,
                &scope,
                FormTarget::edit(&account_id, "account"),
                form,
                errors,
            )
            .await
        }
    }
}

/// Errors a person can fix on the form are shown on it; anything else is an error page.
fn form_errors(error: StoreError) -> Result<Vec<FieldError>, ApiError> {
    match error {
        StoreError::Invalid(errors) => Ok(errors.errors),
        StoreError::Conflict { field, message } => Ok(vec![FieldError {
            field: field.unwrap_or_else(|| "account".into()),
            reason: message,
        }]),
        other => Err(other.into()),
    }
}
