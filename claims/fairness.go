package claims

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
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
	Passes       int       `json:"passes,omitempty"` // priced drops: units passed on, each replayed
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

// fairOrder returns a copy of entries in the drop's fair order (FairOrder):
// the first awards' audit and every pass of an unpaid unit read it.
func fairOrder(d *Drop, entries []Entry) []Entry {
	es := append([]Entry(nil), entries...)
	d.FairOrder(es)
	return es
}

// unitLimit is how many units one user may hold under the drop's policy.
func unitLimit(d *Drop, e *Entry) int {
	if d.Policy == Raffle {
		return 1
	}
	return e.Cap
}

// recompute returns the arrival numbers that should have won.
func recompute(d *Drop, entries []Entry) map[int64]bool {
	left := d.Stock
	units := map[string]int{}
	won := map[int64]bool{}
	for _, e := range fairOrder(d, entries) {
		if left == 0 {
			break
		}
		if units[e.UserID] >= unitLimit(d, &e) {
			continue
		}
		units[e.UserID]++
		left--
		won[e.Seq] = true
	}
	return won
}

// line is a priced drop's waiting line: entries in fair order, and who
// holds what. An unpaid unit goes to the first entry in it that lost,
// whose viewer has never let a unit pass and is below their limit, and
// that was decided by the time of the pass.
type line struct {
	d      *Drop
	order  []Entry
	at     map[int64]int // seq -> index in order
	units  map[string]int
	passed map[string]bool
	cursor int // entries before it can never take a unit
}

func newLine(d *Drop, entries []Entry) *line {
	l := &line{d: d, order: fairOrder(d, entries), at: map[int64]int{}, units: map[string]int{}, passed: map[string]bool{}}
	for i, e := range l.order {
		l.at[e.Seq] = i
		switch e.Outcome {
		case OutcomeWon:
			l.units[e.UserID]++
		case OutcomePassed:
			l.passed[e.UserID] = true
		}
	}
	return l
}

// gone reports whether entry e can never take a unit again. Losing the
// chance is for good: a viewer who let a unit pass, or an entry that won.
func (l *line) gone(e *Entry) bool { return e.Outcome != OutcomeLost || l.passed[e.UserID] }

// next is the index in order of the entry that takes a unit passed on at
// t, or -1 when nobody is waiting.
func (l *line) next(t time.Time) int {
	for l.cursor < len(l.order) && l.gone(&l.order[l.cursor]) {
		l.cursor++
	}
	for i := l.cursor; i < len(l.order); i++ {
		e := &l.order[i]
		if l.gone(e) || e.DecidedAt.After(t) || l.units[e.UserID] >= unitLimit(l.d, e) {
			continue
		}
		return i
	}
	return -1
}

// pass moves a unit from the entry with seq from to order[to] (-1: to
// nobody) and returns the unit number the new holder gets.
func (l *line) pass(from int64, to int) int {
	if i, ok := l.at[from]; ok {
		e := &l.order[i]
		e.Outcome = OutcomePassed
		l.units[e.UserID]--
		l.passed[e.UserID] = true
	}
	if to < 0 {
		return 0
	}
	e := &l.order[to]
	e.Outcome = OutcomeWon
	l.units[e.UserID]++
	e.Unit = l.units[e.UserID]
	return e.Unit
}

// AuditPaid audits a drop that takes payment from its entries and holds.
func AuditPaid(d *Drop, entries []Entry, holds []Hold) AuditReport {
	return auditHolds(d, entries, holds)
}

// auditHolds checks a priced drop: the first awards are recomputed from
// the entries as they were before any pass, then every pass is replayed in
// the order it happened and must have gone to the entry the line gives.
func auditHolds(d *Drop, entries []Entry, holds []Hold) AuditReport {
	bySeq := map[int64]Hold{}
	byID := map[string]Hold{}
	for _, h := range holds {
		bySeq[h.Seq] = h
		byID[h.ID] = h
	}
	first := append([]Entry(nil), entries...)
	for i := range first {
		e := &first[i]
		h, ok := bySeq[e.Seq]
		switch {
		case ok && h.PassedFrom != "":
			e.Outcome, e.Unit = OutcomeLost, 0
		case e.Outcome == OutcomePassed:
			e.Outcome = OutcomeWon
			if ok {
				e.Unit = h.Unit
			}
		}
	}
	rep := Audit(d, first)
	problem := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }
	for _, e := range entries {
		h, ok := bySeq[e.Seq]
		if e.Outcome == OutcomeWon && (!ok || (h.State != HoldAwaiting && h.State != HoldPaid)) {
			problem("claim #%d holds a unit without an open or paid hold", e.Seq)
		}
	}
	ended := make([]Hold, 0, len(holds))
	for _, h := range holds {
		if h.State == HoldExpired || h.State == HoldReleased {
			ended = append(ended, h)
		}
	}
	sort.Slice(ended, func(i, j int) bool {
		a, b := ended[i], ended[j]
		if !a.SettledAt.Equal(b.SettledAt) {
			return a.SettledAt.Before(b.SettledAt)
		}
		if !a.Deadline.Equal(b.Deadline) {
			return a.Deadline.Before(b.Deadline)
		}
		return a.Seq < b.Seq
	})
	l := newLine(d, first)
	for _, h := range ended {
		l.pass(h.Seq, -1)
		want := l.next(h.SettledAt)
		got, passed := byID[h.PassedTo]
		switch {
		case want < 0 && passed:
			problem("hold %s passed to claim #%d but nobody was waiting", h.ID, got.Seq)
		case want >= 0 && !passed:
			problem("hold %s passed to nobody but claim #%d was next", h.ID, l.order[want].Seq)
		case want >= 0 && got.Seq != l.order[want].Seq:
			problem("hold %s passed to claim #%d but claim #%d was next", h.ID, got.Seq, l.order[want].Seq)
		}
		if passed {
			l.pass(-1, l.at[got.Seq])
		}
		rep.Passes++
	}
	if len(rep.Problems) > 12 {
		rep.Problems = append(rep.Problems[:12], fmt.Sprintf("... and %d more", len(rep.Problems)-12))
	}
	rep.Match = len(rep.Problems) == 0
	return rep
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
	if d.Priced() && s.books != nil {
		hs, err := s.books.Holds(ctx, HoldFilter{DropID: id})
		if err != nil {
			return AuditReport{}, err
		}
		return auditHolds(d, es, hs), nil
	}
	return Audit(d, es), nil
}
