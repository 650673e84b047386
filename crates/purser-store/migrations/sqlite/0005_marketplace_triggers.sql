CREATE TRIGGER marketplace_exchanges_no_update BEFORE UPDATE ON marketplace_exchanges
BEGIN SELECT RAISE(ABORT, 'marketplace exchanges are append-only'); END;
CREATE TRIGGER marketplace_exchanges_no_delete BEFORE DELETE ON marketplace_exchanges
BEGIN SELECT RAISE(ABORT, 'marketplace exchanges are append-only'); END;
