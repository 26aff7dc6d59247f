-- Creator payouts: each state change is written in the transaction of the
-- movement it makes (payout:<id>, payout:<id>:paid, payout:<id>:returned).
CREATE TABLE payouts (
	id TEXT PRIMARY KEY,
	creator_id TEXT NOT NULL,
	currency TEXT NOT NULL,
	amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
	state TEXT NOT NULL CHECK (state IN ('pending', 'in_transit', 'paid', 'returned')),
	provider TEXT NOT NULL,
	destination TEXT NOT NULL DEFAULT '',
	reference TEXT NOT NULL DEFAULT '',
	note TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	lines JSONB NOT NULL
);
CREATE INDEX payouts_by_creator ON payouts (creator_id, created_at);
CREATE INDEX payouts_unfinished ON payouts (created_at) WHERE state IN ('pending', 'in_transit');
