-- Issue 17: standing revocations are held in memory; every revocation write bumps this
-- counter in its transaction, so a replica sharing the store sees the change and reloads.
INSERT INTO counters (name, value) VALUES ('revocation', 0);
