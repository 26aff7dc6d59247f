-- The outbox relay's position (issue 14): the last outbox seq published to
-- the bus. One replica at a time relays, holding this row's lock in the
-- relaying transaction (FOR UPDATE SKIP LOCKED). It starts at the outbox's
-- end: events committed before the relay existed were published then.
CREATE TABLE outbox_relay (
	name TEXT PRIMARY KEY,
	seq BIGINT NOT NULL
);
INSERT INTO outbox_relay (name, seq) SELECT 'bus', COALESCE(max(seq), 0) FROM outbox;
