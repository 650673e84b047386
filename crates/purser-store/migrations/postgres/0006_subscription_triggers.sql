CREATE TRIGGER subscription_events_no_update BEFORE UPDATE OR DELETE ON subscription_events
FOR EACH ROW EXECUTE FUNCTION metering_refuse_change();
CREATE TRIGGER subscription_events_no_truncate BEFORE TRUNCATE ON subscription_events
FOR EACH STATEMENT EXECUTE FUNCTION metering_refuse_change();
