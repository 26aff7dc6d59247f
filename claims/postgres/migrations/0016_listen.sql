-- Listen-to-claim drops (issue 16): how long each rotating cue code lasts
-- (0: not a listen drop), and which step's code each entry used (0: none).
ALTER TABLE drops ADD COLUMN listen_step_ns BIGINT NOT NULL DEFAULT 0;
ALTER TABLE entries ADD COLUMN cue_step BIGINT NOT NULL DEFAULT 0;
