CREATE TRIGGER marketplace_exchanges_no_update BEFORE UPDATE OR DELETE ON marketplace_exchanges
FOR EACH ROW EXECUTE FUNCTION metering_refuse_change();
CREATE TRIGGER marketplace_exchanges_no_truncate BEFORE TRUNCATE ON marketplace_exchanges
FOR EACH STATEMENT EXECUTE FUNCTION metering_refuse_change();
