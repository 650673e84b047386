//! The JSON API under `/v1`. Each handler carries its OpenAPI description
//! (`#[utoipa::path]`), and the router is built from the same handlers, so the
//! document at `/openapi.json` cannot drift from what is served.

pub mod accounts;
pub mod audit;
pub mod commercial;
pub mod crm;
pub mod erp;
pub mod identity;
pub mod marketplace;
pub mod metering;
pub mod ops;

use serde::Serialize;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// A page of results. Pass `next_cursor` back as `cursor` for the next page; it is
/// absent on the last.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T, U: From<T>> From<purser_store::Page<T>> for Page<U> {
    fn from(page: purser_store::Page<T>) -> Self {
        Page {
            items: page.items.into_iter().map(U::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// A table as CSV (RFC 4180: quoting done by the `csv` crate), header first: every
/// CSV Purser writes goes through here.
pub fn csv_table(
    columns: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<String, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(columns)?;
    for row in rows {
        writer.write_record(&row)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Purser API",
        description = "Metering, billing and operations for a product sold through the cloud marketplaces. \
            Authenticate with an API token: `Authorization: Bearer psr_…`. Every failure has the shape \
            `{\"error\": {status, code, message, details, request_id}}`. Lists are paged with `cursor` and `limit`.",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token created on the Tokens page or with POST /v1/tokens",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every API route, with its description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::list_accounts, accounts::create_account))
        .routes(routes!(accounts::get_account, accounts::update_account))
        .routes(routes!(audit::list_audit))
        .routes(routes!(audit::audit_checkpoint))
        .routes(routes!(identity::me))
        .routes(routes!(identity::list_users, identity::create_user))
        .routes(routes!(identity::update_user))
        .routes(routes!(identity::list_tokens, identity::create_token))
        .routes(routes!(identity::revoke_token))
        .routes(routes!(metering::ingest_events))
        .routes(routes!(metering::list_meters, metering::create_meter))
        .routes(routes!(metering::list_closed_hours))
        .routes(routes!(metering::list_quarantine))
        .routes(routes!(metering::replay_quarantine))
        .routes(routes!(metering::account_usage))
        .routes(routes!(metering::account_evidence))
        .routes(routes!(marketplace::hours))
        .routes(routes!(marketplace::records))
        .routes(routes!(marketplace::reconcile))
        .routes(routes!(
            identity::list_boundaries,
            identity::create_boundary
        ))
        .routes(routes!(ops::list_jobs))
        .routes(routes!(erp::invoices))
        .routes(routes!(erp::exports))
        .routes(routes!(crm::import))
        .routes(routes!(crm::export))
        .routes(routes!(crm::findings))
        .routes(routes!(commercial::list_offers, commercial::create_offer))
        .routes(routes!(commercial::get_offer))
        .routes(routes!(
            commercial::list_entitlements,
            commercial::create_entitlement
        ))
        .routes(routes!(
            commercial::get_entitlement,
            commercial::update_entitlement
        ))
}
