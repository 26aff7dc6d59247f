-- Paid drops: the pay window, holds and the double-entry books.
ALTER TABLE drops ADD COLUMN pay_window_ns BIGINT NOT NULL DEFAULT 0;
ALTER TABLE drops ADD COLUMN pay_methods TEXT NOT NULL DEFAULT '';

CREATE TABLE movements (
	seq BIGSERIAL PRIMARY KEY,
	key TEXT NOT NULL UNIQUE,
	kind TEXT NOT NULL,
	hold_id TEXT NOT NULL,
	at BIGINT NOT NULL
);
CREATE INDEX movements_by_hold ON movements (hold_id) WHERE hold_id <> '';

CREATE TABLE postings (
	id BIGSERIAL PRIMARY KEY,
	movement BIGINT NOT NULL REFERENCES movements (seq),
	account TEXT NOT NULL,
	currency TEXT NOT NULL,
	amount BIGINT NOT NULL CHECK (amount <> 0)
);
CREATE INDEX postings_by_movement ON postings (movement);

-- Balances are kept by the database: concurrent debits of one wallet
-- serialize on its row, and the CHECK refuses one that would overdraw it.
CREATE TABLE balances (
	account TEXT NOT NULL,
	currency TEXT NOT NULL,
	balance BIGINT NOT NULL,
	nonneg BOOLEAN NOT NULL,
	PRIMARY KEY (account, currency),
	CONSTRAINT balances_nonneg CHECK (NOT nonneg OR balance >= 0)
);

CREATE TABLE holds (
	id TEXT PRIMARY KEY,
	drop_id TEXT NOT NULL REFERENCES drops (id),
	seq BIGINT NOT NULL,
	user_id TEXT NOT NULL,
	unit INTEGER NOT NULL,
	amount_minor BIGINT NOT NULL,
	currency TEXT NOT NULL,
	state TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	deadline BIGINT NOT NULL,
	settled_at BIGINT NOT NULL DEFAULT 0,
	passed_from TEXT NOT NULL DEFAULT '',
	passed_to TEXT NOT NULL DEFAULT '',
	method TEXT NOT NULL DEFAULT '',
	redeemed_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX holds_by_drop ON holds (drop_id, seq);
CREATE INDEX holds_by_user ON holds (user_id);
CREATE INDEX holds_awaiting ON holds (deadline) WHERE state = 'awaiting';
