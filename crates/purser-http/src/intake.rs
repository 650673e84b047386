//! Where the marketplaces push to Purser: Azure's SaaS webhook, AWS's SNS
//! notifications, Google's Pub/Sub push, and the landing pages buyers reach with a
//! token. Each delivery is stored before the answer,
//! so an acknowledged one is never lost; reading it and acting on it belong to the
//! application's desks ([`NotificationIntake`]), which the server is given at start.
//!
//! These routes are public (the marketplaces and buyers have no Purser session). That
//! is safe because a delivery only ever prompts Purser to re-read the subscription
//! from the marketplace's API: what it says is never acted on by itself. Where the
//! marketplace signs its calls (Microsoft's and Google's JWTs, SNS's signature) the
//! desk checks that first, so a stranger cannot even fill the inbox.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use purser_core::Marketplace;
use purser_store::Store;
use purser_store::subscriptions::{Channel, NewNotification, NotificationStatus, Stored};
use sha2::{Digest, Sha256};

use crate::pages::{Chrome, render};
use crate::state::AppState;

/// Why a delivery could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The marketplace's subscriptions are not configured here.
    #[error("{0} subscriptions are not configured")]
    NotConfigured(Marketplace),
    /// The marketplace refused what the buyer brought (an expired landing token).
    #[error("{0}")]
    Refused(String),
    /// The marketplace or the database did not answer; try again.
    #[error("{0}")]
    Unavailable(String),
    /// The delivery did not prove it is the marketplace's (its JWT); nothing was stored.
    #[error("{0}")]
    Unauthenticated(String),
}

/// The application's side of intake: reading a pushed body with its marketplace's
/// desk, and resolving a landing-page token.
#[async_trait::async_trait]
pub trait NotificationIntake: Send + Sync {
    /// Stores a delivery as its desk reads it (to act on, or kept aside with why),
    /// once the desk has checked who sent it from `authorization` (the request's
    /// `Authorization` header, where the marketplace signs its calls).
    async fn take(
        &self,
        store: &Store,
        marketplace: Marketplace,
        channel: Channel,
        authorization: Option<&str>,
        body: &str,
    ) -> Result<Stored, IntakeError>;
    /// Resolves a landing-page token to its subscription id and stores that the buyer
    /// landed, so the next run reads the subscription.
    async fn land(
        &self,
        store: &Store,
        marketplace: Marketplace,
        token: &str,
    ) -> Result<String, IntakeError>;
}

/// Stores what no desk can read (the marketplace is not configured here), keyed by
/// the body's digest so that redeliveries are stored once; it is shown, set aside.
async fn keep_unread(
    store: &Store,
    marketplace: Marketplace,
    channel: Channel,
    body: &str,
) -> Result<Stored, purser_store::StoreError> {
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    store
        .store_notification(NewNotification {
            marketplace,
            delivery_key: format!("sha256:{digest}"),
            channel,
            body: body.to_string(),
            kind: None,
            external_id: None,
            status: NotificationStatus::Unrecognised,
            error: Some(format!(
                "{marketplace} subscriptions are not configured: kept as delivered"
            )),
        })
        .await
}

/// Stores a pushed delivery through its marketplace's desk: 200 once stored (the
/// marketplaces want a fast answer), also when the marketplace is not configured here
/// (the delivery is then kept as delivered and shown, set aside, for a person); 400
/// when it is not the marketplace's (kept and shown too); 401 when its JWT does not
/// verify (nothing stored: it is not the marketplace's, and a stranger must not fill
/// the inbox); 503 only when it could not be stored, so that the marketplace tries
/// again.
async fn take_push(
    state: &AppState,
    marketplace: Marketplace,
    channel: Channel,
    headers: &HeaderMap,
    body: &str,
) -> Response {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let stored = match &state.intake {
        Some(intake) => match intake
            .take(&state.store, marketplace, channel, authorization, body)
            .await
        {
            Err(IntakeError::NotConfigured(_)) => {
                keep_unread(&state.store, marketplace, channel, body)
                    .await
                    .map(drop)
                    .map_err(|e| IntakeError::Unavailable(e.to_string()))
            }
            other => other.map(drop),
        },
        None => keep_unread(&state.store, marketplace, channel, body)
            .await
            .map(drop)
            .map_err(|e| IntakeError::Unavailable(e.to_string())),
    };
    match stored {
        Ok(()) => StatusCode::OK.into_response(),
        Err(IntakeError::Refused(reason)) => {
            tracing::warn!(%marketplace, %reason, "a delivery that is not the marketplace's was refused (kept)");
            (StatusCode::BAD_REQUEST, "refused: not the marketplace's").into_response()
        }
        Err(IntakeError::Unauthenticated(reason)) => {
            // The reason says which check failed; the token itself is never logged.
            tracing::warn!(%marketplace, %reason, "an unauthenticated delivery was refused (not stored)");
            (StatusCode::UNAUTHORIZED, "refused: not authenticated").into_response()
        }
        Err(error) => {
            tracing::warn!(%marketplace, %error, "a delivery could not be stored");
            (StatusCode::SERVICE_UNAVAILABLE, "not stored; try again").into_response()
        }
    }
}

/// `POST /hooks/azure/fulfillment`: Azure's SaaS webhook, its Entra ID JWT verified.
pub async fn azure_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    take_push(
        &state,
        Marketplace::Azure,
        Channel::Webhook,
        &headers,
        &body,
    )
    .await
}

/// `POST /hooks/aws/sns`: AWS Marketplace's SNS notifications (subscription and
/// entitlement topics), verified by their signature before they are stored as such.
pub async fn aws_sns(State(state): State<AppState>, headers: HeaderMap, body: String) -> Response {
    take_push(&state, Marketplace::Aws, Channel::Sns, &headers, &body).await
}

/// `POST /hooks/gcp/pubsub`: Procurement notifications pushed by a Pub/Sub push
/// subscription, its OIDC token verified; stored under the same key as when pulled.
/// Any 2xx acknowledges the message; anything else is redelivered with backoff
/// (https://cloud.google.com/pubsub/docs/push, read 2026-12-01).
pub async fn gcp_pubsub(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    take_push(&state, Marketplace::Gcp, Channel::Pubsub, &headers, &body).await
}

#[derive(Debug, serde::Deserialize)]
pub struct LandingQuery {
    #[serde(default)]
    pub token: String,
}

#[derive(Template)]
#[template(path = "landing.html")]
struct LandingPage {
    chrome: Chrome,
    marketplace: &'static str,
    subscription: Option<String>,
    problem: Option<String>,
}

/// `GET /register/azure?token=…`: where Azure sends a buyer after purchase.
pub async fn azure_landing(
    State(state): State<AppState>,
    Query(query): Query<LandingQuery>,
) -> Response {
    landing(&state, Marketplace::Azure, "Azure", &query.token).await
}

/// The form AWS posts a buyer with after subscribing.
#[derive(Debug, serde::Deserialize)]
pub struct AwsRegistration {
    #[serde(rename = "x-amzn-marketplace-token", default)]
    pub token: String,
}

/// `POST /register/aws`: where AWS sends a buyer after subscribing, with the
/// registration token in the form.
pub async fn aws_landing(
    State(state): State<AppState>,
    axum::Form(form): axum::Form<AwsRegistration>,
) -> Response {
    landing(&state, Marketplace::Aws, "AWS", &form.token).await
}

/// The token is resolved to the subscription; billing operations link it to the
/// buyer's account, and Purser approves or activates it where the marketplace asks.
async fn landing(
    state: &AppState,
    marketplace: Marketplace,
    label: &'static str,
    token: &str,
) -> Response {
    let token = token.trim();
    let (subscription, problem) = if token.is_empty() {
        (
            None,
            Some(format!(
                "The link has no marketplace token: open it again from the {label} console."
            )),
        )
    } else {
        match &state.intake {
            None => (
                None,
                Some(format!(
                    "{label} subscriptions are not set up here yet; please contact us."
                )),
            ),
            Some(intake) => match intake.land(&state.store, marketplace, token).await {
                Ok(id) => (Some(id), None),
                Err(IntakeError::Refused(reason)) => (
                    None,
                    Some(format!(
                        "{label} did not accept the token: {reason}. Open the link again from the {label} console."
                    )),
                ),
                Err(IntakeError::NotConfigured(_)) => (
                    None,
                    Some(format!(
                        "{label} subscriptions are not set up here yet; please contact us."
                    )),
                ),
                Err(error) => {
                    tracing::warn!(%error, "a landing token could not be resolved");
                    (
                        None,
                        Some(format!(
                            "We could not reach {label} just now; please try again in a minute."
                        )),
                    )
                }
            },
        }
    };
    let status = if problem.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = render(&LandingPage {
        chrome: Chrome::anonymous(),
        marketplace: label,
        subscription,
        problem,
    });
    (status, page).into_response()
}
