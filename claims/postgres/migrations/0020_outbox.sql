-- The transactional outbox (issue 14): events written in the transaction of
-- the change they report, delivered after commit. Writers take the outbox
-- advisory lock before their first row, so rows commit in seq order and a
-- reader tailing by seq misses none.
CREATE TABLE outbox (
	seq BIGSERIAL PRIMARY KEY,
	event_id TEXT NOT NULL UNIQUE,
	kind TEXT NOT NULL,
	drop_id TEXT NOT NULL,
	channel TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	body TEXT NOT NULL
);
