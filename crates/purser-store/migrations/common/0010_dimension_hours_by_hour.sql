-- Billed dimensions looked up by hour. Marketplace planning reads every dimension of
-- one hour at a time, and the metering page lists the latest late adjustments: with
-- only the account-first key and the period index, both read the whole table, which
-- grows by every account's dimensions every hour. The adjusted rows are few, so
-- their index holds only them.
CREATE INDEX dimension_hours_by_hour ON dimension_hours (hour);
CREATE INDEX dimension_hours_adjusted ON dimension_hours (hour) WHERE adjustment <> '0';
