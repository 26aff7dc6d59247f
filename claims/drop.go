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
)

// Valid reports whether p is a known policy.
func (p Policy) Valid() bool { return p == FCFS || p == Bucketed || p == Raffle }

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
	ID           string        `json:"id"`
	Channel      string        `json:"channel"`
	SKU          string        `json:"sku"`
	Title        string        `json:"title"`
	Stock        int           `json:"stock"`
	Remaining    int           `json:"remaining"`
	PriceMinor   int64         `json:"price_minor"`
	Currency     string        `json:"currency"`
	OpensAt      time.Time     `json:"opens_at"`
	ClosesAt     time.Time     `json:"closes_at"`
	Grace        time.Duration `json:"grace"`
	Cap          int           `json:"cap"`
	Stages       []Stage       `json:"stages,omitempty"`
	LimitedRunID string        `json:"limited_run_id,omitempty"`
	CreatorID    string        `json:"creator_id,omitempty"`
	Policy       Policy        `json:"policy"`
	BucketWidth  time.Duration `json:"bucket_width"`
	ClaimCode    string        `json:"claim_code,omitempty"`
	CueCode      uint32        `json:"cue_code"`
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
	return &c
}

// EndsAt is the last moment a claim is accepted: close plus grace.
func (d *Drop) EndsAt() time.Time { return d.ClosesAt.Add(d.Grace) }

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
)

// NormalizeChannel lowercases a channel login.
func NormalizeChannel(c string) string { return strings.ToLower(strings.TrimSpace(c)) }

// NormalizeCode uppercases a claim code as viewers type it.
func NormalizeCode(c string) string { return strings.ToUpper(strings.TrimSpace(c)) }
