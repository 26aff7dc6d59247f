package claims

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// shuffleKey orders simultaneous claims: SHA-256 over the drop's seed, the
// bucket number, the user id and the arrival number. The seed is committed
// (its hash published) before any claim and revealed at close, so nobody can
// steer the order and anyone can recompute it.
func shuffleKey(seed []byte, bucket int64, userID string, seq int64) [32]byte {
	h := sha256.New()
	h.Write(seed)
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], uint64(bucket))
	binary.BigEndian.PutUint64(n[8:], uint64(seq))
	h.Write(n[:8])
	h.Write([]byte(userID))
	h.Write([]byte{0})
	h.Write(n[8:])
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func lessKey(a, b [32]byte) bool { return bytes.Compare(a[:], b[:]) < 0 }

// AuditReport says whether the recorded winners are the ones the policy and
// the revealed seed give.
type AuditReport struct {
	DropID       string `json:"drop_id"`
	Policy       Policy `json:"policy"`
	State        State  `json:"state"`
	Stock        int    `json:"stock"`
	Entries      int    `json:"entries"`
	Awarded      int    `json:"awarded"`
	Recomputed   int    `json:"recomputed"`
	SeedHash     string `json:"seed_hash"`
	Seed         string `json:"seed,omitempty"`
	SeedVerified bool   `json:"seed_verified"`
	// Window drops: the window every claim before which had the same chance.
	BudgetMS     int64     `json:"budget_ms,omitempty"`
	WindowEndsAt time.Time `json:"window_ends_at,omitzero"`
	Oversold     bool      `json:"oversold"`
	OverCapUsers int       `json:"over_cap_users"`
	StockAgrees  bool      `json:"stock_agrees"`
	Match        bool      `json:"match"`
	Problems     []string  `json:"problems,omitempty"`
}

// Audit recomputes a drop's winners from the ledger alone.
func Audit(d *Drop, entries []Entry) AuditReport {
	rep := AuditReport{DropID: d.ID, Policy: d.Policy, State: d.State, Stock: d.Stock, Entries: len(entries), SeedHash: d.SeedHash}
	problem := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }
	final := d.State.Final()
	if final {
		rep.Seed = hex.EncodeToString(d.Seed)
		rep.SeedVerified = SeedHashOf(d.Seed) == d.SeedHash
		if !rep.SeedVerified {
			problem("revealed seed does not hash to the published seed hash")
		}
	} else if d.Policy != FCFS {
		problem("drop is %s: the seed is revealed at close, so the order cannot be checked yet", d.State)
	}
	if d.Policy == Window {
		rep.BudgetMS, rep.WindowEndsAt = d.Budget.Milliseconds(), d.WindowEndsAt()
		for _, e := range entries {
			// The order depends on the bucket: it must be the one the
			// arrival time gives, or a claim could be moved into the window.
			if b := d.bucketOf(e.ArrivedAt); b != e.Bucket {
				problem("claim #%d arrived at %s, in bucket %d, but is recorded in bucket %d", e.Seq, e.ArrivedAt.Format(time.RFC3339Nano), b, e.Bucket)
			}
		}
	}
	units := map[string]int{}
	awarded := map[int64]bool{}
	for _, e := range entries {
		if e.Outcome == OutcomeWon {
			rep.Awarded++
			awarded[e.Seq] = true
			units[e.UserID]++
			if units[e.UserID] > e.Cap {
				rep.OverCapUsers++
			}
		}
	}
	rep.Oversold = rep.Awarded > d.Stock
	rep.StockAgrees = d.Remaining == d.Stock-rep.Awarded
	if rep.Oversold {
		problem("awarded %d units of a stock of %d", rep.Awarded, d.Stock)
	}
	if !rep.StockAgrees {
		problem("remaining stock %d is not stock %d minus %d awarded", d.Remaining, d.Stock, rep.Awarded)
	}
	if rep.OverCapUsers > 0 {
		problem("%d wins went beyond a user's cap", rep.OverCapUsers)
	}

	want := recompute(d, entries)
	rep.Recomputed = len(want)
	if d.Policy == FCFS || final {
		for seq := range want {
			if !awarded[seq] {
				problem("claim #%d should have won but did not", seq)
			}
		}
		for seq := range awarded {
			if !want[seq] {
				problem("claim #%d won but should not have", seq)
			}
		}
	}
	if len(rep.Problems) > 12 {
		rep.Problems = append(rep.Problems[:12], fmt.Sprintf("... and %d more", len(rep.Problems)-12))
	}
	rep.Match = len(rep.Problems) == 0
	return rep
}

// rank is where one claim stands in its drop's fair order: by bucket, then
// by key (the seeded shuffle; zero where arrival order rules), then by
// arrival number.
type rank struct {
	bucket int64
	key    [32]byte
	seq    int64
}

// rankOf places a claim of userID, arrival seq, in bucket in the drop's
// order. The decider and the audit both rank through here, so what was
// decided and what is recomputed cannot drift apart.
func (d *Drop) rankOf(bucket int64, userID string, seq int64) rank {
	r := rank{bucket: bucket, seq: seq}
	switch d.Policy {
	case Bucketed:
		r.key = shuffleKey(d.Seed, bucket, userID, seq)
	case Raffle:
		r.bucket = 0
		r.key = shuffleKey(d.Seed, 0, userID, seq)
	case Window:
		// The window is one seeded order; after it, buckets are shuffled
		// too, plain arrival order is not.
		if bucket == 0 || d.BucketWidth > 0 {
			r.key = shuffleKey(d.Seed, bucket, userID, seq)
		}
	default:
		r.bucket = 0
	}
	return r
}

func compareRank(a, b rank) int {
	switch {
	case a.bucket != b.bucket:
		if a.bucket < b.bucket {
			return -1
		}
		return 1
	}
	if c := bytes.Compare(a.key[:], b.key[:]); c != 0 {
		return c
	}
	switch {
	case a.seq < b.seq:
		return -1
	case a.seq > b.seq:
		return 1
	}
	return 0
}

// FairOrder sorts a drop's entries into the order in which its policy
// awards units: arrival order (fcfs); bucket by bucket, each shuffled by
// the seeded key (bucketed); one shuffle of every entry (raffle); the whole
// window shuffled, then the claims after it in arrival order or in
// shuffled buckets (window). A unit given back (an unpaid hold) goes to the
// next entry in this order that has not won. The seed must be known:
// before close only the decider holds it.
func (d *Drop) FairOrder(es []Entry) {
	ranks := make([]rank, len(es))
	idx := make([]int, len(es))
	for i := range es {
		ranks[i] = d.rankOf(es[i].Bucket, es[i].UserID, es[i].Seq)
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return compareRank(ranks[a], ranks[b]) })
	sorted := make([]Entry, len(es))
	for i, j := range idx {
		sorted[i] = es[j]
	}
	copy(es, sorted)
}

// recompute returns the arrival numbers that should have won.
func recompute(d *Drop, entries []Entry) map[int64]bool {
	es := append([]Entry(nil), entries...)
	d.FairOrder(es)
	left := d.Stock
	units := map[string]int{}
	won := map[int64]bool{}
	for _, e := range es {
		if left == 0 {
			break
		}
		limit := e.Cap
		if d.Policy == Raffle {
			limit = 1
		}
		if units[e.UserID] >= limit {
			continue
		}
		units[e.UserID]++
		left--
		won[e.Seq] = true
	}
	return won
}

// Audit loads a drop and its entries and recomputes the winners.
func (s *Service) Audit(ctx context.Context, id string) (AuditReport, error) {
	d, err := s.ledger.Drop(ctx, id)
	if err != nil {
		return AuditReport{}, err
	}
	es, err := s.ledger.Entries(ctx, id)
	if err != nil {
		return AuditReport{}, err
	}
	return Audit(d, es), nil
}
