CREATE TRIGGER subscription_events_no_update BEFORE UPDATE ON subscription_events
BEGIN SELECT RAISE(ABORT, 'subscription events are append-only'); END;
CREATE TRIGGER subscription_events_no_delete BEFORE DELETE ON subscription_events
BEGIN SELECT RAISE(ABORT, 'subscription events are append-only'); END;
