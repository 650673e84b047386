//! `/v1/accounts`: customer organisations.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use purser_core::account::{
    Account, AccountDraft, AccountPatch, AccountStatus, Marketplace, Owners,
};
use purser_core::{BoundaryName, Permission};
use purser_store::{AccountFilter, PageRequest};
use serde::{Deserialize, Serialize};

use crate::api::Page;
use crate::auth::{ApiCaller, Caller};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, nonempty};
use crate::state::AppState;

/// An account as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub id: String,
    pub name: String,
    pub external_id: String,
    pub marketplace: Marketplace,
    pub marketplace_account_id: Option<String>,
    pub crm_account_id: Option<String>,
    pub boundary: String,
    pub region: String,
    pub owners: Owners,
    pub status: AccountStatus,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

impl From<Account> for AccountView {
    fn from(account: Account) -> Self {
        let f = account.fields;
        AccountView {
            id: account.id.0,
            name: f.name,
            external_id: f.external_id,
            marketplace: f.marketplace,
            marketplace_account_id: f.marketplace_account_id,
            crm_account_id: f.crm_account_id,
            boundary: f.boundary.to_string(),
            region: f.region,
            owners: f.owners,
            status: f.status,
            created_at: account.created_at.to_string(),
            updated_at: account.updated_at.to_string(),
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// Search name, external id, marketplace buyer id and CRM id.
    pub q: Option<String>,
    pub marketplace: Option<String>,
    pub boundary: Option<String>,
    pub status: Option<String>,
    pub cursor: Option<String>,
    /// 1 to 500; 50 by default.
    pub limit: Option<usize>,
}

impl AccountQuery {
    /// The filter, or the fields that are wrong.
    pub fn filter(&self) -> Result<(AccountFilter, PageRequest), ApiError> {
        let mut errors = purser_core::ValidationErrors::new();
        let marketplace = nonempty(&self.marketplace).and_then(|m| {
            Marketplace::parse(&m)
                .map_err(|r| errors.add("marketplace", r))
                .ok()
        });
        let boundary = nonempty(&self.boundary).and_then(|b| {
            BoundaryName::parse(&b)
                .map_err(|r| errors.add("boundary", r))
                .ok()
        });
        let status = nonempty(&self.status).and_then(|s| {
            AccountStatus::parse(&s)
                .map_err(|r| errors.add("status", r))
                .ok()
        });
        errors.into_result(())?;
        Ok((
            AccountFilter {
                q: nonempty(&self.q),
                marketplace,
                boundary,
                status,
            },
            PageRequest {
                after: nonempty(&self.cursor),
                limit: self.limit,
            },
        ))
    }
}

/// List the accounts you may see, by name.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", params(AccountQuery),
    responses((status = 200, body = Page<AccountView>), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_accounts(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<AccountQuery>,
) -> Result<axum::Json<Page<AccountView>>, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let (filter, page) = query.filter()?;
    let scope = caller.scope(&state).await?;
    let accounts = state.store.list_accounts(&scope, &filter, &page).await?;
    Ok(axum::Json(accounts.into()))
}

/// Create an account.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = AccountDraft,
    responses((status = 201, body = AccountView), (status = 422, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_account(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(draft): ApiJson<AccountDraft>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::WriteAccounts).await?;
    let scope = caller.scope(&state).await?;
    let known = known_boundaries(&state).await?;
    let fields = draft.validate(&known)?;
    let account = state.store.create_account(&scope, fields).await?;
    Ok((
        StatusCode::CREATED,
        etag(&account),
        axum::Json(AccountView::from(account)),
    )
        .into_response())
}

/// One account. Its `ETag` may be sent back as `If-Match` with a change.
#[utoipa::path(get, path = "/v1/accounts/{account_id}", tag = "accounts",
    params(("account_id" = String, Path, description = "The account's id")),
    responses((status = 200, body = AccountView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_account(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(account_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let scope = caller.scope(&state).await?;
    let account = state
        .store
        .account(&scope, &account_id)
        .await
        .map_err(not_found)?;
    Ok((etag(&account), axum::Json(AccountView::from(account))).into_response())
}

/// Change an account: fields present replace the stored ones; `""` clears an optional
/// field. With `If-Match`, the change is refused if the account changed since.
#[utoipa::path(patch, path = "/v1/accounts/{account_id}", tag = "accounts", request_body = AccountPatch,
    params(("account_id" = String, Path, description = "The account's id")),
    responses((status = 200, body = AccountView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 412, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn update_account(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<AccountPatch>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::WriteAccounts).await?;
    let scope = caller.scope(&state).await?;
    let current = state
        .store
        .account(&scope, &account_id)
        .await
        .map_err(not_found)?;
    if let Some(expected) = headers.get(header::IF_MATCH)
        && expected.as_bytes() != etag_value(&current).as_bytes()
    {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the account changed since the version named in If-Match: reload it and try again",
        ));
    }
    let known = known_boundaries(&state).await?;
    let fields = AccountDraft::from(&current.fields)
        .apply(patch)
        .validate(&known)?;
    let updated = state
        .store
        .update_account(&scope, &account_id, current.updated_at, fields)
        .await
        .map_err(not_found)?;
    Ok((etag(&updated), axum::Json(AccountView::from(updated))).into_response())
}

pub async fn known_boundaries(state: &AppState) -> Result<Vec<BoundaryName>, ApiError> {
    Ok(state
        .store
        .boundary_rules()
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect())
}

/// A store miss on an account, named as such.
pub fn not_found(error: purser_store::StoreError) -> ApiError {
    crate::error::or_not_found("account")(error)
}

fn etag_value(account: &Account) -> String {
    format!("\"{}\"", account.updated_at.as_microsecond())
}

fn etag(account: &Account) -> [(header::HeaderName, HeaderValue); 1] {
    [(
        header::ETAG,
        HeaderValue::from_str(&etag_value(account))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\"")),
    )]
}
