//! The account pages: the searchable list, one account, create and edit.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use purser_core::account::{Account, AccountDraft, AccountStatus, Marketplace, Owners};
use purser_core::commercial::{CommitmentDraft, EntitlementDraft, EntitlementStatus};
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
    can_sell: bool,
    history: Vec<HistoryRow>,
    entitlements: Vec<EntitlementRow>,
    offer_choices: Vec<SelectOption>,
    form_statuses: Vec<SelectOption>,
    form: EntitlementForm,
    errors: Vec<FieldError>,
    metering: super::metering::AccountMetering,
}

struct EntitlementRow {
    id: String,
    offer: String,
    start: String,
    end: String,
    status: &'static str,
    status_options: Vec<SelectOption>,
    /// `capacity: 360000 per month; overage 0.0125 USD per unit above 100 more, reported hourly`.
    commitments: Vec<String>,
}

struct HistoryRow {
    at: String,
    actor: String,
    action: String,
}

const ENTITLEMENT_STATUSES: [EntitlementStatus; 5] = [
    EntitlementStatus::Pending,
    EntitlementStatus::Active,
    EntitlementStatus::Suspended,
    EntitlementStatus::Cancelled,
    EntitlementStatus::Expired,
];

/// The entitlement form's fields: one commitment, the common case for private offers.
#[derive(Debug, Default, Deserialize)]
pub struct EntitlementForm {
    #[serde(default)]
    offer_id: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    dimension: String,
    #[serde(default)]
    committed_per_period: String,
    #[serde(default)]
    overage_threshold: String,
    #[serde(default)]
    overage_price: String,
    #[serde(default)]
    overage_reporting: String,
    /// Derived for the template.
    #[serde(skip)]
    true_up: bool,
}

impl EntitlementForm {
    fn draft(&self) -> EntitlementDraft {
        let mut commitments = std::collections::BTreeMap::new();
        if !self.dimension.trim().is_empty() {
            commitments.insert(
                self.dimension.trim().to_owned(),
                CommitmentDraft {
                    committed_per_period: self.committed_per_period.clone(),
                    overage_threshold: Some(self.overage_threshold.clone())
                        .filter(|t| !t.trim().is_empty()),
                    overage_price: self.overage_price.clone(),
                    overage_reporting: Some(self.overage_reporting.clone())
                        .filter(|r| !r.is_empty()),
                    committed_fee: None,
                },
            );
        }
        EntitlementDraft {
            offer_id: self.offer_id.clone(),
            start: self.start.clone(),
            end: self.end.clone(),
            status: Some(self.status.clone()).filter(|s| !s.is_empty()),
            commitments,
            marketplace_binding: None,
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    caller: PageCaller,
    Path(account_id): Path<String>,
) -> Result<Response, ApiError> {
    let form = EntitlementForm {
        status: "active".into(),
        ..EntitlementForm::default()
    };
    account_page(&state, &caller, &account_id, form, vec![]).await
}

/// The account's page; `form` and `errors` refill the entitlement form after a refusal.
async fn account_page(
    state: &AppState,
    caller: &PageCaller,
    account_id: &str,
    mut form: EntitlementForm,
    errors: Vec<FieldError>,
) -> Result<Response, ApiError> {
    caller.require(state, Permission::ReadAccounts).await?;
    let scope = caller.scope(state).await?;
    let account = state
        .store
        .account(&scope, account_id)
        .await
        .map_err(not_found)?;
    let history = if caller.principal.can(Permission::ReadAudit) {
        let filter = AuditFilter {
            account_id: Some(account_id.to_owned()),
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
    let statuses = || ENTITLEMENT_STATUSES.map(EntitlementStatus::as_str);
    let entitlements = state
        .store
        .entitlements(&scope, account_id)
        .await?
        .into_iter()
        .map(|e| EntitlementRow {
            id: e.id.clone(),
            offer: offers
                .iter()
                .find(|o| o.id == e.offer_id)
                .map_or_else(|| e.offer_id.clone(), |o| o.name.clone()),
            start: when(e.start),
            end: when(e.end),
            status: e.status.as_str(),
            status_options: options(statuses(), e.status.as_str()),
            commitments: e
                .commitments
                .iter()
                .map(|(dimension, c)| describe_commitment(dimension, c))
                .collect(),
        })
        .collect();
    let offer_choices = offers
        .iter()
        .map(|o| SelectOption {
            value: o.id.clone(),
            label: o.name.clone(),
            selected: o.id == form.offer_id,
        })
        .collect();
    form.true_up = form.overage_reporting == "true_up";
    let status = if errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    let metering = super::metering::account_metering(
        state,
        &scope,
        &account.id.0,
        &account.fields.external_id.clone(),
    )
    .await?;
    let mut response = render(&ShowPage {
        metering,
        chrome: Chrome::for_caller(caller, "/accounts"),
        a: AccountRow::new(account, &scope),
        can_write: caller.principal.can(Permission::WriteAccounts),
        can_sell: caller.principal.can(Permission::ManageCommercial),
        history,
        entitlements,
        offer_choices,
        form_statuses: options(statuses(), &form.status),
        form,
        errors,
    });
    *response.status_mut() = status;
    Ok(response)
}

fn describe_commitment(
    dimension: &purser_core::commercial::DimensionKey,
    c: &purser_core::commercial::Commitment,
) -> String {
    let reporting = match c.overage.reporting {
        purser_core::commercial::OverageReporting::Hourly => "reported hourly",
        purser_core::commercial::OverageReporting::TrueUp => "trued up at period end",
    };
    format!(
        "{dimension}: {} per month; overage {} per unit above {} more, {reporting}",
        c.committed_per_period, c.overage.price_per_unit, c.overage.threshold
    )
}

/// Records an entitlement from the account page's form.
pub async fn create_entitlement(
    State(state): State<AppState>,
    Path(account_id): Path<String>,
    CsrfForm { caller, form }: CsrfForm<EntitlementForm>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageCommercial).await?;
    let scope = caller.scope(&state).await?;
    state
        .store
        .account(&scope, &account_id)
        .await
        .map_err(not_found)?;
    let result = match state.store.offer(&form.offer_id).await {
        Ok(offer) => match form.draft().validate(
            uuid::Uuid::now_v7().to_string(),
            account_id.clone(),
            &offer,
        ) {
            Ok(entitlement) => state
                .store
                .create_entitlement(&scope, entitlement)
                .await
                .map(drop),
            Err(errors) => Err(StoreError::Invalid(errors)),
        },
        Err(StoreError::NotFound) => Err(StoreError::Invalid(
            purser_core::ValidationErrors::single("offer_id", "choose one of the offers"),
        )),
        Err(other) => Err(other),
    };
    match result {
        Ok(()) => Ok(see_other(&format!("/accounts/{account_id}"))),
        Err(error) => {
            let errors = form_errors(error)?;
            account_page(&state, &caller, &account_id, form, errors).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    status: String,
}

/// Changes an entitlement's status from the account page.
pub async fn set_entitlement_status(
    State(state): State<AppState>,
    Path(entitlement_id): Path<String>,
    CsrfForm { caller, form }: CsrfForm<StatusForm>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageCommercial).await?;
    let scope = caller.scope(&state).await?;
    // Visibility first: an entitlement the caller may not see is not found, whatever was sent.
    state
        .store
        .entitlement(&scope, &entitlement_id)
        .await
        .map_err(crate::error::or_not_found("entitlement"))?;
    let status = EntitlementStatus::parse(&form.status)
        .map_err(|reason| ApiError::field("status", reason))?;
    let entitlement = state
        .store
        .set_entitlement_status(&scope, &entitlement_id, status)
        .await
        .map_err(crate::error::or_not_found("entitlement"))?;
    Ok(see_other(&format!("/accounts/{}", entitlement.account_id)))
}

#[derive(Template)]
#[template(path = "offers.html")]
struct OffersPage {
    chrome: Chrome,
    offers: Vec<OfferRow>,
}

struct OfferRow {
    id: String,
    name: String,
    kind: &'static str,
    marketplace: &'static str,
    currency: String,
    dimensions: Vec<String>,
    pricing: String,
}

pub async fn offers(
    State(state): State<AppState>,
    caller: PageCaller,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let offers = state
        .store
        .offers()
        .await?
        .into_iter()
        .map(|o| OfferRow {
            dimensions: o
                .dimensions
                .iter()
                .map(|d| {
                    format!(
                        "{} ({}, \"{}\" at the marketplace)",
                        d.key, d.unit, d.marketplace_name
                    )
                })
                .collect(),
            pricing: match &o.pricing {
                purser_core::commercial::Pricing::PerDimension => "per dimension".to_owned(),
                purser_core::commercial::Pricing::Units { unit, multipliers } => format!(
                    "{unit} = {}",
                    multipliers
                        .iter()
                        .map(|(d, m)| format!("{m} × {d}"))
                        .collect::<Vec<_>>()
                        .join(" + ")
                ),
            },
            id: o.id,
            name: o.name,
            kind: o.kind.as_str(),
            marketplace: o.marketplace.as_str(),
            currency: o.currency.as_str().to_owned(),
        })
        .collect();
    Ok(render(&OffersPage {
        chrome: Chrome::for_caller(&caller, "/offers"),
        offers,
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
