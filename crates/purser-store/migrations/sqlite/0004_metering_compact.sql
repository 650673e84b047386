-- Usage slices record how their contributions are encoded: 1, the first releases'
-- entries (still read); 2, packed per event in key order (written from now on).
ALTER TABLE usage_slices ADD COLUMN encoding BIGINT NOT NULL DEFAULT 1;

-- A closed hour's meters are read from its evidence's result, which holds each
-- meter × group's value and carry-out: a copy in rows of their own cost more to write
-- than anything else closing does.
DROP TABLE meter_hours;
