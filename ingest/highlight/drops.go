package highlight

import (
	"context"
	"time"
)

// Drop is what the export reads of a drop. The caller copies it from the
// claims domain (cmd/microdrop does), so this package knows drops without
// importing claims.
type Drop struct {
	ID           string
	Channel      string
	SKU          string
	Title        string
	LimitedRunID string
	CreatorID    string
	Currency     string
	PriceMinor   int64
	Policy       string
	// State is the claims state word ("open", "sold_out", "closed", ...).
	State       string
	CloseReason string
	OpensAt     time.Time
	ClosesAt    time.Time
	Grace       time.Duration
	// ClosedAt is zero while the drop is not closed.
	ClosedAt  time.Time
	Stock     int
	Remaining int
	SeedHash  string
	// Seed is set only once the drop is final (it is secret until then).
	Seed []byte
	// Final: closed or sold out. SoldOut: its stock ran out.
	Final, SoldOut bool
}

// EndsAt is when claims stop counting: the close plus the grace.
func (d Drop) EndsAt() time.Time { return d.ClosesAt.Add(d.Grace) }

// Claim is one recorded claim of a drop, as the export reads it.
type Claim struct {
	Seq    int64
	UserID string
	// Outcome is the claims outcome word ("won", "lost", ...); Won says
	// whether it took a unit.
	Outcome   string
	Won       bool
	Unit      int
	ArrivedAt time.Time
	DecidedAt time.Time
	Redeemed  time.Time
	// Paid is what the claim's hold was paid (0: not paid, or a free
	// drop), Refunded what was paid back of it.
	PaidMinor, RefundedMinor int64
}

// DropSource is what the export reads of the drops ledger.
type DropSource interface {
	// ChannelDrops lists a channel's drops, newest first, at most limit.
	ChannelDrops(ctx context.Context, channel string, limit int) ([]Drop, error)
	// Claims lists a drop's recorded claims in arrival order.
	Claims(ctx context.Context, dropID string) ([]Claim, error)
}
