//! `/v1/offers` and entitlements: what was sold, and to whom.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use purser_core::Permission;
use purser_core::commercial::{
    Entitlement, EntitlementDraft, EntitlementStatus, Offer, OfferDraft,
};
use serde::{Deserialize, Serialize};

use crate::auth::{ApiCaller, Caller};
use crate::error::{ApiError, or_not_found};
use crate::extract::ApiJson;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OfferView {
    pub id: String,
    pub name: String,
    /// `private` or `public`.
    pub kind: String,
    pub marketplace: String,
    pub currency: String,
    /// Each dimension: key, marketplace name, unit, reporting.
    #[schema(value_type = Vec<Object>)]
    pub dimensions: serde_json::Value,
    #[schema(value_type = Object)]
    pub pricing: serde_json::Value,
}

impl From<Offer> for OfferView {
    fn from(offer: Offer) -> Self {
        OfferView {
            id: offer.id,
            name: offer.name,
            kind: offer.kind.as_str().to_owned(),
            marketplace: offer.marketplace.as_str().to_owned(),
            currency: offer.currency.as_str().to_owned(),
            dimensions: serde_json::to_value(&offer.dimensions).unwrap_or_default(),
            pricing: serde_json::to_value(&offer.pricing).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntitlementView {
    pub id: String,
    pub account_id: String,
    pub offer_id: String,
    /// RFC 3339, UTC.
    pub start: String,
    pub end: String,
    pub status: String,
    /// Dimension → committed quantity per period and overage policy (decimals as strings).
    #[schema(value_type = Object)]
    pub commitments: serde_json::Value,
}

impl From<Entitlement> for EntitlementView {
    fn from(e: Entitlement) -> Self {
        EntitlementView {
            id: e.id,
            account_id: e.account_id,
            offer_id: e.offer_id,
            start: e.start.to_string(),
            end: e.end.to_string(),
            status: e.status.as_str().to_owned(),
            commitments: serde_json::to_value(&e.commitments).unwrap_or_default(),
        }
    }
}

/// The offers.
#[utoipa::path(get, path = "/v1/offers", tag = "commercial", responses((status = 200, body = Vec<OfferView>)))]
pub async fn list_offers(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<axum::Json<Vec<OfferView>>, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    Ok(axum::Json(
        state
            .store
            .offers()
            .await?
            .into_iter()
            .map(OfferView::from)
            .collect(),
    ))
}

/// Define an offer.
#[utoipa::path(post, path = "/v1/offers", tag = "commercial", request_body = OfferDraft,
    responses((status = 201, body = OfferView), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_offer(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(draft): ApiJson<OfferDraft>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageCommercial).await?;
    let offer = draft.validate(uuid::Uuid::now_v7().to_string())?;
    let offer = state.store.create_offer(&caller.actor(), offer).await?;
    Ok((StatusCode::CREATED, axum::Json(OfferView::from(offer))).into_response())
}

/// One offer.
#[utoipa::path(get, path = "/v1/offers/{offer_id}", tag = "commercial",
    params(("offer_id" = String, Path, description = "The offer's id")),
    responses((status = 200, body = OfferView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_offer(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(offer_id): Path<String>,
) -> Result<axum::Json<OfferView>, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    Ok(axum::Json(
        state
            .store
            .offer(&offer_id)
            .await
            .map_err(or_not_found("offer"))?
            .into(),
    ))
}

/// An account's entitlements, newest first.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/entitlements", tag = "commercial",
    params(("account_id" = String, Path, description = "The account's id")),
    responses((status = 200, body = Vec<EntitlementView>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_entitlements(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(account_id): Path<String>,
) -> Result<axum::Json<Vec<EntitlementView>>, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let scope = caller.scope(&state).await?;
    let entitlements = state
        .store
        .entitlements(&scope, &account_id)
        .await
        .map_err(or_not_found("account"))?;
    Ok(axum::Json(
        entitlements
            .into_iter()
            .map(EntitlementView::from)
            .collect(),
    ))
}

/// Record an entitlement: the account's right under an offer, with its commitments.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/entitlements", tag = "commercial", request_body = EntitlementDraft,
    params(("account_id" = String, Path, description = "The account's id")),
    responses((status = 201, body = EntitlementView), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_entitlement(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(account_id): Path<String>,
    ApiJson(draft): ApiJson<EntitlementDraft>,
) -> Result<Response, ApiError> {
    caller.require(&state, Permission::ManageCommercial).await?;
    let scope = caller.scope(&state).await?;
    // The account first: an invisible account is a 404 before anything about the offer.
    state
        .store
        .account(&scope, &account_id)
        .await
        .map_err(or_not_found("account"))?;
    let offer = match state.store.offer(&draft.offer_id).await {
        Ok(offer) => offer,
        Err(purser_store::StoreError::NotFound) => {
            return Err(ApiError::field(
                "offer_id",
                format!("no offer has the id `{}`", draft.offer_id),
            ));
        }
        Err(other) => return Err(other.into()),
    };
    let entitlement = draft.validate(uuid::Uuid::now_v7().to_string(), account_id, &offer)?;
    let entitlement = state
        .store
        .create_entitlement(&scope, entitlement)
        .await
        .map_err(or_not_found("account"))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(EntitlementView::from(entitlement)),
    )
        .into_response())
}

/// One entitlement.
#[utoipa::path(get, path = "/v1/entitlements/{entitlement_id}", tag = "commercial",
    params(("entitlement_id" = String, Path, description = "The entitlement's id")),
    responses((status = 200, body = EntitlementView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_entitlement(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(entitlement_id): Path<String>,
) -> Result<axum::Json<EntitlementView>, ApiError> {
    caller.require(&state, Permission::ReadAccounts).await?;
    let scope = caller.scope(&state).await?;
    let entitlement = state
        .store
        .entitlement(&scope, &entitlement_id)
        .await
        .map_err(or_not_found("entitlement"))?;
    Ok(axum::Json(entitlement.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntitlementChange {
    /// `pending`, `active`, `suspended`, `cancelled` or `expired`.
    pub status: String,
}

/// Change an entitlement's status.
#[utoipa::path(patch, path = "/v1/entitlements/{entitlement_id}", tag = "commercial", request_body = EntitlementChange,
    params(("entitlement_id" = String, Path, description = "The entitlement's id")),
    responses((status = 200, body = EntitlementView), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn update_entitlement(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(entitlement_id): Path<String>,
    ApiJson(change): ApiJson<EntitlementChange>,
) -> Result<axum::Json<EntitlementView>, ApiError> {
    caller.require(&state, Permission::ManageCommercial).await?;
    let scope = caller.scope(&state).await?;
    // Visibility first: an entitlement the caller may not see is not found, whatever was sent.
    state
        .store
        .entitlement(&scope, &entitlement_id)
        .await
        .map_err(or_not_found("entitlement"))?;
    let status = EntitlementStatus::parse(&change.status)
        .map_err(|reason| ApiError::field("status", reason))?;
    let entitlement = state
        .store
        .set_entitlement_status(&scope, &entitlement_id, status)
        .await
        .map_err(or_not_found("entitlement"))?;
    Ok(axum::Json(entitlement.into()))
}
