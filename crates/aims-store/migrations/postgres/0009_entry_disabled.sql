-- A disabled entry (AIMS MO-3): kept with its configuration, but no SVID is issued or renewed
-- for it, and agents drop the SVIDs they hold for it.
ALTER TABLE registration_entries ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
