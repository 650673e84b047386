//! Purser's HTTP surface: the JSON API under `/v1` (with its OpenAPI document), the
//! server-rendered pages, health, readiness and metrics.
//!
//! Handlers are thin: they authenticate ([`auth`]), check a permission, build the
//! caller's scope, call the store, and shape the answer. Rules live in `purser-core`,
//! persistence and visibility in `purser-store`. Every route is listed in the
//! [`routes::RouteTable`], which the route × role × boundary test walks.

pub mod api;
pub mod auth;
pub mod error;
pub mod extract;
pub mod intake;
pub mod metrics;
pub mod pages;
pub mod routes;
pub mod state;

pub use routes::{Access, RouteInfo, build};
pub use state::{AppState, HttpSettings};

/// The header that carries each request's id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
