-- How each ledger record reaches its marketplace: 'direct' (the cloud's own metering
-- API) or 'tackle' (Tackle.io's metering API, which forwards to the cloud). A client
-- claims only its own route's records, so the direct AWS client never sends a record
-- routed through Tackle and the Tackle client never one meant for AWS directly.
-- Every record before this version went directly. The record key and
-- UNIQUE (account_id, dimension, hour) are untouched: whichever route an hour takes,
-- it is one record, planned once.
ALTER TABLE marketplace_records ADD COLUMN route TEXT NOT NULL DEFAULT 'direct';
