//! `/v1/crm`: importing Salesforce-shaped records, the fields the CRM takes back for
//! upsert by external id, and the hygiene findings an import held back. Import and
//! export with `SyncCrm`; findings with `ReadAccounts`; all within the caller's scope.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use purser_core::Permission;
use purser_store::crm::{ImportReport, StoredFinding};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::auth::{ApiCaller, Caller};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Decide and report, change nothing.
    pub dry_run: Option<bool>,
}

/// Import accounts (Account), offers (Opportunity with OpportunityLineItems) and
/// entitlements (ServiceContract or Entitlement with ContractLineItems) shaped like
/// Salesforce's REST API: `{"records": [...]}` or an array. Upserted by external id
/// (`Purser_External_Id__c`, `Purser_Offer_Id__c`, `Purser_Entitlement_Id__c`);
/// importing the same records again changes nothing. A record that does not validate
/// fails the whole import (422, each problem named `records[INDEX].Field`). Records
/// that would corrupt billing (duplicate accounts, marketplace entitlements without
/// marketplace ids, overlapping entitlements, a boundary that disagrees with the region)
/// are held back and listed on the hygiene report.
#[utoipa::path(post, path = "/v1/crm/import", tag = "crm", params(ImportQuery),
    request_body(content = Object, description = "Salesforce records"),
    responses((status = 200, body = ImportReport), (status = 422, body = crate::error::ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<ImportQuery>,
    ApiJson(body): ApiJson<Box<RawValue>>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::SyncCrm).await?;
    let records = purser_core::crm::parse_records(body.get())?;
    let scope = caller.scope(&state).await?;
    let report = state
        .store
        .import_crm(&scope, &records, query.dry_run.unwrap_or(false))
        .await?;
    Ok((StatusCode::OK, axum::Json(report)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// The calendar month (UTC), `2026-11`; this month by default.
    pub month: Option<String>,
}

/// What the CRM upserts, as an sObject Collections body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CrmExport {
    #[serde(rename = "allOrNone")]
    pub all_or_none: bool,
    pub records: Vec<serde_json::Value>,
}

/// Usage and entitlement fields for the CRM to upsert by external id: per Account
/// (`Purser_External_Id__c`), ServiceContract (`Purser_Entitlement_Id__c`: dates,
/// status, overage amount) and ContractLineItem (`Purser_Line_Id__c`: committed,
/// consumed and overage this period), for the accounts the caller may see.
#[utoipa::path(get, path = "/v1/crm/export", tag = "crm", params(ExportQuery),
    responses((status = 200, body = CrmExport), (status = 422, body = crate::error::ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<axum::Json<CrmExport>, ApiError> {
    caller.require(&state, Permission::SyncCrm).await?;
    let period = match crate::extract::nonempty(&query.month) {
        None => purser_core::commercial::BillingPeriod::containing(jiff::Timestamp::now()),
        Some(value) => super::erp::month(&value)?,
    };
    let scope = caller.scope(&state).await?;
    Ok(axum::Json(CrmExport {
        all_or_none: false,
        records: state.store.crm_export(&scope, period).await?,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FindingsQuery {
    /// Include findings later imports resolved.
    pub include_resolved: Option<bool>,
}

/// The hygiene report: records a CRM import held back because they would corrupt
/// billing, open ones first, for Sales Operations to fix in the CRM.
#[utoipa::path(get, path = "/v1/crm/findings", tag = "crm", params(FindingsQuery),
    responses((status = 200, body = Vec<StoredFinding>)))]
pub async fn findings(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiQuery(query): ApiQuery<FindingsQuery>,
) -> Result<axum::Json<Vec<StoredFinding>>, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let scope = caller.scope(&state).await?;
    Ok(axum::Json(
        state
            .store
            .crm_findings(&scope, query.include_resolved.unwrap_or(false))
            .await?,
    ))
}
