-- Subscriptions from the marketplaces: the plans Purser sells under each marketplace
-- plan id, each buyer's subscription and the entitlement segments it governs, every
-- notification as it arrived (kept whatever it held), and each subscription's
-- lifecycle, append-only.

-- What Purser sells under a marketplace plan id.
CREATE TABLE marketplace_plans (
    marketplace TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    offer_id TEXT NOT NULL REFERENCES offers (id),
    commitments TEXT NOT NULL, -- JSON, as on entitlements
    per_quantity BIGINT NOT NULL, -- 1 when commitments scale with the subscription's quantity
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (marketplace, plan_id)
);

CREATE TABLE marketplace_subscriptions (
    id TEXT PRIMARY KEY,
    marketplace TEXT NOT NULL,
    external_id TEXT NOT NULL, -- Google entitlement id, Azure SaaS subscription id, AWS license ARN or customer identifier
    account_id TEXT REFERENCES accounts (id), -- set at registration
    state TEXT NOT NULL,
    plan_id TEXT,
    quantity TEXT,
    pending_plan TEXT,
    binding TEXT, -- JSON, purser_core::marketplace::Binding
    term_end BIGINT,
    effective_at BIGINT, -- the marketplace's time for the state last read
    entitlement_id TEXT, -- the segment it governs now
    segment_plan TEXT, -- the plan and quantity that segment was opened under
    segment_quantity TEXT,
    segment_start BIGINT,
    segment_status TEXT, -- active or suspended
    segment_open BIGINT, -- 0 once a cancellation closed it
    attention TEXT, -- why a person must look; NULL when nothing is off
    buyer TEXT, -- JSON: what the buyer gave on the registration page
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (marketplace, external_id)
);
CREATE INDEX marketplace_subscriptions_by_account ON marketplace_subscriptions (account_id);

ALTER TABLE entitlements ADD COLUMN subscription_id TEXT; -- the subscription governing it, if any

-- Every notification as delivered, once per delivery key (Pub/Sub's eventId, Azure's
-- operation id and action, the SNS MessageId): a redelivery finds its row and changes
-- nothing. Unknown and malformed ones are kept with their reason, never dropped.
CREATE TABLE marketplace_notifications (
    id TEXT PRIMARY KEY,
    marketplace TEXT NOT NULL,
    delivery_key TEXT NOT NULL,
    channel TEXT NOT NULL, -- pubsub, webhook, sns, landing
    received_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    kind TEXT, -- the marketplace's event type or action, as it said
    external_id TEXT, -- the subscription it names, when it could be read
    status TEXT NOT NULL, -- received, processed, unrecognised, malformed
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    processed_at BIGINT,
    UNIQUE (marketplace, delivery_key)
);
CREATE INDEX marketplace_notifications_pending ON marketplace_notifications (status, next_attempt_at);

CREATE TABLE subscription_events (
    id TEXT PRIMARY KEY, -- UUID v7: time-ordered
    subscription_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    notification_id TEXT,
    what TEXT NOT NULL, -- read, changed, call, call_failed, linked
    from_state TEXT,
    to_state TEXT,
    applied_from BIGINT, -- the hour from which rating changed
    detail TEXT NOT NULL -- JSON
);
CREATE INDEX subscription_events_by_subscription ON subscription_events (subscription_id, at);

-- Bumped by every change to entitlements, under the metering head's lock, so that
-- closing re-reads them before rating an hour.
ALTER TABLE metering_head ADD COLUMN catalogue_version BIGINT NOT NULL DEFAULT 0;
