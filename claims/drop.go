package claims

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
)

// Policy decides the order in which simultaneous claims win.
type Policy string

const (
	// FCFS awards in arrival order.
	FCFS Policy = "fcfs"
	// Bucketed treats arrivals in one bucket as simultaneous and orders them by
	// a shuffle seeded with a committed-then-revealed seed.
	Bucketed Policy = "bucketed"
	// Raffle takes entries until close plus grace and draws at close.
	Raffle Policy = "raffle"
	// Window treats every claim inside the drop's latency budget (from the
	// open to the open plus Budget) as simultaneous: one seeded order for
	// the whole window, decided when it ends. After it the queue goes on in
	// arrival order, or in buckets of BucketWidth when one is set.
	Window Policy = "window"
)

// Valid reports whether p is a known policy.
func (p Policy) Valid() bool { return p == FCFS || p == Bucketed || p == Raffle || p == Window }

// State is where a drop is in its life.
type State string

const (
	Scheduled State = "scheduled" // opens in the future
	Open      State = "open"      // taking claims
	Grace     State = "grace"     // window ended; claims from late-seeing viewers still count
	Closed    State = "closed"    // final: seed revealed, raffle drawn
	SoldOut   State = "sold_out"  // final: no stock left
)

// Final reports whether no claim can change the drop any more.
func (s State) Final() bool { return s == Closed || s == SoldOut }

// Eligibility says who may claim during a stage.
type Eligibility struct {
	Everyone bool `json:"everyone,omitempty" yaml:"everyone"`
	// Subscribers (and VIPs, moderators, the broadcaster) are eligible.
	Subscribers bool `json:"subscribers,omitempty" yaml:"subscribers"`
	// MinAccountAgeDays makes accounts at least this old eligible, when the
	// platform tells us the account's creation date.
	MinAccountAgeDays int `json:"min_account_age_days,omitempty" yaml:"min_account_age_days"`
}

// Stage is one step of a progressive cap: from Offset after the open, the
// eligible viewers may win up to Cap units each.
type Stage struct {
	Offset   Duration    `json:"offset" yaml:"offset"`
	Cap      int         `json:"cap" yaml:"cap"`
	Eligible Eligibility `json:"eligible" yaml:"eligible"`
}

// Drop is one limited release.
type Drop struct {
	ID         string `json:"id"`
	Channel    string `json:"channel"`
	SKU        string `json:"sku"`
	Title      string `json:"title"`
	Stock      int    `json:"stock"`
	Remaining  int    `json:"remaining"`
	PriceMinor int64  `json:"price_minor"`
	Currency   string `json:"currency"`
	// PayWindow is how long a winner of a priced drop has to pay.
	PayWindow time.Duration `json:"pay_window"`
	// PayMethods are the confirmation classes a hold may be paid by
	// (PayWallet, PayCard). A drop with a price and none shows its price
	// and collects it elsewhere, as before holds existed.
	PayMethods   []string      `json:"pay_methods,omitempty"`
	OpensAt      time.Time     `json:"opens_at"`
	ClosesAt     time.Time     `json:"closes_at"`
	Grace        time.Duration `json:"grace"`
	Cap          int           `json:"cap"`
	Stages       []Stage       `json:"stages,omitempty"`
	LimitedRunID string        `json:"limited_run_id,omitempty"`
	CreatorID    string        `json:"creator_id,omitempty"`
	Policy       Policy        `json:"policy"`
	BucketWidth  time.Duration `json:"bucket_width"`
	// Budget is the latency budget of a window drop: claims from the open
	// to the open plus Budget are simultaneous. BudgetBasis says how it was
	// reached (measured delay, platform spread, reaction; or who set it).
	Budget      time.Duration `json:"budget"`
	BudgetBasis string        `json:"budget_basis,omitempty"`
	ClaimCode   string        `json:"claim_code,omitempty"`
	CueCode     uint32        `json:"cue_code"`
	// ListenStep is how long each rotating code of a listen drop lasts;
	// 0 for a drop that is not claimed by listening (listen.go).
	ListenStep  time.Duration `json:"listen_step,omitempty"`
	Seed        []byte        `json:"-"` // secret until the drop is final
	SeedHash    string        `json:"seed_hash"`
	State       State         `json:"state"`
	ClosedAt    time.Time     `json:"closed_at,omitzero"`
	CloseReason string        `json:"close_reason,omitempty"`
	CreatedAt   time.Time     `json:"created_at"`
}

// Clone returns a deep copy, so callers never share a decider's drop.
func (d *Drop) Clone() *Drop {
	c := *d
	c.Stages = append([]Stage(nil), d.Stages...)
	c.Seed = append([]byte(nil), d.Seed...)
	c.PayMethods = append([]string(nil), d.PayMethods...)
	return &c
}

// Confirmation classes a drop can accept.
const (
	PayWallet = "wallet" // instant: a debit of the viewer's wallet, final in one ledger transaction
	PayCard   = "card"   // card: Stripe Checkout, paid on a verified webhook
)

// Priced reports whether a win is a hold to be paid here.
func (d *Drop) Priced() bool { return d.PriceMinor > 0 && len(d.PayMethods) > 0 }

// Accepts reports whether a hold of d may be paid by method.
func (d *Drop) Accepts(method string) bool {
	for _, m := range d.PayMethods {
		if m == method {
			return true
		}
	}
	return false
}

// EndsAt is the last moment a claim is accepted: close plus grace.
func (d *Drop) EndsAt() time.Time { return d.ClosesAt.Add(d.Grace) }

// WindowEndsAt is when a window drop's simultaneous window ends and its
// draw is made (zero for other policies).
func (d *Drop) WindowEndsAt() time.Time {
	if d.Policy != Window {
		return time.Time{}
	}
	return d.OpensAt.Add(d.Budget)
}

// bucketOf is the bucket a claim arriving at t belongs to. Window drops:
// 0 is the window; after it 1, or 1+n for the nth bucket after the window
// when BucketWidth is set.
func (d *Drop) bucketOf(t time.Time) int64 {
	switch d.Policy {
	case Bucketed:
		return int64(t.Sub(d.OpensAt) / d.BucketWidth)
	case Window:
		end := d.WindowEndsAt()
		if t.Before(end) {
			return 0
		}
		if d.BucketWidth <= 0 {
			return 1
		}
		return 1 + int64(t.Sub(end)/d.BucketWidth)
	}
	return 0
}

// bucketEnd is when bucket b has ended and can be decided.
func (d *Drop) bucketEnd(b int64) time.Time {
	if d.Policy == Window {
		if b == 0 || d.BucketWidth <= 0 {
			return d.WindowEndsAt()
		}
		return d.WindowEndsAt().Add(time.Duration(b) * d.BucketWidth)
	}
	return d.OpensAt.Add(time.Duration(b+1) * d.BucketWidth)
}

// StateAt is the drop's state at t, from its times (a final state stays).
func (d *Drop) StateAt(t time.Time) State {
	switch {
	case d.State.Final():
		return d.State
	case t.Before(d.OpensAt):
		return Scheduled
	case t.Before(d.ClosesAt):
		return Open
	case t.Before(d.EndsAt()):
		return Grace
	default:
		return Closed
	}
}

// stageAt returns the progressive-cap stage in force at t, or nil when the
// drop has none (everyone, drop cap).
func (d *Drop) stageAt(t time.Time) *Stage {
	var cur *Stage
	off := t.Sub(d.OpensAt)
	for i := range d.Stages {
		if time.Duration(d.Stages[i].Offset) <= off {
			cur = &d.Stages[i]
		}
	}
	return cur
}

// SeedHashOf is the commitment published at open: hex SHA-256 of the seed.
func SeedHashOf(seed []byte) string {
	h := sha256.Sum256(seed)
	return hex.EncodeToString(h[:])
}

// View is what subscribers may see: the seed only once final. It carries
// the claim code, which the overlay shows on stream; edges that answer
// people who have not seen the stream strip it (see Handler).
func (d *Drop) View() *microdrop.DropView {
	v := &microdrop.DropView{
		ID: d.ID, Channel: d.Channel, SKU: d.SKU, Title: d.Title,
		Stock: d.Stock, Remaining: d.Remaining, PriceMinor: d.PriceMinor, Currency: d.Currency,
		OpensAt: d.OpensAt, ClosesAt: d.ClosesAt, GraceMS: d.Grace.Milliseconds(),
		Policy: string(d.Policy), State: string(d.State), CueCode: d.CueCode,
		CodeRequired: d.ClaimCode != "", ClaimCode: d.ClaimCode, LimitedRunID: d.LimitedRunID, CreatorID: d.CreatorID,
		SeedHash: d.SeedHash, Winners: d.Stock - d.Remaining,
	}
	v.ListenStepMS = d.ListenStep.Milliseconds()
	if d.Policy == Window {
		v.BudgetMS = d.Budget.Milliseconds()
		v.WindowEndsAt = d.WindowEndsAt()
	}
	if d.Priced() {
		v.PayMethods, v.PayWindowMS = append([]string(nil), d.PayMethods...), d.PayWindow.Milliseconds()
	}
	if d.State.Final() {
		v.Seed = hex.EncodeToString(d.Seed)
	}
	return v
}

var (
	skuPattern      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	channelPattern  = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
	codePattern     = regexp.MustCompile(`^[A-Z0-9]{3,16}$`)
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
	idPattern       idChars
)

// idChars matches ids and user ids: 1-64 letters, digits, '_' or '-'. It is
// on every claim's path, where a regexp cost a tenth of the handler's CPU.
type idChars struct{}

// MatchString reports whether s is a well-formed id.
func (idChars) MatchString(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Limits that keep one drop's memory and the ledger bounded.
const (
	MaxStock    = 1_000_000
	MaxCap      = 100
	MaxDuration = 24 * time.Hour
	MaxGrace    = 2 * time.Minute
	MaxBudget   = 2 * time.Minute

	DefaultPayWindow = 10 * time.Minute
	MinPayWindow     = time.Minute
	MaxPayWindow     = time.Hour
)

// NormalizeChannel lowercases a channel login.
func NormalizeChannel(c string) string { return strings.ToLower(strings.TrimSpace(c)) }

// NormalizeCode uppercases a claim code as viewers type it.
func NormalizeCode(c string) string { return strings.ToUpper(strings.TrimSpace(c)) }
