-- The latency budget a window drop used (its simultaneous window is the
-- open plus budget_ns) and how it was reached.
ALTER TABLE drops ADD COLUMN budget_ns BIGINT NOT NULL DEFAULT 0;
ALTER TABLE drops ADD COLUMN budget_basis TEXT NOT NULL DEFAULT '';
