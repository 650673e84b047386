//! The route table: every route Purser serves, with who may reach it.
//!
//! API routes come from the OpenAPI router (each handler describes itself); page and
//! public routes are added through [`Pages`], which records each one as it registers
//! it. [`build`] returns the router together with the table, so a route cannot be
//! served without being listed, and the route × role × boundary test covers it.

use axum::Router;
use axum::http::{HeaderName, Method};
use axum::routing::MethodRouter;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::OpenApi;

use crate::state::AppState;

/// Who may reach a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health, metrics, the API description, sign-in, static files. None of
    /// these return account data.
    Public,
    /// A bearer token (the JSON API).
    Token,
    /// A signed-in session (the pages).
    Session,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    /// With axum's parameters: `/v1/accounts/{account_id}`.
    pub path: String,
    pub access: Access,
}

/// Registers routes and remembers them.
pub struct Pages {
    router: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Pages {
    fn new() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    pub fn add(
        mut self,
        method: Method,
        path: &str,
        access: Access,
        handler: MethodRouter<AppState>,
    ) -> Self {
        self.table.push(RouteInfo {
            method,
            path: path.to_owned(),
            access,
        });
        self.router = self.router.route(path, handler);
        self
    }
}

/// The whole application, its route table and its OpenAPI document.
pub fn build(state: AppState) -> (Router, Vec<RouteInfo>, OpenApi) {
    let (api_router, openapi) = crate::api::router().split_for_parts();
    let mut table = api_table(&openapi);
    let pages = crate::pages::routes(Pages::new(), openapi.clone());
    table.extend(pages.table);
    let request_id = HeaderName::from_static(crate::REQUEST_ID_HEADER);
    let max_body = state.settings.max_body_bytes;
    let router = api_router
        .merge(pages.router)
        .fallback(|| async { crate::error::ApiError::for_status(axum::http::StatusCode::NOT_FOUND) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::error::error_shape))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                let id = request
                    .headers()
                    .get(crate::REQUEST_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(axum::middleware::from_fn(drop_unusable_request_id))
        .with_state(state);
    (router, table, openapi)
}

/// A caller's own request id is kept, so their logs and ours line up, but only when it
/// is a plausible id: it lands in logs and the audit log, so it may not be a vehicle
/// for megabytes or control characters. Otherwise Purser makes its own.
async fn drop_unusable_request_id(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let usable = request.headers().get(crate::REQUEST_ID_HEADER).map(|v| {
        let bytes = v.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 128
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if usable == Some(false) {
        request.headers_mut().remove(crate::REQUEST_ID_HEADER);
    }
    next.run(request).await
}

fn api_table(openapi: &OpenApi) -> Vec<RouteInfo> {
    let mut table = Vec::new();
    for (path, item) in &openapi.paths.paths {
        let operations = [
            (Method::GET, item.get.is_some()),
            (Method::POST, item.post.is_some()),
            (Method::PUT, item.put.is_some()),
            (Method::PATCH, item.patch.is_some()),
            (Method::DELETE, item.delete.is_some()),
        ];
        for (method, present) in operations {
            if present {
                table.push(RouteInfo {
                    method,
                    path: path.clone(),
                    access: Access::Token,
                });
            }
        }
    }
    table
}
