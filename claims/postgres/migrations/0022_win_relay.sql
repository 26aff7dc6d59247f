-- The wins' relay to the bus (issue 14): per drop, the last entry seq the
-- relay moved past. The relay tails entries by seq; nothing is written per
-- claim. Drops that exist now start at their end (their wins were
-- published then); the 'wins' row is the relay's lock.
CREATE TABLE win_relay (
	drop_id TEXT PRIMARY KEY REFERENCES drops (id),
	seq BIGINT NOT NULL
);
INSERT INTO win_relay (drop_id, seq) SELECT drop_id, max(seq) FROM entries GROUP BY drop_id;
INSERT INTO outbox_relay (name, seq) VALUES ('wins', 0);
