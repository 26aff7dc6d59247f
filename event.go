package microdrop

import (
	"fmt"
	"strconv"
	"time"
)

// Kind names what happened. The values are stable: they are written to
// WebSocket frames, NATS subjects and export manifests.
type Kind string

const (
	DropOpened      Kind = "drop.opened"
	DropExtended    Kind = "drop.extended"
	Claimed         Kind = "drop.claimed"
	SoldOut         Kind = "drop.sold_out"
	DropClosed      Kind = "drop.closed"
	Redeemed        Kind = "token.redeemed"
	HighlightMarked Kind = "highlight.marked"
	// Holds of priced drops. HoldPassed tells the next viewer in the drop's
	// fair order that an unpaid unit is now theirs to pay.
	HoldPaid     Kind = "hold.paid"
	HoldExpired  Kind = "hold.expired"
	HoldReleased Kind = "hold.released"
	HoldPassed   Kind = "hold.passed"
	CueAired     Kind = "cue.aired"
	// CueStep announces a listen drop's next rotating code, for the overlay
	// and the relay to play now.
	CueStep Kind = "cue.step"
)

// Event is one state change, published after the ledger has committed it.
// One payload pointer is set, according to Kind: Drop for the drop's life
// cycle, Claim for Claimed and Redeemed (with the stock that follows a win),
// Highlight and Cue for theirs.
type Event struct {
	// Seq is assigned by the Bus: strictly increasing per bus.
	Seq uint64 `json:"seq"`
	// ID, when set, names the fact the event reports, the same on every
	// publish of it (the outbox event's id for hold events): a bus that
	// dedupes keeps one (JetStream's Nats-Msg-Id, within its duplicate
	// window), so the outbox relay may publish again what the service
	// already published.
	ID      string    `json:"id,omitempty"`
	Kind    Kind      `json:"kind"`
	Channel string    `json:"channel"`
	DropID  string    `json:"drop_id,omitempty"`
	At      time.Time `json:"at"`

	Drop      *DropView      `json:"drop,omitempty"`
	Claim     *ClaimView     `json:"claim,omitempty"`
	Highlight *HighlightView `json:"highlight,omitempty"`
	Cue       *CueView       `json:"cue,omitempty"`
	Step      *CueStepView   `json:"step,omitempty"`
	Hold      *HoldView      `json:"hold,omitempty"`
}

// HoldView is a hold as subscribers see it: who holds the unit and until
// when, never a receipt.
type HoldView struct {
	ID          string    `json:"id"`
	UserID      string    `json:"user_id"`
	Login       string    `json:"login,omitempty"`
	Unit        int       `json:"unit"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
	State       string    `json:"state"`
	Deadline    time.Time `json:"deadline"`
	PassedFrom  string    `json:"passed_from,omitempty"`
	PassedTo    string    `json:"passed_to,omitempty"`
}

// DropView is what a subscriber may know of a drop: nothing secret (the
// fairness seed appears only once revealed at close).
type DropView struct {
	ID         string    `json:"id"`
	Channel    string    `json:"channel"`
	SKU        string    `json:"sku"`
	Title      string    `json:"title"`
	Stock      int       `json:"stock"`
	Remaining  int       `json:"remaining"`
	PriceMinor int64     `json:"price_minor"`
	Currency   string    `json:"currency"`
	OpensAt    time.Time `json:"opens_at"`
	ClosesAt   time.Time `json:"closes_at"`
	GraceMS    int64     `json:"grace_ms"`
	// BudgetMS and WindowEndsAt are set for the window policy: every claim
	// before WindowEndsAt (the open plus the latency budget) has the same
	// chance, and the draw is made then.
	BudgetMS     int64     `json:"budget_ms,omitempty"`
	WindowEndsAt time.Time `json:"window_ends_at,omitzero"`
	Policy       string    `json:"policy"`
	State        string    `json:"state"`
	CueCode      uint32    `json:"cue_code"`
	CodeRequired bool      `json:"code_required"`
	ClaimCode    string    `json:"claim_code,omitempty"`
	LimitedRunID string    `json:"limited_run_id,omitempty"`
	CreatorID    string    `json:"creator_id,omitempty"`
	SeedHash     string    `json:"seed_hash"`
	Seed         string    `json:"seed,omitempty"`
	Winners      int       `json:"winners"`
	// ListenStepMS is set on a listen drop: claims carry a code heard in the
	// cue, which rotates every ListenStepMS.
	ListenStepMS int64 `json:"listen_step_ms,omitempty"`
	// PayMethods and PayWindowMS: on a drop that takes payment, how a win
	// is paid and how long a winner has.
	PayMethods  []string `json:"pay_methods,omitempty"`
	PayWindowMS int64    `json:"pay_window_ms,omitempty"`
}

// WindowNote says, in a viewer's words, what the window policy promises,
// e.g. "everyone who claims in the first 6 s has the same chance — results
// at 0:06" (the time counted from the open). Empty for other policies.
func (v *DropView) WindowNote() string {
	if v == nil || v.BudgetMS <= 0 {
		return ""
	}
	first := strconv.FormatInt(v.BudgetMS/1000, 10)
	if v.BudgetMS%1000 != 0 {
		first = strconv.FormatFloat(float64(v.BudgetMS)/1000, 'f', 1, 64)
	}
	at := (v.BudgetMS + 999) / 1000
	return fmt.Sprintf("everyone who claims in the first %s s has the same chance — results at %d:%02d", first, at/60, at%60)
}

// ClaimView is a decided claim as subscribers see it: the platform user id and
// login, never the pickup token.
type ClaimView struct {
	UserID  string `json:"user_id"`
	Login   string `json:"login,omitempty"`
	Outcome string `json:"outcome"`
	Units   int    `json:"units"`
	// Remaining is the drop's stock right after this win.
	Remaining int `json:"remaining"`
}

// HighlightView marks a moment worth clipping.
type HighlightView struct {
	Reason string `json:"reason"` // open, sold_out, close, clip, surge
	Label  string `json:"label,omitempty"`
	By     string `json:"by,omitempty"`
}

// CueView reports an audio cue heard on air. DelayMS is measured from the
// drop's open to the moment the cue was heard in the output.
type CueView struct {
	Code      uint32  `json:"code"`
	Stream    string  `json:"stream"`
	DelayMS   int64   `json:"delay_ms"`
	SNRDB     float64 `json:"snr_db"`
	HeardAtMS int64   `json:"heard_at_ms"`
}

// CueStepView is one step of a listen drop: the code its cue carries from
// StartsAt for StepMS, still accepted GraceMS after that.
type CueStepView struct {
	Code     uint32    `json:"code"`
	Step     int64     `json:"step"`
	StepMS   int64     `json:"step_ms"`
	StartsAt time.Time `json:"starts_at"`
	GraceMS  int64     `json:"grace_ms"`
}
