//! Subscriptions from the marketplaces: what a marketplace says about a buyer's
//! subscription, and what Purser does about it (the entitlement segment it rates and
//! reports under, and the seller's answer the marketplace waits for).
//!
//! Notifications are thin and may arrive late, twice or out of order, so they only
//! say *which* subscription to look at: the decision is always taken from a fresh
//! read of the subscription at the marketplace ([`SubscriptionSnapshot`]) against
//! what Purser holds ([`Subscription`]). Deciding from the current truth rather than
//! from the message makes processing idempotent: a repeated or stale notification
//! re-reads the same truth and changes nothing.
//!
//! A subscription governs a chain of entitlement *segments*: each plan, quantity or
//! suspension is its own entitlement, so that every closed hour keeps being rated
//! under the terms in force when it was closed, and a change applies from the right
//! hour on:
//! - what starts (activation, a new plan or quantity, reinstatement) takes effect at
//!   the first hour boundary at or after the moment the marketplace gives, so the hour
//!   in which it happened is billed under the terms the buyer had for most of it;
//! - what stops billing (suspension, cancellation) takes effect at the start of the
//!   hour in which it happened, so a buyer is never billed for an hour after the
//!   marketplace stopped the subscription (Google and Azure take usage only for time
//!   before a cancellation);
//! - no change reaches back into an hour already closed: closed hours are frozen
//!   (metering's invariant), so a change that arrives late applies from the first open
//!   hour and says so, for a person to settle.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Binding;
use crate::account::Marketplace;
use crate::commercial::{Commitment, DimensionKey, EntitlementStatus};

/// Where a subscription stands, in terms common to the three marketplaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    /// The buyer subscribed; the seller has not approved or activated it yet (Google
    /// `ENTITLEMENT_ACTIVATION_REQUESTED`, Azure `PendingFulfillmentStart`, AWS before
    /// `subscribe-success`). Nothing is billed.
    Requested,
    /// Billed (Google `ENTITLEMENT_ACTIVE`, Azure `Subscribed`, AWS `subscribe-success`).
    Active,
    /// Stopped for now, for instance for non-payment (Azure `Suspended`). Not billed.
    Suspended,
    /// Cancelled by the buyer but still billed until it ends (Google
    /// `ENTITLEMENT_PENDING_CANCELLATION` until the term's end, AWS
    /// `unsubscribe-pending`, after which final usage is still taken).
    PendingCancellation,
    /// Over. Nothing is billed from the hour it ended.
    Cancelled,
}

impl SubscriptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::PendingCancellation => "pending_cancellation",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "requested" => Ok(Self::Requested),
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "pending_cancellation" => Ok(Self::PendingCancellation),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(format!("`{other}` is not a subscription state")),
        }
    }

    /// Whether usage in this state is billed.
    pub fn is_billed(self) -> bool {
        matches!(self, Self::Active | Self::PendingCancellation)
    }
}

/// A subscription as its marketplace describes it when re-read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSnapshot {
    pub state: SubscriptionState,
    /// The marketplace's plan id (Google plan, Azure planId, AWS offer or dimension set).
    pub plan: String,
    /// Azure's quantity (seats) for plans sold by quantity; none elsewhere.
    pub quantity: Option<Decimal>,
    /// A plan change the buyer asked for that waits for the seller's answer (Google's
    /// `newPendingPlan`; an Azure operation in progress).
    pub pending_plan: Option<String>,
    /// Whom usage is reported to, once the marketplace has said.
    pub binding: Option<Binding>,
    /// When the marketplace says the current state or plan began (Google's
    /// `updateTime`, the operation's `timeStamp`, the SNS message's time).
    pub effective_at: Timestamp,
    /// The end of the current term, for information: a subscription ends by the
    /// marketplace's word (a notification), not by Purser's arithmetic.
    pub term_end: Option<Timestamp>,
}

/// A plan as Purser sells it: the offer and the commitments an entitlement under the
/// plan gets. `per_quantity` plans (Azure seats) commit `quantity` times as much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTerms {
    pub offer_id: String,
    pub commitments: BTreeMap<DimensionKey, Commitment>,
    pub per_quantity: bool,
}

impl PlanTerms {
    /// The commitments for `quantity` (scaled, with their fee, when the plan is sold by quantity; the
    /// tolerance above the commitment and the overage price are per unit of usage,
    /// not per seat, and stay as they are).
    pub fn commitments_for(&self, quantity: Option<Decimal>) -> BTreeMap<DimensionKey, Commitment> {
        let factor = match (self.per_quantity, quantity) {
            (true, Some(quantity)) => quantity,
            _ => Decimal::ONE,
        };
        self.commitments
            .iter()
            .map(|(dimension, commitment)| {
                let mut scaled = commitment.clone();
                scaled.committed_per_period = commitment.committed_per_period * factor;
                // A fee for the commitment is per seat too; one too large to scale is
                // kept per seat rather than dropped.
                if let Some(fee) = commitment.committed_fee {
                    scaled.committed_fee = Some(fee.times(factor).unwrap_or(fee));
                }
                (dimension.clone(), scaled)
            })
            .collect()
    }
}

/// The entitlement segment a subscription currently governs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub entitlement_id: String,
    pub start: Timestamp,
    /// `active` or `suspended`.
    pub status: EntitlementStatus,
    pub plan: String,
    pub quantity: Option<Decimal>,
    /// False once the segment has been closed by a cancellation.
    pub open: bool,
}

/// What Purser holds about a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub marketplace: Marketplace,
    /// The marketplace's id: Google's entitlement id, Azure's SaaS subscription id,
    /// AWS's license ARN (or legacy customer identifier).
    pub external_id: String,
    pub state: SubscriptionState,
    /// The Purser account the buyer was linked to at registration; none until then.
    pub account_id: Option<String>,
    pub segment: Option<Segment>,
}

/// An answer the seller owes the marketplace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum SellerCall {
    /// Google `entitlements.approve`, Azure `activate`: the buyer is registered and the
    /// plan is one Purser sells.
    Approve {
        plan: String,
        quantity: Option<Decimal>,
    },
    /// Google `approvePlanChange`, Azure operation PATCH `Success`.
    ApprovePlanChange { plan: String },
}

/// A change to the entitlement segments, from an hour boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum EntitlementChange {
    /// Open a first segment from `from`.
    Open {
        from: Timestamp,
        status: EntitlementStatus,
        plan: String,
        quantity: Option<Decimal>,
    },
    /// End the current segment at `at` and open the next from `at`.
    Replace {
        at: Timestamp,
        status: EntitlementStatus,
        plan: String,
        quantity: Option<Decimal>,
    },
    /// End the current segment at `at`: the subscription is over.
    Close { at: Timestamp },
}

impl EntitlementChange {
    /// The hour from which rating changes.
    pub fn from(&self) -> Timestamp {
        match self {
            Self::Open { from, .. } => *from,
            Self::Replace { at, .. } | Self::Close { at } => *at,
        }
    }
}

/// What to do about a subscription after re-reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub state: SubscriptionState,
    pub change: Option<EntitlementChange>,
    pub call: Option<SellerCall>,
    /// Why a person must look (buyer not registered yet, a plan Purser does not sell,
    /// a change that reached into closed hours). Shown on the subscription's page.
    pub attention: Option<String>,
}

/// The start of the hour containing `at`.
pub fn hour_floor(at: Timestamp) -> Timestamp {
    let seconds = at.as_second().div_euclid(3600) * 3600;
    Timestamp::from_second(seconds).unwrap_or(at)
}

/// The first hour boundary at or after `at`.
pub fn hour_ceil(at: Timestamp) -> Timestamp {
    let floor = hour_floor(at);
    if floor == at {
        at
    } else {
        floor + SignedDuration::from_hours(1)
    }
}

/// Decides what a re-read subscription means. `plans` says what Purser sells under a
/// marketplace plan id; `first_open_hour` is the first hour not yet closed (changes
/// never reach before it).
pub fn decide(
    current: &Subscription,
    snapshot: &SubscriptionSnapshot,
    plans: &dyn Fn(&str) -> Option<PlanTerms>,
    first_open_hour: Timestamp,
) -> Decision {
    let mut decision = Decision {
        state: snapshot.state,
        change: None,
        call: None,
        attention: None,
    };
    let mut notes: Vec<String> = Vec::new();
    let linked = current.account_id.is_some();
    let plan_known = plans(&snapshot.plan).is_some();
    if !plan_known {
        notes.push(format!(
            "plan `{}` is not mapped to a Purser offer: map it before usage can be rated and reported",
            snapshot.plan
        ));
    }
    if !linked && snapshot.state != SubscriptionState::Cancelled {
        notes.push("the buyer has not been linked to a Purser account yet".to_string());
    }
    // A change may start no earlier than the first open hour; say so when it wanted to.
    let bounded = |wanted: Timestamp, notes: &mut Vec<String>| {
        if wanted < first_open_hour {
            notes.push(format!(
                "the marketplace's change took effect at {wanted}, but hours before {first_open_hour} were already closed and rated: applied from {first_open_hour}"
            ));
            first_open_hour
        } else {
            wanted
        }
    };
    let starts_at = hour_ceil(snapshot.effective_at);
    let stops_at = hour_floor(snapshot.effective_at);
    let open_segment = current.segment.as_ref().filter(|s| s.open);
    match snapshot.state {
        SubscriptionState::Requested => {
            if linked && plan_known {
                decision.call = Some(SellerCall::Approve {
                    plan: snapshot.plan.clone(),
                    quantity: snapshot.quantity,
                });
            }
        }
        SubscriptionState::Active | SubscriptionState::PendingCancellation => {
            if linked && plan_known {
                match open_segment {
                    // No segment yet, or one closed by a cancellation that the
                    // marketplace reverted (Google's `ENTITLEMENT_CANCELLATION_REVERTED`).
                    None => {
                        decision.change = Some(EntitlementChange::Open {
                            from: bounded(starts_at, &mut notes),
                            status: EntitlementStatus::Active,
                            plan: snapshot.plan.clone(),
                            quantity: snapshot.quantity,
                        });
                    }
                    Some(segment)
                        if segment.status != EntitlementStatus::Active
                            || segment.plan != snapshot.plan
                            || segment.quantity != snapshot.quantity =>
                    {
                        decision.change = Some(EntitlementChange::Replace {
                            at: bounded(starts_at.max(segment.start), &mut notes),
                            status: EntitlementStatus::Active,
                            plan: snapshot.plan.clone(),
                            quantity: snapshot.quantity,
                        });
                    }
                    Some(_) => {}
                }
            }
            if let Some(pending) = &snapshot.pending_plan
                && *pending != snapshot.plan
            {
                if plans(pending).is_some() {
                    decision.call = Some(SellerCall::ApprovePlanChange {
                        plan: pending.clone(),
                    });
                } else {
                    notes.push(format!(
                        "the buyer asked for plan `{pending}`, which is not mapped to a Purser offer: map it, or reject the change at the marketplace"
                    ));
                }
            }
        }
        SubscriptionState::Suspended => {
            if let Some(segment) = open_segment
                && segment.status == EntitlementStatus::Active
            {
                decision.change = Some(EntitlementChange::Replace {
                    at: bounded(stops_at.max(segment.start), &mut notes),
                    status: EntitlementStatus::Suspended,
                    plan: segment.plan.clone(),
                    quantity: segment.quantity,
                });
            }
        }
        SubscriptionState::Cancelled => {
            if let Some(segment) = open_segment {
                decision.change = Some(EntitlementChange::Close {
                    at: bounded(stops_at.max(segment.start), &mut notes),
                });
            }
        }
    }
    if !notes.is_empty() {
        decision.attention = Some(notes.join("; "));
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commercial::{OveragePolicy, OverageReporting};
    use crate::money::{Currency, Money};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn terms(offer: &str) -> PlanTerms {
        let mut commitments = BTreeMap::new();
        commitments.insert(
            DimensionKey::parse("capacity").unwrap(),
            Commitment {
                committed_per_period: Decimal::from(100),
                committed_fee: None,
                overage: OveragePolicy {
                    threshold: Decimal::from(5),
                    price_per_unit: Money::new(
                        Decimal::new(25, 2),
                        Currency::parse("USD").unwrap(),
                    ),
                    reporting: OverageReporting::Hourly,
                },
            },
        );
        PlanTerms {
            offer_id: offer.to_string(),
            commitments,
            per_quantity: true,
        }
    }

    fn plans(plan: &str) -> Option<PlanTerms> {
        match plan {
            "standard" => Some(terms("offer-standard")),
            "premium" => Some(terms("offer-premium")),
            _ => None,
        }
    }

    fn snapshot(state: SubscriptionState, plan: &str, at: &str) -> SubscriptionSnapshot {
        SubscriptionSnapshot {
            state,
            plan: plan.to_string(),
            quantity: None,
            pending_plan: None,
            binding: None,
            effective_at: ts(at),
            term_end: None,
        }
    }

    fn linked(segment: Option<Segment>) -> Subscription {
        Subscription {
            marketplace: Marketplace::Gcp,
            external_id: "ent-1".into(),
            state: SubscriptionState::Active,
            account_id: Some("acct".into()),
            segment,
        }
    }

    fn segment(plan: &str, start: &str, status: EntitlementStatus) -> Segment {
        Segment {
            entitlement_id: "e1".into(),
            start: ts(start),
            status,
            plan: plan.into(),
            quantity: None,
            open: true,
        }
    }

    const OPEN: &str = "2026-11-01T00:00:00Z";

    #[test]
    fn hour_rounding_is_exact_at_boundaries() {
        assert_eq!(
            hour_floor(ts("2026-11-03T10:59:59.999Z")),
            ts("2026-11-03T10:00:00Z")
        );
        assert_eq!(
            hour_ceil(ts("2026-11-03T10:00:00Z")),
            ts("2026-11-03T10:00:00Z")
        );
        assert_eq!(
            hour_ceil(ts("2026-11-03T10:00:00.000001Z")),
            ts("2026-11-03T11:00:00Z")
        );
    }

    #[test]
    fn a_requested_subscription_is_approved_only_once_registered_and_sold() {
        let mut unlinked = linked(None);
        unlinked.account_id = None;
        let requested = snapshot(
            SubscriptionState::Requested,
            "standard",
            "2026-11-03T10:20:00Z",
        );
        let d = decide(&unlinked, &requested, &plans, ts(OPEN));
        assert_eq!(d.call, None);
        assert!(d.attention.unwrap().contains("not been linked"));
        let d = decide(&linked(None), &requested, &plans, ts(OPEN));
        assert_eq!(
            d.call,
            Some(SellerCall::Approve {
                plan: "standard".into(),
                quantity: None
            })
        );
        assert_eq!(d.change, None, "nothing is billed before activation");
        let unknown = snapshot(SubscriptionState::Requested, "gold", "2026-11-03T10:20:00Z");
        let d = decide(&linked(None), &unknown, &plans, ts(OPEN));
        assert_eq!(d.call, None);
        assert!(d.attention.unwrap().contains("`gold` is not mapped"));
    }

    #[test]
    fn activation_opens_a_segment_at_the_next_hour() {
        let active = snapshot(
            SubscriptionState::Active,
            "standard",
            "2026-11-03T10:20:00Z",
        );
        let d = decide(&linked(None), &active, &plans, ts(OPEN));
        assert_eq!(
            d.change,
            Some(EntitlementChange::Open {
                from: ts("2026-11-03T11:00:00Z"),
                status: EntitlementStatus::Active,
                plan: "standard".into(),
                quantity: None
            })
        );
        assert_eq!(d.attention, None);
    }

    #[test]
    fn a_repeated_read_changes_nothing() {
        let current = linked(Some(segment(
            "standard",
            "2026-11-03T11:00:00Z",
            EntitlementStatus::Active,
        )));
        let active = snapshot(
            SubscriptionState::Active,
            "standard",
            "2026-11-03T10:20:00Z",
        );
        let d = decide(&current, &active, &plans, ts("2026-11-04T00:00:00Z"));
        assert_eq!(d.change, None);
        assert_eq!(d.call, None);
        assert_eq!(d.attention, None);
    }

    #[test]
    fn a_plan_change_replaces_the_segment_and_a_request_is_approved() {
        let current = linked(Some(segment(
            "standard",
            "2026-11-03T11:00:00Z",
            EntitlementStatus::Active,
        )));
        let mut asked = snapshot(
            SubscriptionState::Active,
            "standard",
            "2026-11-10T08:00:00Z",
        );
        asked.pending_plan = Some("premium".into());
        let d = decide(&current, &asked, &plans, ts(OPEN));
        assert_eq!(
            d.call,
            Some(SellerCall::ApprovePlanChange {
                plan: "premium".into()
            })
        );
        assert_eq!(
            d.change, None,
            "the plan changes when the marketplace says it did"
        );
        let changed = snapshot(SubscriptionState::Active, "premium", "2026-11-10T08:30:00Z");
        let d = decide(&current, &changed, &plans, ts(OPEN));
        assert_eq!(
            d.change,
            Some(EntitlementChange::Replace {
                at: ts("2026-11-10T09:00:00Z"),
                status: EntitlementStatus::Active,
                plan: "premium".into(),
                quantity: None
            })
        );
        asked.pending_plan = Some("gold".into());
        let d = decide(&current, &asked, &plans, ts(OPEN));
        assert_eq!(
            d.call, None,
            "a change to an unsold plan is left to a person"
        );
        assert!(d.attention.unwrap().contains("`gold`"));
    }

    #[test]
    fn a_quantity_change_scales_the_commitment() {
        let current = linked(Some(segment(
            "standard",
            "2026-11-03T11:00:00Z",
            EntitlementStatus::Active,
        )));
        let mut more = snapshot(
            SubscriptionState::Active,
            "standard",
            "2026-11-12T14:00:00Z",
        );
        more.quantity = Some(Decimal::from(3));
        let d = decide(&current, &more, &plans, ts(OPEN));
        assert!(
            matches!(d.change, Some(EntitlementChange::Replace { at, quantity: Some(q), .. })
            if at == ts("2026-11-12T14:00:00Z") && q == Decimal::from(3))
        );
        let scaled = terms("o").commitments_for(Some(Decimal::from(3)));
        let commitment = scaled.values().next().unwrap();
        assert_eq!(commitment.committed_per_period, Decimal::from(300));
        assert_eq!(commitment.overage.threshold, Decimal::from(5));
    }

    #[test]
    fn suspension_and_cancellation_stop_billing_from_the_hour_they_happened_in() {
        let current = linked(Some(segment(
            "standard",
            "2026-11-03T11:00:00Z",
            EntitlementStatus::Active,
        )));
        let suspended = snapshot(
            SubscriptionState::Suspended,
            "standard",
            "2026-11-15T16:45:00Z",
        );
        let d = decide(&current, &suspended, &plans, ts(OPEN));
        assert_eq!(
            d.change,
            Some(EntitlementChange::Replace {
                at: ts("2026-11-15T16:00:00Z"),
                status: EntitlementStatus::Suspended,
                plan: "standard".into(),
                quantity: None
            })
        );
        let on_hold = linked(Some(segment(
            "standard",
            "2026-11-15T16:00:00Z",
            EntitlementStatus::Suspended,
        )));
        let reinstated = snapshot(
            SubscriptionState::Active,
            "standard",
            "2026-11-16T09:10:00Z",
        );
        let d = decide(&on_hold, &reinstated, &plans, ts(OPEN));
        assert!(
            matches!(d.change, Some(EntitlementChange::Replace { at, status: EntitlementStatus::Active, .. })
            if at == ts("2026-11-16T10:00:00Z"))
        );
        let cancelled = snapshot(
            SubscriptionState::Cancelled,
            "standard",
            "2026-11-20T07:05:00Z",
        );
        let d = decide(&current, &cancelled, &plans, ts(OPEN));
        assert_eq!(
            d.change,
            Some(EntitlementChange::Close {
                at: ts("2026-11-20T07:00:00Z")
            })
        );
        // Once closed, a repeated cancellation changes nothing.
        let mut closed = current.clone();
        closed.segment.as_mut().unwrap().open = false;
        assert_eq!(decide(&closed, &cancelled, &plans, ts(OPEN)).change, None);
    }

    #[test]
    fn pending_cancellation_keeps_billing() {
        let current = linked(Some(segment(
            "standard",
            "2026-11-03T11:00:00Z",
            EntitlementStatus::Active,
        )));
        let pending = snapshot(
            SubscriptionState::PendingCancellation,
            "standard",
            "2026-11-20T07:05:00Z",
        );
        let d = decide(&current, &pending, &plans, ts(OPEN));
        assert_eq!(d.change, None);
        assert!(d.state.is_billed());
    }

    #[test]
    fn a_late_change_never_reaches_into_closed_hours_and_says_so() {
        let current = linked(Some(segment(
            "standard",
            "2026-11-03T11:00:00Z",
            EntitlementStatus::Active,
        )));
        let cancelled = snapshot(
            SubscriptionState::Cancelled,
            "standard",
            "2026-11-20T07:05:00Z",
        );
        let first_open = ts("2026-11-20T10:00:00Z");
        let d = decide(&current, &cancelled, &plans, first_open);
        assert_eq!(d.change, Some(EntitlementChange::Close { at: first_open }));
        assert!(d.attention.unwrap().contains("already closed"));
    }

    #[test]
    fn a_change_never_ends_a_segment_before_it_began() {
        // Activated at 11:00 (first open hour then), cancelled at 10:30 by the
        // marketplace's clock: the segment closes where it began, never before.
        let current = linked(Some(segment(
            "standard",
            "2026-11-03T11:00:00Z",
            EntitlementStatus::Active,
        )));
        let cancelled = snapshot(
            SubscriptionState::Cancelled,
            "standard",
            "2026-11-03T10:30:00Z",
        );
        let d = decide(&current, &cancelled, &plans, ts(OPEN));
        assert_eq!(
            d.change,
            Some(EntitlementChange::Close {
                at: ts("2026-11-03T11:00:00Z")
            })
        );
    }
}
