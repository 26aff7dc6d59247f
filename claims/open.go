package claims

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
)

// OpenRequest asks for a new drop. Zero values take defaults.
type OpenRequest struct {
	Channel      string    `json:"channel"`
	SKU          string    `json:"sku"`
	Title        string    `json:"title"`
	Stock        int       `json:"stock"`
	PriceMinor   int64     `json:"price_minor"`
	Currency     string    `json:"currency"`
	OpensAt      time.Time `json:"opens_at,omitzero"`
	Duration     Duration  `json:"duration"`
	Grace        *Duration `json:"grace,omitempty"`
	Cap          int       `json:"cap"`
	Stages       []Stage   `json:"stages,omitempty"`
	LimitedRunID string    `json:"limited_run_id"`
	CreatorID    string    `json:"creator_id"`
	Policy       Policy    `json:"policy"`
	BucketWidth  Duration  `json:"bucket_width"`
	// Budget overrides the latency budget of a window drop (the window in
	// which every claim has the same chance); nil: measured (see Budget).
	Budget    *Duration `json:"budget,omitempty"`
	ClaimCode string    `json:"claim_code"`
	// Listen makes a drop claimed with rotating codes heard in the audio
	// cue, each lasting ListenStep (DefaultListenStep when zero).
	Listen     bool     `json:"listen,omitempty"`
	ListenStep Duration `json:"listen_step,omitempty"`
	// PayWindow is how long a winner of a priced drop has to pay: 10 min
	// when zero, 1-60 min. Free drops have none.
	PayWindow Duration `json:"pay_window"`
	// Pay lists the confirmation classes a win may be paid by: "wallet",
	// "card". With a price and at least one, each win is a hold.
	Pay []string `json:"pay,omitempty"`
	By  string   `json:"-"`
}

func (s *Service) validateOpen(r *OpenRequest, now time.Time) (*Drop, error) {
	bad := func(format string, args ...any) (*Drop, error) {
		return nil, microdrop.Errorf(microdrop.EINVALID, format, args...)
	}
	r.Channel = NormalizeChannel(r.Channel)
	if !channelPattern.MatchString(r.Channel) {
		return bad("channel must be a channel login: lowercase letters, digits and _")
	}
	if !skuPattern.MatchString(r.SKU) {
		return bad("sku must be 1-64 letters, digits, '.', '_' or '-'")
	}
	if r.Title == "" {
		r.Title = r.SKU
	}
	if err := microdrop.CheckText("title", r.Title, 120); err != nil {
		return nil, err
	}
	if r.Stock < 1 || r.Stock > MaxStock {
		return bad("stock must be between 1 and %d", MaxStock)
	}
	if r.PriceMinor < 0 {
		return bad("price must not be negative")
	}
	if r.Currency == "" {
		r.Currency = "USD"
	}
	r.Currency = strings.ToUpper(r.Currency)
	if !currencyPattern.MatchString(r.Currency) {
		return bad("currency must be an ISO 4217 code like USD or EUR")
	}
	payWindow := time.Duration(0)
	seen := map[string]bool{}
	for _, m := range r.Pay {
		if (m != PayWallet && m != PayCard) || seen[m] {
			return bad("pay lists each of wallet and card at most once")
		}
		seen[m] = true
	}
	if len(r.Pay) > 0 && r.PriceMinor == 0 {
		return bad("a free drop takes no payment: set price_minor or leave pay out")
	}
	if len(r.Pay) > 0 && s.books == nil {
		return bad("this ledger keeps no books: paid drops are off")
	}
	if len(r.Pay) > 0 {
		payWindow = time.Duration(r.PayWindow)
		if payWindow == 0 {
			payWindow = DefaultPayWindow
		}
		if payWindow < MinPayWindow || payWindow > MaxPayWindow {
			return bad("pay_window must be between %s and %s", MinPayWindow, MaxPayWindow)
		}
	}
	dur := time.Duration(r.Duration)
	if dur < MinDuration || dur > MaxDuration {
		return bad("duration must be between 1s and %s", MaxDuration)
	}
	grace := s.opts.DefaultGrace
	if r.Policy == "" {
		r.Policy = s.opts.DefaultPolicy
	}
	if !r.Policy.Valid() {
		return bad("policy must be window, fcfs, bucketed or raffle")
	}
	var budget time.Duration
	var basis string
	if r.Policy == Window {
		if r.Budget != nil {
			budget = time.Duration(*r.Budget)
			if budget > MaxBudget {
				return bad("budget must be between 0s and %s", MaxBudget)
			}
			basis = "set for this drop"
			if r.By != "" {
				basis = "set by " + r.By
			}
		} else {
			budget, basis = s.budgets.budget(r.Channel)
		}
		// Viewers who see the open late see the close as late: they keep
		// the same allowance at the end, unless the drop says otherwise.
		grace = min(max(grace, budget), MaxGrace)
	} else if r.Budget != nil {
		return bad("budget applies to the window policy only")
	}
	if r.Grace != nil {
		grace = time.Duration(*r.Grace)
	}
	if grace < 0 || grace > MaxGrace {
		return bad("grace must be between 0s and %s", MaxGrace)
	}
	if r.Cap == 0 {
		r.Cap = 1
	}
	if r.Cap < 1 || r.Cap > MaxCap {
		return bad("cap must be between 1 and %d", MaxCap)
	}
	if len(r.Stages) > 8 {
		return bad("at most 8 stages")
	}
	for i, st := range r.Stages {
		if st.Cap < 1 || st.Cap > MaxCap {
			return bad("stage %d: cap must be between 1 and %d", i+1, MaxCap)
		}
		if st.Offset < 0 || time.Duration(st.Offset) >= dur {
			return bad("stage %d: offset must be within the drop's duration", i+1)
		}
		if i > 0 && st.Offset <= r.Stages[i-1].Offset {
			return bad("stage %d: offsets must increase", i+1)
		}
		if st.Eligible.MinAccountAgeDays < 0 || st.Eligible.MinAccountAgeDays > 36500 {
			return bad("stage %d: min_account_age_days out of range", i+1)
		}
		if !st.Eligible.Everyone && !st.Eligible.Subscribers && st.Eligible.MinAccountAgeDays == 0 {
			return bad("stage %d: say who is eligible (everyone, subscribers or min_account_age_days)", i+1)
		}
	}
	if len(r.Stages) > 0 && r.Stages[0].Offset != 0 {
		return bad("the first stage must start at offset 0s")
	}
	if len(r.LimitedRunID) > 64 || len(r.CreatorID) > 64 {
		return bad("limited_run_id and creator_id are at most 64 characters")
	}
	if r.LimitedRunID != "" && !idPattern.MatchString(r.LimitedRunID) {
		return bad("limited_run_id may use letters, digits, '_' and '-'")
	}
	if r.CreatorID != "" && !idPattern.MatchString(r.CreatorID) {
		return bad("creator_id may use letters, digits, '_' and '-'")
	}
	width := time.Duration(r.BucketWidth)
	if width == 0 && r.Policy != Window {
		// A window drop goes on in arrival order after its window unless
		// it asks for buckets.
		width = s.opts.DefaultBucketWidth
	}
	if width != 0 && (width < 10*time.Millisecond || width > 10*time.Second) {
		return bad("bucket_width must be between 10ms and 10s")
	}
	if r.ClaimCode != "" {
		r.ClaimCode = NormalizeCode(r.ClaimCode)
		if !codePattern.MatchString(r.ClaimCode) {
			return bad("claim code must be 3-16 letters or digits")
		}
	}
	opens := r.OpensAt
	if opens.IsZero() || opens.Before(now) {
		if !opens.IsZero() && now.Sub(opens) > time.Minute {
			return bad("opens_at is in the past")
		}
		opens = now
	}
	if opens.Sub(now) > 7*24*time.Hour {
		return bad("opens_at is more than 7 days away")
	}
	seed := make([]byte, 32)
	if _, err := io.ReadFull(s.rand, seed); err != nil {
		return nil, err
	}
	var cb [4]byte
	for binary.BigEndian.Uint32(cb[:]) == 0 {
		if _, err := io.ReadFull(s.rand, cb[:]); err != nil {
			return nil, err
		}
	}
	d := &Drop{
		ID: newDropID(), Channel: r.Channel, SKU: r.SKU, Title: r.Title,
		Stock: r.Stock, Remaining: r.Stock, PriceMinor: r.PriceMinor, Currency: r.Currency, PayWindow: payWindow,
		PayMethods: append([]string(nil), r.Pay...),
		OpensAt:    opens.UTC(), ClosesAt: opens.Add(dur).UTC(), Grace: grace, Cap: r.Cap,
		Stages: r.Stages, LimitedRunID: r.LimitedRunID, CreatorID: r.CreatorID,
		Policy: r.Policy, BucketWidth: width, Budget: budget, BudgetBasis: basis, ClaimCode: r.ClaimCode,
		CueCode: binary.BigEndian.Uint32(cb[:]), Seed: seed, SeedHash: SeedHashOf(seed),
		State: Open, CreatedAt: now.UTC(),
	}
	if opens.After(now) {
		d.State = Scheduled
	}
	if err := validateListen(r, d); err != nil {
		return nil, err
	}
	return d, nil
}

func newDropID() string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return strings.ToLower(crockford.EncodeToString(b[:]))
}
