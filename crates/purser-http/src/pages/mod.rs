//! The server-rendered pages: sign-in, accounts, metering, marketplaces, the ERP export, CRM
//! hygiene, users, tokens, the audit log, jobs and the API reference. Plain HTML forms with a CSRF token each; no JavaScript
//! build step. Page handlers call the same store methods and shared helpers as the
//! API, so a page can never see more than the API would show the same person.

mod accounts;
mod admin;
mod billing;
mod docs;
mod marketplace;
mod metering;
mod signin;
mod subscriptions;

use askama::Template;
use axum::http::{Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use purser_core::{FieldError, Permission, Principal};
use utoipa::openapi::OpenApi;

use crate::auth::PageCaller;
use crate::error::ApiError;
use crate::routes::{Access, Pages};

/// The frame around every page: navigation for the caller's roles.
pub struct Chrome {
    pub user: Option<String>,
    pub csrf: String,
    pub nav: Vec<NavLink>,
}

pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub active: bool,
}

impl Chrome {
    pub fn for_caller(caller: &PageCaller, current: &str) -> Chrome {
        Chrome::signed_in(
            &caller.user.display_name,
            &caller.principal,
            &caller.csrf_token,
            current,
        )
    }

    pub fn signed_in(
        display_name: &str,
        principal: &Principal,
        csrf: &str,
        current: &str,
    ) -> Chrome {
        let roles: Vec<&str> = principal.roles.iter().map(|r| r.as_str()).collect();
        Chrome {
            user: Some(format!("{display_name} · {}", roles.join(", "))),
            csrf: csrf.to_owned(),
            nav: nav(principal, current),
        }
    }

    pub fn anonymous() -> Chrome {
        Chrome {
            user: None,
            csrf: String::new(),
            nav: Vec::new(),
        }
    }
}

fn nav(principal: &Principal, current: &str) -> Vec<NavLink> {
    let links: [(&'static str, &'static str, Option<Permission>); 12] = [
        ("/accounts", "Accounts", Some(Permission::ReadAccounts)),
        ("/offers", "Offers", Some(Permission::ReadAccounts)),
        ("/metering", "Metering", Some(Permission::ReadMetering)),
        (
            "/marketplaces",
            "Marketplaces",
            Some(Permission::ReadMetering),
        ),
        (
            "/subscriptions",
            "Subscriptions",
            Some(Permission::ReadAccounts),
        ),
        ("/erp", "ERP export", Some(Permission::ExportInvoices)),
        (
            "/crm/hygiene",
            "CRM hygiene",
            Some(Permission::ReadAccounts),
        ),
        ("/audit", "Audit log", Some(Permission::ReadAudit)),
        ("/users", "Users", Some(Permission::ManageUsers)),
        ("/jobs", "Jobs", Some(Permission::ReadJobs)),
        ("/tokens", "API tokens", Some(Permission::ManageOwnTokens)),
        ("/docs/api", "API", None),
    ];
    links
        .into_iter()
        .filter(|(_, _, permission)| permission.is_none_or(|p| principal.can(p)))
        .map(|(href, label, _)| NavLink {
            href,
            label,
            active: current.starts_with(href),
        })
        .collect()
}

/// Renders a template, or the error page if it cannot be.
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "a page failed to render");
            ApiError::internal().into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    title: &'a str,
    message: &'a str,
    code: &'a str,
    details: &'a [FieldError],
    request_id: Option<&'a str>,
}

/// The HTML face of an [`ApiError`], framed for the signed-in person when there is one.
pub fn error_page(error: &ApiError, request_id: Option<&str>, chrome: Chrome) -> Response {
    let title = match error.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::UNAUTHORIZED => "Sign in needed",
        status if status.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    let page = ErrorPage {
        chrome,
        title,
        message: &error.message,
        code: error.code,
        details: &error.details,
        request_id,
    };
    let html = page
        .render()
        .unwrap_or_else(|_| format!("<h1>{title}</h1><p>{}</p>", error.code));
    (error.status, Html(html)).into_response()
}

/// After a successful form post: back to a page (303, so a reload does not resubmit).
pub fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// Every page and public route.
pub fn routes(pages: Pages, openapi: OpenApi) -> Pages {
    let spec = std::sync::Arc::new(openapi);
    let spec_for_docs = spec.clone();
    pages
        .add(
            Method::GET,
            "/healthz",
            Access::Public,
            get(|| async { "ok" }),
        )
        .add(Method::GET, "/readyz", Access::Public, get(readyz))
        .add(
            Method::POST,
            "/hooks/azure/fulfillment",
            Access::Public,
            post(crate::intake::azure_webhook),
        )
        .add(
            Method::GET,
            "/register/azure",
            Access::Public,
            get(crate::intake::azure_landing),
        )
        .add(
            Method::POST,
            "/hooks/aws/sns",
            Access::Public,
            post(crate::intake::aws_sns),
        )
        .add(
            Method::POST,
            "/hooks/gcp/pubsub",
            Access::Public,
            post(crate::intake::gcp_pubsub),
        )
        .add(
            Method::POST,
            "/register/aws",
            Access::Public,
            post(crate::intake::aws_landing),
        )
        .add(
            Method::GET,
            "/metrics",
            Access::Public,
            get(crate::metrics::render),
        )
        .add(
            Method::GET,
            "/openapi.json",
            Access::Public,
            get(move || {
                let spec = spec.clone();
                async move { axum::Json(spec.as_ref().clone()) }
            }),
        )
        .add(
            Method::GET,
            "/docs/api",
            Access::Public,
            get(move || {
                let spec = spec_for_docs.clone();
                async move { docs::reference(&spec) }
            }),
        )
        .add(
            Method::GET,
            "/static/app.css",
            Access::Public,
            get(stylesheet),
        )
        .add(Method::GET, "/signin", Access::Public, get(signin::form))
        .add(
            Method::POST,
            "/signin",
            Access::Public,
            post(signin::submit),
        )
        .add(
            Method::POST,
            "/signout",
            Access::Session,
            post(signin::sign_out),
        )
        .add(Method::GET, "/", Access::Session, get(home))
        .add(
            Method::GET,
            "/accounts",
            Access::Session,
            get(accounts::list),
        )
        .add(
            Method::GET,
            "/accounts/new",
            Access::Session,
            get(accounts::new_form),
        )
        .add(
            Method::POST,
            "/accounts/new",
            Access::Session,
            post(accounts::create),
        )
        .add(
            Method::GET,
            "/accounts/{account_id}",
            Access::Session,
            get(accounts::show),
        )
        .add(
            Method::GET,
            "/accounts/{account_id}/edit",
            Access::Session,
            get(accounts::edit_form),
        )
        .add(
            Method::POST,
            "/accounts/{account_id}/edit",
            Access::Session,
            post(accounts::update),
        )
        .add(
            Method::GET,
            "/offers",
            Access::Session,
            get(accounts::offers),
        )
        .add(
            Method::POST,
            "/accounts/{account_id}/entitlements",
            Access::Session,
            post(accounts::create_entitlement),
        )
        .add(
            Method::POST,
            "/entitlements/{entitlement_id}/status",
            Access::Session,
            post(accounts::set_entitlement_status),
        )
        .add(
            Method::GET,
            "/metering",
            Access::Session,
            get(metering::page),
        )
        .add(
            Method::GET,
            "/marketplaces",
            Access::Session,
            get(marketplace::overview),
        )
        .add(
            Method::GET,
            "/marketplaces/reconcile",
            Access::Session,
            get(marketplace::reconcile),
        )
        .add(
            Method::GET,
            "/marketplaces/{marketplace}/records",
            Access::Session,
            get(marketplace::records),
        )
        .add(
            Method::GET,
            "/subscriptions",
            Access::Session,
            get(subscriptions::list),
        )
        .add(
            Method::GET,
            "/subscriptions/{subscription_id}",
            Access::Session,
            get(subscriptions::detail),
        )
        .add(
            Method::POST,
            "/subscriptions/{subscription_id}/link",
            Access::Session,
            post(subscriptions::link),
        )
        .add(
            Method::GET,
            "/crm/hygiene",
            Access::Session,
            get(billing::hygiene),
        )
        .add(Method::GET, "/erp", Access::Session, get(billing::export))
        .add(Method::GET, "/users", Access::Session, get(admin::users))
        .add(
            Method::POST,
            "/users",
            Access::Session,
            post(admin::create_user),
        )
        .add(
            Method::GET,
            "/users/{user_id}",
            Access::Session,
            get(admin::edit_user),
        )
        .add(
            Method::POST,
            "/users/{user_id}",
            Access::Session,
            post(admin::update_user),
        )
        .add(
            Method::POST,
            "/users/{user_id}/disable",
            Access::Session,
            post(admin::disable_user),
        )
        .add(
            Method::POST,
            "/users/{user_id}/enable",
            Access::Session,
            post(admin::enable_user),
        )
        .add(Method::GET, "/tokens", Access::Session, get(admin::tokens))
        .add(
            Method::POST,
            "/tokens",
            Access::Session,
            post(admin::create_token),
        )
        .add(
            Method::POST,
            "/tokens/{token_id}/revoke",
            Access::Session,
            post(admin::revoke_token),
        )
        .add(Method::GET, "/audit", Access::Session, get(admin::audit))
        .add(Method::GET, "/jobs", Access::Session, get(admin::jobs))
}

async fn home(_caller: PageCaller) -> Response {
    see_other("/accounts")
}

async fn readyz(axum::extract::State(state): axum::extract::State<crate::AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database does not answer",
            )
            .into_response()
        }
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

/// A form that carries nothing but its CSRF token (sign out, revoke, disable).
#[derive(Debug, serde::Deserialize)]
pub struct NoFields {}

/// One `<option>` of a `<select>`.
pub struct SelectOption {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// The options for `values`, with `selected` marked.
pub(crate) fn options<S: AsRef<str>>(
    values: impl IntoIterator<Item = S>,
    selected: &str,
) -> Vec<SelectOption> {
    values
        .into_iter()
        .map(|v| SelectOption {
            selected: v.as_ref() == selected,
            value: v.as_ref().to_owned(),
            label: v.as_ref().to_owned(),
        })
        .collect()
}

/// Splits `a, b ,c` into trimmed, non-empty items.
pub(crate) fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An instant as people on the pages read it: UTC, to the second.
pub(crate) fn when(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}
