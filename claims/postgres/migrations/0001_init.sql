-- Times are Unix nanoseconds (0 for none), as in the SQLite ledger, so they
-- round-trip exactly. Lease times are the database's own clock.
CREATE TABLE drops (
	id TEXT PRIMARY KEY,
	channel TEXT NOT NULL,
	sku TEXT NOT NULL,
	title TEXT NOT NULL,
	stock INTEGER NOT NULL,
	remaining INTEGER NOT NULL,
	price_minor BIGINT NOT NULL,
	currency TEXT NOT NULL,
	opens_at BIGINT NOT NULL,
	closes_at BIGINT NOT NULL,
	grace_ns BIGINT NOT NULL,
	cap INTEGER NOT NULL,
	stages TEXT NOT NULL,
	limited_run_id TEXT NOT NULL,
	creator_id TEXT NOT NULL,
	policy TEXT NOT NULL,
	bucket_ns BIGINT NOT NULL,
	claim_code TEXT NOT NULL,
	cue_code BIGINT NOT NULL,
	seed BYTEA NOT NULL,
	seed_hash TEXT NOT NULL,
	state TEXT NOT NULL,
	closed_at BIGINT NOT NULL,
	close_reason TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	-- Stock is kept by the database: no interleaving of writers can oversell.
	CONSTRAINT drops_stock CHECK (remaining >= 0 AND remaining <= stock)
);
CREATE INDEX drops_by_channel ON drops (channel, created_at DESC);
CREATE INDEX drops_by_created ON drops (created_at DESC);
CREATE INDEX drops_live ON drops (channel) WHERE state IN ('scheduled', 'open', 'grace');

CREATE TABLE entries (
	drop_id TEXT NOT NULL REFERENCES drops (id),
	seq BIGINT NOT NULL,
	user_id TEXT NOT NULL,
	login TEXT NOT NULL,
	unit INTEGER NOT NULL,
	cap INTEGER NOT NULL,
	outcome TEXT NOT NULL,
	arrived_at BIGINT NOT NULL,
	bucket BIGINT NOT NULL,
	decided_at BIGINT NOT NULL,
	token TEXT,
	expires_at BIGINT NOT NULL,
	redeemed_at BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (drop_id, user_id, seq),
	-- A won unit is numbered within the cap in force when it was claimed;
	-- with entries_one_unit, nobody holds more units than their cap.
	CONSTRAINT entries_unit_within_cap CHECK (outcome <> 'won' OR (unit >= 1 AND unit <= cap))
);
CREATE INDEX entries_by_seq ON entries (drop_id, seq);
CREATE UNIQUE INDEX entries_by_token ON entries (token) WHERE token IS NOT NULL;
CREATE UNIQUE INDEX entries_one_unit ON entries (drop_id, user_id, unit) WHERE outcome = 'won';

-- The replica deciding each live drop. Every commit takes this row FOR SHARE
-- and checks the owner, so a takeover (which updates it) and a commit by the
-- previous owner are serialized: the old owner's commit lands before the new
-- owner loads the drop, or is refused.
CREATE TABLE drop_leases (
	drop_id TEXT PRIMARY KEY REFERENCES drops (id),
	owner TEXT NOT NULL,
	epoch BIGINT NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
);
