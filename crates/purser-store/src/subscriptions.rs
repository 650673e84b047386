//! Subscriptions from the marketplaces: the notification inbox, each buyer's
//! subscription, the entitlement segments it governs, and its lifecycle.
//!
//! - **Nothing delivered is lost, nothing is done twice**: a notification is stored
//!   (once per delivery key) before its delivery is acknowledged, whatever it holds;
//!   processing marks it done in the transaction that acts on it.
//! - **Decisions come from the marketplace's current word** (a re-read snapshot), taken
//!   by `purser_core::marketplace::subscription::decide` in one transaction with the
//!   entitlement changes, under the metering head's lock, so that a change applies
//!   from an hour that is really still open and closing sees it before rating.
//! - Every change to an entitlement is audited in that transaction; the lifecycle
//!   (`subscription_events`) is append-only.

use std::collections::HashMap;

use jiff::Timestamp;
use purser_core::Marketplace;
use purser_core::audit::Actor;
use purser_core::commercial::EntitlementStatus;
use purser_core::marketplace::Binding;
use purser_core::marketplace::subscription::{
    Decision, EntitlementChange, PlanTerms, Segment, SellerCall, Subscription,
    SubscriptionSnapshot, SubscriptionState, decide,
};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::audit::append;
use crate::db::{Handle, Row, Value};
use crate::{Store, StoreError, corrupt, from_micros, json_text, now_micros, opt_from_micros};

/// How a notification reached Purser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Google Cloud Pub/Sub (pull or push).
    Pubsub,
    /// Azure's SaaS webhook.
    Webhook,
    /// An AWS SNS delivery.
    Sns,
    /// The registration page a buyer landed on.
    Landing,
    /// Purser itself, after a person linked the subscription to an account: the next
    /// run re-reads it and makes the approval the marketplace waits for.
    Registration,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pubsub => "pubsub",
            Self::Webhook => "webhook",
            Self::Sns => "sns",
            Self::Landing => "landing",
            Self::Registration => "registration",
        }
    }
}

/// Where a stored notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    /// Stored, waiting to be processed (or retried).
    Received,
    Processed,
    /// Well formed, but of a kind Purser does not act on; kept and shown.
    Unrecognised,
    /// Could not be read; kept with the reason and shown.
    Malformed,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Processed => "processed",
            Self::Unrecognised => "unrecognised",
            Self::Malformed => "malformed",
        }
    }

    fn parse(value: &str) -> Result<Self, StoreError> {
        match value {
            "received" => Ok(Self::Received),
            "processed" => Ok(Self::Processed),
            "unrecognised" => Ok(Self::Unrecognised),
            "malformed" => Ok(Self::Malformed),
            other => Err(corrupt("marketplace_notifications.status", other)),
        }
    }
}

/// A notification as delivered, read as far as the intake could.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub marketplace: Marketplace,
    /// The marketplace's id of this delivery (Pub/Sub eventId, Azure operation id and
    /// action, SNS MessageId); a redelivery carries the same.
    pub delivery_key: String,
    pub channel: Channel,
    pub body: String,
    pub kind: Option<String>,
    pub external_id: Option<String>,
    /// `Received` for one to act on; `Unrecognised` or `Malformed` (with `error`) to keep.
    pub status: NotificationStatus,
    pub error: Option<String>,
}

/// What storing a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    /// True when this delivery key was already stored: nothing changed.
    pub duplicate: bool,
}

/// A stored notification.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub id: String,
    pub marketplace: Marketplace,
    pub delivery_key: String,
    pub channel: String,
    pub received_at: Timestamp,
    pub body: String,
    pub kind: Option<String>,
    pub external_id: Option<String>,
    pub status: NotificationStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub processed_at: Option<Timestamp>,
}

/// A subscription as Purser holds it, for processing and pages.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionRecord {
    pub id: String,
    pub subscription: Subscription,
    pub plan: Option<String>,
    pub quantity: Option<Decimal>,
    pub pending_plan: Option<String>,
    pub binding: Option<Binding>,
    pub term_end: Option<Timestamp>,
    pub effective_at: Option<Timestamp>,
    pub attention: Option<String>,
    pub buyer: Option<serde_json::Value>,
    pub updated_at: Timestamp,
}

/// One entry of a subscription's lifecycle.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionEvent {
    pub at: Timestamp,
    pub notification_id: Option<String>,
    /// `read`, `changed`, `call`, `call_failed`, `linked`.
    pub what: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub applied_from: Option<Timestamp>,
    pub detail: serde_json::Value,
}

const NOTIFICATION_COLUMNS: &str = "id, marketplace, delivery_key, channel, received_at, body, kind, external_id, status, attempts, last_error, processed_at";

fn notification_from_row(row: &Row) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: row.text(0)?,
        marketplace: marketplace(&row.text(1)?)?,
        delivery_key: row.text(2)?,
        channel: row.text(3)?,
        received_at: from_micros(row.int(4)?)?,
        body: row.text(5)?,
        kind: row.opt_text(6)?,
        external_id: row.opt_text(7)?,
        status: NotificationStatus::parse(&row.text(8)?)?,
        attempts: row.int(9)?,
        last_error: row.opt_text(10)?,
        processed_at: opt_from_micros(row.opt_int(11)?)?,
    })
}

const SUBSCRIPTION_COLUMNS: &str = "id, marketplace, external_id, account_id, state, plan_id, quantity, pending_plan, binding, term_end, effective_at, entitlement_id, segment_plan, segment_quantity, segment_start, segment_status, segment_open, attention, buyer, updated_at";

fn marketplace(value: &str) -> Result<Marketplace, StoreError> {
    Marketplace::parse(value).map_err(|e| corrupt("marketplace", e))
}

fn opt_decimal(value: Option<String>, what: &str) -> Result<Option<Decimal>, StoreError> {
    value
        .map(|text| text.parse::<Decimal>().map_err(|e| corrupt(what, e)))
        .transpose()
}

fn subscription_from_row(row: &Row) -> Result<SubscriptionRecord, StoreError> {
    let state = SubscriptionState::parse(&row.text(4)?)
        .map_err(|e| corrupt("marketplace_subscriptions.state", e))?;
    let segment = match row.opt_text(11)? {
        Some(entitlement_id) => Some(Segment {
            entitlement_id,
            plan: row.opt_text(12)?.unwrap_or_default(),
            quantity: opt_decimal(
                row.opt_text(13)?,
                "marketplace_subscriptions.segment_quantity",
            )?,
            start: from_micros(row.opt_int(14)?.unwrap_or_default())?,
            status: EntitlementStatus::parse(&row.opt_text(15)?.unwrap_or_default())
                .map_err(|e| corrupt("marketplace_subscriptions.segment_status", e))?,
            open: row.opt_int(16)?.unwrap_or(0) == 1,
        }),
        None => None,
    };
    let json_column = |index: usize, what: &str| -> Result<Option<serde_json::Value>, StoreError> {
        row.opt_text(index)?
            .map(|text| serde_json::from_str(&text).map_err(|e| corrupt(what, e)))
            .transpose()
    };
    let binding = match row.opt_text(8)? {
        Some(text) => Some(
            serde_json::from_str::<Binding>(&text)
                .map_err(|e| corrupt("marketplace_subscriptions.binding", e))?,
        ),
        None => None,
    };
    Ok(SubscriptionRecord {
        id: row.text(0)?,
        subscription: Subscription {
            marketplace: marketplace(&row.text(1)?)?,
            external_id: row.text(2)?,
            state,
            account_id: row.opt_text(3)?,
            segment,
        },
        plan: row.opt_text(5)?,
        quantity: opt_decimal(row.opt_text(6)?, "marketplace_subscriptions.quantity")?,
        pending_plan: row.opt_text(7)?,
        binding,
        term_end: opt_from_micros(row.opt_int(9)?)?,
        effective_at: opt_from_micros(row.opt_int(10)?)?,
        attention: row.opt_text(17)?,
        buyer: json_column(18, "marketplace_subscriptions.buyer")?,
        updated_at: from_micros(row.int(19)?)?,
    })
}

/// The end given to a segment that lasts until the marketplace ends it.
pub fn open_ended() -> Timestamp {
    // 9999-01-01T00:00:00Z, well inside jiff's range.
    Timestamp::from_second(253_370_764_800).unwrap_or(Timestamp::MAX)
}

fn opt_text_value(value: Option<&str>) -> Value {
    value.map_or(Value::Null, Into::into)
}

fn opt_instant(value: Option<Timestamp>) -> Value {
    value.map_or(Value::Null, |t| Value::Int(t.as_microsecond()))
}

impl Store {
    /// Says what Purser sells under a marketplace plan id (replacing what it said).
    pub async fn set_marketplace_plan(
        &self,
        actor: &Actor,
        marketplace: Marketplace,
        plan_id: &str,
        terms: &PlanTerms,
    ) -> Result<(), StoreError> {
        self.offer(&terms.offer_id).await?;
        let mut tx = self.db.begin().await?;
        tx.execute(
            "INSERT INTO marketplace_plans (marketplace, plan_id, offer_id, commitments, per_quantity, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (marketplace, plan_id) DO UPDATE SET offer_id = excluded.offer_id, \
             commitments = excluded.commitments, per_quantity = excluded.per_quantity, updated_at = excluded.updated_at",
            &[
                marketplace.as_str().into(),
                plan_id.into(),
                (&terms.offer_id).into(),
                json_text(&terms.commitments)?.into(),
                Value::Int(i64::from(terms.per_quantity)),
                Value::Int(now_micros().as_microsecond()),
            ],
        )
        .await?;
        append(
            &mut tx,
            actor
                .draft("marketplace_plan.set")
                .target(format!("{}:{plan_id}", marketplace.as_str()))
                .details(json!({ "after": terms })),
        )
        .await?;
        tx.commit().await
    }

    /// What Purser sells under each plan id of `marketplace`.
    pub async fn marketplace_plans(
        &self,
        marketplace: Marketplace,
    ) -> Result<HashMap<String, PlanTerms>, StoreError> {
        let mut handle = self.db.read().await?;
        plans_in(&mut handle, marketplace).await
    }

    /// Stores a delivered notification, once per delivery key. Returns whether it was
    /// already there; either way the delivery may now be acknowledged.
    pub async fn store_notification(&self, new: NewNotification) -> Result<Stored, StoreError> {
        let id = Uuid::now_v7().to_string();
        let now = now_micros().as_microsecond();
        let mut tx = self.db.begin().await?;
        let inserted = insert_notification(&mut tx, &id, now, &new).await?;
        let stored = if inserted == 1 {
            Stored {
                id,
                duplicate: false,
            }
        } else {
            let row = tx
                .query_one(
                    "SELECT id FROM marketplace_notifications WHERE marketplace = $1 AND delivery_key = $2",
                    &[new.marketplace.as_str().into(), (&new.delivery_key).into()],
                )
                .await?;
            Stored {
                id: row.text(0)?,
                duplicate: true,
            }
        };
        tx.commit().await?;
        Ok(stored)
    }

    /// Notifications waiting to be processed at `now`, oldest first.
    pub async fn pending_notifications(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                &format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM marketplace_notifications \
                     WHERE status = 'received' AND next_attempt_at <= $1 ORDER BY received_at, id LIMIT $2"
                ),
                &[Value::Int(now.as_microsecond()), Value::Int(limit as i64)],
            )
            .await?;
        rows.iter().map(notification_from_row).collect()
    }

    /// The most recent notifications (newest first), optionally of one status.
    pub async fn notifications(
        &self,
        status: Option<NotificationStatus>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = match status {
            Some(status) => {
                handle
                    .query(
                        &format!(
                            "SELECT {NOTIFICATION_COLUMNS} FROM marketplace_notifications WHERE status = $1 \
                             ORDER BY received_at DESC, id DESC LIMIT $2"
                        ),
                        &[status.as_str().into(), Value::Int(limit as i64)],
                    )
                    .await?
            }
            None => {
                handle
                    .query(
                        &format!(
                            "SELECT {NOTIFICATION_COLUMNS} FROM marketplace_notifications \
                             ORDER BY received_at DESC, id DESC LIMIT $1"
                        ),
                        &[Value::Int(limit as i64)],
                    )
                    .await?
            }
        };
        rows.iter().map(notification_from_row).collect()
    }

    /// A notification could not be processed now (the marketplace did not answer the
    /// re-read): it stays received and is tried again at `retry_at`.
    pub async fn notification_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "UPDATE marketplace_notifications SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 \
             WHERE id = $3 AND status = 'received'",
            &[error.into(), Value::Int(retry_at.as_microsecond()), id.into()],
        )
        .await?;
        tx.commit().await
    }

    /// A notification read but not acted on (unknown kind, unknown subscription): kept,
    /// with why, for a person.
    pub async fn notification_set_aside(
        &self,
        id: &str,
        status: NotificationStatus,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "UPDATE marketplace_notifications SET status = $1, last_error = $2, processed_at = $3, attempts = attempts + 1 \
             WHERE id = $4 AND status = 'received'",
            &[
                status.as_str().into(),
                reason.into(),
                Value::Int(now_micros().as_microsecond()),
                id.into(),
            ],
        )
        .await?;
        tx.commit().await
    }

    /// A subscription by its marketplace id, for processing (no scope: the processor
    /// acts for the marketplace, and shows nothing to anyone).
    pub async fn subscription_for_processing(
        &self,
        marketplace: Marketplace,
        external_id: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        let mut handle = self.db.read().await?;
        subscription_in(&mut handle, marketplace, external_id).await
    }

    /// Acts on a fresh read of a subscription, in one transaction: decides, changes the
    /// entitlement segments from the right hour, records the subscription and its
    /// lifecycle, and marks the notification that prompted it processed. Returns the
    /// decision, whose seller call (if any) the caller makes next.
    pub async fn settle_subscription(
        &self,
        actor: &Actor,
        marketplace: Marketplace,
        external_id: &str,
        snapshot: &SubscriptionSnapshot,
        notification_id: Option<&str>,
    ) -> Result<Decision, StoreError> {
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        // The metering head's lock: closing cannot close an hour while this decides
        // from which hour a change applies.
        let first_open = crate::metering::bump_catalogue(&mut tx)
            .await?
            .unwrap_or(Timestamp::MIN);
        let plans = plans_in(&mut tx, marketplace).await?;
        let (id, current) = match subscription_in(&mut tx, marketplace, external_id).await? {
            Some(record) => (record.id, record.subscription),
            None => {
                let id = Uuid::now_v7().to_string();
                tx.execute(
                    "INSERT INTO marketplace_subscriptions (id, marketplace, external_id, state, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5)",
                    &[
                        (&id).into(),
                        marketplace.as_str().into(),
                        external_id.into(),
                        SubscriptionState::Requested.as_str().into(),
                        Value::Int(now.as_microsecond()),
                    ],
                )
                .await?;
                let subscription = Subscription {
                    marketplace,
                    external_id: external_id.to_string(),
                    state: SubscriptionState::Requested,
                    account_id: None,
                    segment: None,
                };
                (id, subscription)
            }
        };
        let decision = decide(
            &current,
            snapshot,
            &|plan: &str| plans.get(plan).cloned(),
            first_open,
        );
        let segment = match &decision.change {
            Some(change) => Some(
                apply_change(&mut tx, actor, &id, &current, snapshot, change, &plans, now).await?,
            ),
            None => current.segment.clone(),
        };
        // The binding the marketplace gives follows the open segment.
        if let (Some(segment), Some(binding)) = (&segment, &snapshot.binding)
            && segment.open
        {
            tx.execute(
                "UPDATE entitlements SET marketplace_binding = $1 WHERE id = $2 \
                 AND (marketplace_binding IS NULL OR marketplace_binding <> $1)",
                &[json_text(binding)?.into(), (&segment.entitlement_id).into()],
            )
            .await?;
        }
        tx.execute(
            "UPDATE marketplace_subscriptions SET state = $1, plan_id = $2, quantity = $3, pending_plan = $4, binding = $5, \
             term_end = $6, effective_at = $7, entitlement_id = $8, segment_plan = $9, segment_quantity = $10, \
             segment_start = $11, segment_status = $12, segment_open = $13, attention = $14, updated_at = $15 WHERE id = $16",
            &[
                decision.state.as_str().into(),
                (&snapshot.plan).into(),
                opt_text_value(snapshot.quantity.map(|q| q.to_string()).as_deref()),
                opt_text_value(snapshot.pending_plan.as_deref()),
                match &snapshot.binding {
                    Some(binding) => json_text(binding)?.into(),
                    None => Value::Null,
                },
                opt_instant(snapshot.term_end),
                Value::Int(snapshot.effective_at.as_microsecond()),
                opt_text_value(segment.as_ref().map(|s| s.entitlement_id.as_str())),
                opt_text_value(segment.as_ref().map(|s| s.plan.as_str())),
                opt_text_value(
                    segment
                        .as_ref()
                        .and_then(|s| s.quantity)
                        .map(|q| q.to_string())
                        .as_deref(),
                ),
                opt_instant(segment.as_ref().map(|s| s.start)),
                opt_text_value(segment.as_ref().map(|s| s.status.as_str())),
                segment
                    .as_ref()
                    .map_or(Value::Null, |s| Value::Int(i64::from(s.open))),
                opt_text_value(decision.attention.as_deref()),
                Value::Int(now.as_microsecond()),
                (&id).into(),
            ],
        )
        .await?;
        let what = if decision.change.is_some() || decision.state != current.state {
            "changed"
        } else {
            "read"
        };
        append_event(
            &mut tx,
            &id,
            now,
            notification_id,
            what,
            Some(current.state.as_str()),
            Some(decision.state.as_str()),
            decision.change.as_ref().map(EntitlementChange::from),
            json!({ "snapshot": snapshot, "decision": decision }),
        )
        .await?;
        if let Some(notification_id) = notification_id {
            tx.execute(
                "UPDATE marketplace_notifications SET status = 'processed', processed_at = $1, attempts = attempts + 1, \
                 last_error = NULL WHERE id = $2 AND status = 'received'",
                &[Value::Int(now.as_microsecond()), notification_id.into()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(decision)
    }

    /// Records a seller call made for a subscription and what the marketplace said.
    pub async fn record_seller_call(
        &self,
        marketplace: Marketplace,
        external_id: &str,
        call: &SellerCall,
        result: Result<(), &str>,
    ) -> Result<(), StoreError> {
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        let row = tx
            .query_one(
                "SELECT id, state FROM marketplace_subscriptions WHERE marketplace = $1 AND external_id = $2",
                &[marketplace.as_str().into(), external_id.into()],
            )
            .await?;
        let (id, state) = (row.text(0)?, row.text(1)?);
        let (what, detail) = match result {
            Ok(()) => ("call", json!({ "call": call })),
            Err(error) => ("call_failed", json!({ "call": call, "error": error })),
        };
        append_event(
            &mut tx,
            &id,
            now,
            None,
            what,
            Some(&state),
            Some(&state),
            None,
            detail,
        )
        .await?;
        tx.commit().await
    }

    /// Links a subscription to the Purser account the buyer belongs to (registration),
    /// with what the buyer gave. The linking person must see the account; linking
    /// twice to another account is refused (a subscription bills one account).
    pub async fn link_subscription(
        &self,
        scope: &purser_core::AccountScope,
        marketplace: Marketplace,
        external_id: &str,
        account_id: &str,
        buyer: serde_json::Value,
    ) -> Result<(), StoreError> {
        let account = self.account(scope, account_id).await?;
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        let row = tx
            .query_opt(
                "SELECT id, account_id, state FROM marketplace_subscriptions WHERE marketplace = $1 AND external_id = $2",
                &[marketplace.as_str().into(), external_id.into()],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        let (id, linked, state) = (row.text(0)?, row.opt_text(1)?, row.text(2)?);
        match linked {
            Some(existing) if existing == account.id.0 => {
                tx.commit().await?;
                return Ok(());
            }
            Some(_) => {
                return Err(StoreError::Conflict {
                    field: Some("account_id".into()),
                    message: format!(
                        "subscription {external_id} is already linked to another account"
                    ),
                });
            }
            None => {}
        }
        tx.execute(
            "UPDATE marketplace_subscriptions SET account_id = $1, buyer = $2, updated_at = $3 WHERE id = $4",
            &[
                (&account.id.0).into(),
                json_text(&buyer)?.into(),
                Value::Int(now.as_microsecond()),
                (&id).into(),
            ],
        )
        .await?;
        append_event(
            &mut tx,
            &id,
            now,
            None,
            "linked",
            Some(&state),
            Some(&state),
            None,
            json!({ "account_id": account.id.0, "buyer": buyer }),
        )
        .await?;
        // Durable like any delivery: the next run re-reads the subscription and
        // approves it, whichever process runs it.
        insert_notification(
            &mut tx,
            &Uuid::now_v7().to_string(),
            now.as_microsecond(),
            &NewNotification {
                marketplace,
                delivery_key: format!("linked:{id}"),
                channel: Channel::Registration,
                body: json_text(&json!({ "linked_to": account.id.0, "by": scope.actor.name }))?,
                kind: Some("linked".into()),
                external_id: Some(external_id.to_string()),
                status: NotificationStatus::Received,
                error: None,
            },
        )
        .await?;
        append(
            &mut tx,
            scope
                .actor
                .draft("subscription.link")
                .account(&account.id.0, account.fields.boundary.as_str())
                .target(&id)
                .details(
                    json!({ "marketplace": marketplace.as_str(), "external_id": external_id }),
                ),
        )
        .await?;
        tx.commit().await
    }

    /// A subscription's lifecycle, oldest first.
    pub async fn subscription_events(
        &self,
        subscription_id: &str,
    ) -> Result<Vec<SubscriptionEvent>, StoreError> {
        let mut handle = self.db.read().await?;
        let rows = handle
            .query(
                "SELECT at, notification_id, what, from_state, to_state, applied_from, detail FROM subscription_events \
                 WHERE subscription_id = $1 ORDER BY at, id",
                &[subscription_id.into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SubscriptionEvent {
                    at: from_micros(row.int(0)?)?,
                    notification_id: row.opt_text(1)?,
                    what: row.text(2)?,
                    from_state: row.opt_text(3)?,
                    to_state: row.opt_text(4)?,
                    applied_from: opt_from_micros(row.opt_int(5)?)?,
                    detail: serde_json::from_str(&row.text(6)?)
                        .map_err(|e| corrupt("subscription_events.detail", e))?,
                })
            })
            .collect()
    }
}

async fn subscription_in(
    handle: &mut Handle,
    marketplace: Marketplace,
    external_id: &str,
) -> Result<Option<SubscriptionRecord>, StoreError> {
    let row = handle
        .query_opt(
            &format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM marketplace_subscriptions WHERE marketplace = $1 AND external_id = $2"
            ),
            &[marketplace.as_str().into(), external_id.into()],
        )
        .await?;
    row.as_ref().map(subscription_from_row).transpose()
}

/// Stores a notification unless its delivery key is already there; returns the rows
/// inserted (0 for a redelivery).
async fn insert_notification(
    tx: &mut Handle,
    id: &str,
    received_at: i64,
    new: &NewNotification,
) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO marketplace_notifications (id, marketplace, delivery_key, channel, received_at, body, kind, external_id, status, attempts, next_attempt_at, last_error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $5, $10) \
         ON CONFLICT (marketplace, delivery_key) DO NOTHING",
        &[
            id.into(),
            new.marketplace.as_str().into(),
            (&new.delivery_key).into(),
            new.channel.as_str().into(),
            Value::Int(received_at),
            (&new.body).into(),
            opt_text_value(new.kind.as_deref()),
            opt_text_value(new.external_id.as_deref()),
            new.status.as_str().into(),
            opt_text_value(new.error.as_deref()),
        ],
    )
    .await
}

async fn plans_in(
    handle: &mut Handle,
    marketplace: Marketplace,
) -> Result<HashMap<String, PlanTerms>, StoreError> {
    let rows = handle
        .query(
            "SELECT plan_id, offer_id, commitments, per_quantity FROM marketplace_plans WHERE marketplace = $1",
            &[marketplace.as_str().into()],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.text(0)?,
                PlanTerms {
                    offer_id: row.text(1)?,
                    commitments: serde_json::from_str(&row.text(2)?)
                        .map_err(|e| corrupt("marketplace_plans.commitments", e))?,
                    per_quantity: row.int(3)? == 1,
                },
            ))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn append_event(
    tx: &mut Handle,
    subscription_id: &str,
    at: Timestamp,
    notification_id: Option<&str>,
    what: &str,
    from_state: Option<&str>,
    to_state: Option<&str>,
    applied_from: Option<Timestamp>,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO subscription_events (id, subscription_id, at, notification_id, what, from_state, to_state, applied_from, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            Uuid::now_v7().to_string().into(),
            subscription_id.into(),
            Value::Int(at.as_microsecond()),
            opt_text_value(notification_id),
            what.into(),
            opt_text_value(from_state),
            opt_text_value(to_state),
            opt_instant(applied_from),
            json_text(&detail)?.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Who a segment change is for, for the entitlement rows and their audit entries.
struct SegmentContext<'a> {
    actor: &'a Actor,
    subscription_id: &'a str,
    account_id: &'a str,
    boundary: String,
    binding: Option<&'a Binding>,
    plans: &'a HashMap<String, PlanTerms>,
    now: Timestamp,
}

impl SegmentContext<'_> {
    async fn close(
        &self,
        tx: &mut Handle,
        segment: &Segment,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        tx.execute(
            "UPDATE entitlements SET end_at = $1, updated_at = $2 WHERE id = $3",
            &[
                Value::Int(at.as_microsecond()),
                Value::Int(self.now.as_microsecond()),
                (&segment.entitlement_id).into(),
            ],
        )
        .await?;
        append(
            tx,
            self.actor
                .draft("entitlement.update")
                .account(self.account_id, &self.boundary)
                .target(&segment.entitlement_id)
                .details(
                    json!({ "after": { "end": at }, "subscription_id": self.subscription_id }),
                ),
        )
        .await?;
        Ok(())
    }

    async fn open(
        &self,
        tx: &mut Handle,
        from: Timestamp,
        status: EntitlementStatus,
        plan: &str,
        quantity: Option<Decimal>,
    ) -> Result<Segment, StoreError> {
        let terms = self.plans.get(plan).ok_or_else(|| {
            StoreError::Backend(format!(
                "plan `{plan}` is not mapped, yet a segment was decided"
            ))
        })?;
        let entitlement_id = Uuid::now_v7().to_string();
        let commitments = terms.commitments_for(quantity);
        tx.execute(
            "INSERT INTO entitlements (id, account_id, offer_id, start_at, end_at, status, commitments, created_at, updated_at, marketplace_binding, subscription_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)",
            &[
                (&entitlement_id).into(),
                self.account_id.into(),
                (&terms.offer_id).into(),
                Value::Int(from.as_microsecond()),
                Value::Int(open_ended().as_microsecond()),
                status.as_str().into(),
                json_text(&commitments)?.into(),
                Value::Int(self.now.as_microsecond()),
                match self.binding {
                    Some(binding) => json_text(binding)?.into(),
                    None => Value::Null,
                },
                self.subscription_id.into(),
            ],
        )
        .await?;
        append(
            tx,
            self.actor
                .draft("entitlement.create")
                .account(self.account_id, &self.boundary)
                .target(&entitlement_id)
                .details(json!({
                    "after": { "offer_id": terms.offer_id, "start": from, "status": status.as_str(), "commitments": commitments },
                    "subscription_id": self.subscription_id,
                    "plan": plan,
                })),
        )
        .await?;
        Ok(Segment {
            entitlement_id,
            start: from,
            status,
            plan: plan.to_string(),
            quantity,
            open: true,
        })
    }
}

/// Changes the entitlement segments as decided; returns the segment now governing.
#[allow(clippy::too_many_arguments)]
async fn apply_change(
    tx: &mut Handle,
    actor: &Actor,
    subscription_id: &str,
    current: &Subscription,
    snapshot: &SubscriptionSnapshot,
    change: &EntitlementChange,
    plans: &HashMap<String, PlanTerms>,
    now: Timestamp,
) -> Result<Segment, StoreError> {
    let account_id = current.account_id.as_deref().ok_or_else(|| {
        StoreError::Backend("a segment change needs a linked account".to_string())
    })?;
    let boundary = tx
        .query_one(
            "SELECT boundary FROM accounts WHERE id = $1",
            &[account_id.into()],
        )
        .await?
        .text(0)?;
    let context = SegmentContext {
        actor,
        subscription_id,
        account_id,
        boundary,
        binding: snapshot.binding.as_ref(),
        plans,
        now,
    };
    match change {
        EntitlementChange::Open {
            from,
            status,
            plan,
            quantity,
        } => context.open(tx, *from, *status, plan, *quantity).await,
        EntitlementChange::Replace {
            at,
            status,
            plan,
            quantity,
        } => {
            if let Some(segment) = &current.segment {
                context.close(tx, segment, *at).await?;
            }
            context.open(tx, *at, *status, plan, *quantity).await
        }
        EntitlementChange::Close { at } => {
            let segment = current.segment.clone().ok_or_else(|| {
                StoreError::Backend("a close was decided without a segment".to_string())
            })?;
            context.close(tx, &segment, *at).await?;
            Ok(Segment {
                open: false,
                ..segment
            })
        }
    }
}

/// A subscription with its account, as pages list it.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionView {
    pub record: SubscriptionRecord,
    pub account_name: Option<String>,
    pub boundary: Option<String>,
}

/// The scope's condition on `a` (the subscription's account, LEFT JOINed): linked
/// subscriptions by their account's boundary; unlinked ones (no account, so no
/// boundary yet) only when `unlinked` says the caller handles registrations.
fn subscription_scope(
    scope: &purser_core::AccountScope,
    unlinked: bool,
    params: &mut Vec<Value>,
) -> String {
    let unlinked = if unlinked {
        "s.account_id IS NULL"
    } else {
        "1 = 0"
    };
    match crate::accounts::boundary_filter(scope, "a.boundary", params) {
        None => unlinked.to_string(),
        Some(condition) => format!("({unlinked} OR (a.id IS NOT NULL AND {condition}))"),
    }
}

impl Store {
    /// Subscriptions the scope may see, most recently changed first.
    pub async fn subscriptions_in_scope(
        &self,
        scope: &purser_core::AccountScope,
        unlinked: bool,
        limit: usize,
    ) -> Result<Vec<SubscriptionView>, StoreError> {
        let mut params = Vec::new();
        let condition = subscription_scope(scope, unlinked, &mut params);
        params.push(Value::Int(limit as i64));
        let sql = format!(
            "SELECT {}, a.name, a.boundary FROM marketplace_subscriptions s LEFT JOIN accounts a ON a.id = s.account_id \
             WHERE {condition} ORDER BY s.updated_at DESC, s.id LIMIT ${}",
            crate::qualified_columns(SUBSCRIPTION_COLUMNS, "s"),
            params.len()
        );
        let mut handle = self.db.read().await?;
        let rows = handle.query(&sql, &params).await?;
        rows.iter()
            .map(|row| {
                Ok(SubscriptionView {
                    record: subscription_from_row(row)?,
                    account_name: row.opt_text(20)?,
                    boundary: row.opt_text(21)?,
                })
            })
            .collect()
    }

    /// One subscription, if the scope may see it (else `NotFound`, as for accounts).
    pub async fn subscription_in_scope(
        &self,
        scope: &purser_core::AccountScope,
        unlinked: bool,
        id: &str,
    ) -> Result<SubscriptionView, StoreError> {
        let mut params = vec![Value::from(id)];
        let condition = subscription_scope(scope, unlinked, &mut params);
        let sql = format!(
            "SELECT {}, a.name, a.boundary FROM marketplace_subscriptions s LEFT JOIN accounts a ON a.id = s.account_id \
             WHERE s.id = $1 AND {condition}",
            crate::qualified_columns(SUBSCRIPTION_COLUMNS, "s")
        );
        let mut handle = self.db.read().await?;
        let row = handle
            .query_opt(&sql, &params)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(SubscriptionView {
            record: subscription_from_row(&row)?,
            account_name: row.opt_text(20)?,
            boundary: row.opt_text(21)?,
        })
    }

    /// Notifications the scope may see (those of subscriptions it sees, and those
    /// naming no known subscription when `unlinked`), newest first; optionally only
    /// those of one subscription, or only those set aside.
    pub async fn notifications_in_scope(
        &self,
        scope: &purser_core::AccountScope,
        unlinked: bool,
        subscription: Option<&SubscriptionRecord>,
        set_aside_only: bool,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut params = Vec::new();
        let condition = subscription_scope(scope, unlinked, &mut params);
        let mut sql = format!(
            "SELECT {} FROM marketplace_notifications n \
             LEFT JOIN marketplace_subscriptions s ON s.marketplace = n.marketplace AND s.external_id = n.external_id \
             LEFT JOIN accounts a ON a.id = s.account_id WHERE {condition}",
            crate::qualified_columns(NOTIFICATION_COLUMNS, "n")
        );
        if let Some(subscription) = subscription {
            params.push(subscription.subscription.marketplace.as_str().into());
            params.push((&subscription.subscription.external_id).into());
            sql.push_str(&format!(
                " AND n.marketplace = ${} AND n.external_id = ${}",
                params.len() - 1,
                params.len()
            ));
        }
        if set_aside_only {
            sql.push_str(" AND n.status IN ('unrecognised', 'malformed')");
        }
        params.push(Value::Int(limit as i64));
        sql.push_str(&format!(
            " ORDER BY n.received_at DESC, n.id DESC LIMIT ${}",
            params.len()
        ));
        let mut handle = self.db.read().await?;
        let rows = handle.query(&sql, &params).await?;
        rows.iter().map(notification_from_row).collect()
    }
}
