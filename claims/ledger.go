package claims

import (
	"context"
	"errors"
	"time"
)

// Outcome of one recorded entry.
const (
	OutcomeWon     = "won"
	OutcomeLost    = "lost"    // bucketed: in a bucket that had more claims than stock
	OutcomeEntered = "entered" // raffle: waiting for the draw
	// OutcomePassed is a priced win whose hold expired or was released:
	// its unit went to the next entry in the drop's fair order.
	OutcomePassed = "passed"
)

// Entry is one recorded claim. Entries are written only by a drop's decider
// and only after a decision; a won entry carries the pickup token.
type Entry struct {
	DropID    string    `json:"drop_id"`
	Seq       int64     `json:"seq"` // arrival order within the drop, from 1
	UserID    string    `json:"user_id"`
	Login     string    `json:"login,omitempty"`
	Unit      int       `json:"unit"` // the user's nth unit when won, else 0
	Cap       int       `json:"cap"`  // the cap in force when the claim arrived
	Outcome   string    `json:"outcome"`
	ArrivedAt time.Time `json:"arrived_at"`
	Bucket    int64     `json:"bucket"`
	DecidedAt time.Time `json:"decided_at"`
	Token     string    `json:"-"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Redeemed  time.Time `json:"redeemed_at,omitzero"`
	// CueStep is the step whose heard code made the claim, on a listen drop.
	CueStep int64 `json:"cue_step,omitempty"`
}

// Batch is what one decider commits at once, in one transaction.
type Batch struct {
	DropID string
	// Wins is how many units these entries take from stock; the ledger
	// refuses the batch when fewer remain (ErrStockExhausted).
	Wins int
	// Insert are new entries. A won entry must not repeat (drop, user, unit)
	// or a token (ErrDuplicateWin, ErrTokenCollision).
	Insert []Entry
	// Update changes outcome, unit, token and expiry of entries already
	// recorded (the raffle draw).
	Update []Entry
	// Holds are the holds of this batch's wins on a priced drop.
	Holds []Hold
	// State, when set, saves the drop's life-cycle fields in the same
	// transaction.
	State *DropState
}

// DropState is the part of a drop that changes after it is created.
type DropState struct {
	State       State
	ClosesAt    time.Time
	Grace       time.Duration
	ClosedAt    time.Time
	CloseReason string
}

// DropFilter selects drops.
type DropFilter struct {
	Channel string
	// Live selects drops that are not final (scheduled, open, grace).
	Live  bool
	Limit int
}

// Ledger errors that a decider acts on.
var (
	ErrStockExhausted = errors.New("ledger: not enough stock for batch")
	ErrDuplicateWin   = errors.New("ledger: user already holds that unit")
	ErrTokenCollision = errors.New("ledger: token already issued")
	ErrDropExists     = errors.New("ledger: drop id already exists")
)

// AsyncLedger is a Ledger that takes the next batch before the last is
// durable. CommitAsync queues b behind every write queued before it (the
// ledger applies them in that order) and returns at once; the returned
// wait reports b's outcome as Commit would, once it is durable or refused.
// The decider uses it to write one round while the one before it syncs.
type AsyncLedger interface {
	Ledger
	CommitAsync(ctx context.Context, b Batch) (wait func() error)
}

// Ledger is the durable record of drops, claims and redemptions. Everything
// acknowledged to anyone has been committed here first.
type Ledger interface {
	// CreateDrop records a new drop (Remaining = Stock). ErrDropExists if the id is taken.
	CreateDrop(ctx context.Context, d *Drop) error
	// Drop returns a drop with its seed. microdrop.ENOTFOUND when unknown.
	Drop(ctx context.Context, id string) (*Drop, error)
	// Drops lists drops, newest first.
	Drops(ctx context.Context, f DropFilter) ([]*Drop, error)
	// Commit applies a batch atomically and durably: all of it or none.
	Commit(ctx context.Context, b Batch) error
	// Entries lists a drop's entries in arrival order.
	Entries(ctx context.Context, dropID string) ([]Entry, error)
	// UserEntries lists a user's entries in a drop.
	UserEntries(ctx context.Context, dropID, userID string) ([]Entry, error)
	// Redeem marks the token's win redeemed at t, exactly once: a second
	// call returns ErrTokenUsed (wrapped, with the entry showing when), a
	// token past its expiry ErrTokenExpired (with the entry), an unknown
	// token ErrTokenUnknown; none of them changes anything.
	Redeem(ctx context.Context, token string, at time.Time) (Entry, error)
	// Close finishes pending commits and releases the ledger.
	Close() error
}
