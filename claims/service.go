package claims

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/microdrop/microdrop"
)

// Options are the claims settings that come from config.
type Options struct {
	DefaultGrace       time.Duration // grace when a drop does not say; 0 means none
	DefaultBucketWidth time.Duration // 250 ms when zero
	DefaultPolicy      Policy        // window when empty
	// Budget sizes the latency budget of window drops.
	Budget     BudgetOptions
	TokenTTL   time.Duration // 30 days when zero
	ClaimRate  float64       // claim attempts per second per user; 2 when zero
	ClaimBurst int           // 3 when zero
	MaxBatch   int           // claims decided per round; 4096 when zero
	// CommitTimeout bounds one round's ledger commit, counted from its
	// decision: a stalled ledger fails the round's claims after it. 5 s
	// when zero.
	CommitTimeout time.Duration
	// FinalRetryBackoff is the first wait before a drop whose final state
	// failed to commit is rebuilt from the ledger and finished again; it
	// doubles up to 10 s. 100 ms when zero.
	FinalRetryBackoff time.Duration
	// FeeBasisPoints is the platform's fee on each paid hold, in 1/100 %,
	// for creators without their own fee in Fees.
	FeeBasisPoints int
	// Fees are per-creator fees, by creator id (a drop's creator, else its
	// channel).
	Fees map[string]Fee
}

func (o *Options) fill() {
	if o.DefaultBucketWidth == 0 {
		o.DefaultBucketWidth = 250 * time.Millisecond
	}
	if o.DefaultPolicy == "" {
		o.DefaultPolicy = Window
	}
	o.Budget.fill()
	if o.TokenTTL == 0 {
		o.TokenTTL = 30 * 24 * time.Hour
	}
	if o.ClaimRate == 0 {
		o.ClaimRate = 2
	}
	if o.ClaimBurst == 0 {
		o.ClaimBurst = 3
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 4096
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 5 * time.Second
	}
	if o.FinalRetryBackoff <= 0 {
		o.FinalRetryBackoff = 100 * time.Millisecond
	}
}

// Deps is what the Service needs from its caller.
type Deps struct {
	Ledger Ledger
	Bus    microdrop.Bus
	Signer *TokenSigner
	Logger *slog.Logger
	Now    func() time.Time
	// Rand draws drop seeds and cue codes; crypto/rand when nil. Tests
	// fix it to get the same draw every run.
	Rand    io.Reader
	Metrics *Metrics // optional
	// Placement says where drops are decided: Local (the default) or
	// Leased for replicas sharing a Postgres ledger.
	Placement Placement
	// Receipts signs the receipts of paid holds; without it holds are
	// paid without one.
	Receipts *ReceiptSigner
	Options  Options
}

// Service is the registry of the deciders of the drops decided here (see
// decider.go), indexed by drop and by channel, in front of a Placement that
// answers for drops decided elsewhere.
type Service struct {
	ledger    Ledger
	books     Books // nil when the ledger keeps none: priced drops are refused
	holds     *holdTimer
	receipts  *ReceiptSigner
	bus       microdrop.Bus
	signer    *TokenSigner
	log       *slog.Logger
	now       func() time.Time
	rand      io.Reader
	opts      Options
	budgets   *budgets
	metrics   *Metrics
	limiter   *userLimiter
	guesses   *userLimiter // listen drops: wrong codes per remote address
	placement Placement
	deciders  *deciders
	ended     *lru.Cache[string, *Drop]
	health    health
	// cardRefunds pays card refunds back (RefundCardsWith); nil: owed only.
	cardRefunds   CardRefunder
	cardRefundsMu sync.Mutex

	wg        sync.WaitGroup // deciders and background work
	quit      chan struct{}  // closed by Close
	closeOnce sync.Once
}

// New returns a Service. Call Start to resume live drops from the ledger.
func New(d Deps) (*Service, error) {
	if d.Ledger == nil || d.Bus == nil || d.Signer == nil {
		return nil, errors.New("claims: ledger, bus and signer are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Placement == nil {
		d.Placement = Local()
	}
	d.Options.fill()
	if err := d.Options.Budget.Validate(); err != nil {
		return nil, fmt.Errorf("claims: budget: %w", err)
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	ended, err := lru.New[string, *Drop](1024)
	if err != nil {
		return nil, err
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	s := &Service{
		ledger: d.Ledger, bus: d.Bus, signer: d.Signer,
		log: d.Logger.With("component", "claims"), now: d.Now, rand: d.Rand, opts: d.Options,
		budgets:   newBudgets(d.Options.Budget),
		metrics:   d.Metrics,
		limiter:   newUserLimiter(d.Options.ClaimRate, d.Options.ClaimBurst, 1<<17),
		guesses:   newGuessLimiter(),
		placement: d.Placement,
		deciders:  newDeciders(),
		ended:     ended,
		health:    health{now: d.Now, problems: map[string]healthProblem{}},
		quit:      make(chan struct{}),
	}
	s.books, _ = d.Ledger.(Books)
	s.receipts = d.Receipts
	s.holds = newHoldTimer(s)
	if err := d.Placement.bind(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Metrics returns the service's counters.
func (s *Service) Metrics() *Metrics { return s.metrics }

// Start resumes the deciders of the drops that were live when the service
// last stopped and are decided here, rebuilt from the ledger.
func (s *Service) Start(ctx context.Context) error {
	if err := s.holds.start(ctx); err != nil {
		return err
	}
	return s.placement.start(ctx)
}

// Close stops background work and every decider after its pending
// commits, then lets the placement hand the drops on.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		s.placement.stop() // no more takeovers
		all := s.deciders.close()
		ids := make([]string, 0, len(all))
		for _, dc := range all {
			dc.stop()
			ids = append(ids, dc.id)
		}
		s.wg.Wait()
		s.placement.release(ids) // after the last commits: others take over at once
	})
	return nil
}

// resume starts the decider of one live drop from the ledger.
func (s *Service) resume(ctx context.Context, id string) error {
	d, err := s.ledger.Drop(ctx, id)
	if err != nil {
		return fmt.Errorf("claims: load drop %s: %w", id, err)
	}
	if d.State.Final() {
		s.rememberEnded(d)
		return nil
	}
	return s.resumeDrop(ctx, d)
}

func (s *Service) resumeDrop(ctx context.Context, d *Drop) error {
	if s.deciders.get(d.ID) != nil {
		return nil
	}
	entries, err := s.ledger.Entries(ctx, d.ID)
	if err != nil {
		return fmt.Errorf("claims: load entries of %s: %w", d.ID, err)
	}
	if s.deciders.start(newDecider(s, d, entries), &s.wg) {
		s.log.Info("resumed drop", "drop", d.ID, "channel", d.Channel, "remaining", d.Remaining, "entries", len(entries))
	}
	return nil
}

// OpenDrop creates a drop and starts taking claims. A channel has at most one
// live drop at a time.
func (s *Service) OpenDrop(ctx context.Context, req OpenRequest) (*Drop, error) {
	now := s.now()
	d, err := s.validateOpen(&req, now)
	if err != nil {
		return nil, err
	}
	if err := s.deciders.reserve(d.Channel, d.ID); err != nil {
		return nil, err
	}
	if err := s.placement.create(ctx, d); err != nil { // leased: also checks other replicas' channels
		s.deciders.unreserve(d.Channel, d.ID)
		return nil, fmt.Errorf("claims: create drop: %w", err)
	}
	if !s.deciders.start(newDecider(s, d, nil), &s.wg) && s.deciders.get(d.ID) == nil {
		// A forwarded claim can resume a leased drop the moment the ledger
		// has it; otherwise the service is closing and the next start
		// resumes it from the ledger.
		s.deciders.unreserve(d.Channel, d.ID)
		return nil, errShuttingDown
	}
	s.log.Info("drop opened", "drop", d.ID, "channel", d.Channel, "sku", d.SKU, "stock", d.Stock, "policy", d.Policy, "budget", d.Budget, "budget_basis", d.BudgetBasis, "by", req.By)
	if d.State == Open {
		s.publish(microdrop.Event{Kind: microdrop.DropOpened, Channel: d.Channel, DropID: d.ID, At: now, Drop: d.View()})
	}
	return d.Clone(), nil
}

func (s *Service) publish(e microdrop.Event) {
	if _, err := s.bus.Publish(context.Background(), e); err != nil {
		s.log.Warn("publish event", "kind", e.Kind, "drop", e.DropID, "err", err)
	}
}

// rememberEnded keeps a final drop at hand, so the flood of claims that
// follows a sell-out is answered without reading the ledger.
func (s *Service) rememberEnded(d *Drop) { s.ended.Add(d.ID, d.Clone()) }

// Drop returns a drop as it is now.
func (s *Service) Drop(ctx context.Context, id string) (*Drop, error) {
	if dc := s.deciders.get(id); dc != nil {
		return dc.snapshot(), nil
	}
	if d, ok := s.ended.Get(id); ok {
		return d.Clone(), nil
	}
	if !idPattern.MatchString(id) {
		return nil, &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "no such drop", Err: ErrDropNotFound}
	}
	return s.ledger.Drop(ctx, id)
}

// Current returns the channel's live drop, or else its most recent one.
func (s *Service) Current(ctx context.Context, channel string) (*Drop, error) {
	channel = NormalizeChannel(channel)
	if dc := s.deciders.onChannel(channel); dc != nil {
		return dc.snapshot(), nil
	}
	ds, err := s.ledger.Drops(ctx, DropFilter{Channel: channel, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "no drop in this channel yet", Err: ErrDropNotFound}
	}
	return ds[0], nil
}

// Live returns the channel's live drop (scheduled, open or grace).
func (s *Service) Live(channel string) (*Drop, bool) {
	channel = NormalizeChannel(channel)
	if dc := s.deciders.onChannel(channel); dc != nil {
		return dc.snapshot(), true
	}
	return s.placement.live(channel)
}

// Recent lists drops, newest first.
func (s *Service) Recent(ctx context.Context, channel string, limit int) ([]*Drop, error) {
	if limit <= 0 || limit > 500 {
		limit = 50
	}
	ds, err := s.ledger.Drops(ctx, DropFilter{Channel: NormalizeChannel(channel), Limit: limit})
	if err != nil {
		return nil, err
	}
	for i, d := range ds {
		if dc := s.deciders.get(d.ID); dc != nil {
			ds[i] = dc.snapshot()
		}
	}
	return ds, nil
}

// CloseDrop ends a drop's window now. Viewers who see the stream late still get
// the drop's grace; a second close during grace ends it at once.
func (s *Service) CloseDrop(ctx context.Context, id, by string) (*Drop, error) {
	return s.control(ctx, id, ctlClose, 0, by)
}

// ExtendDrop adds d to the drop's window.
func (s *Service) ExtendDrop(ctx context.Context, id string, d time.Duration, by string) (*Drop, error) {
	if d < MinDuration || d > MaxDuration {
		return nil, microdrop.Errorf(microdrop.EINVALID, "extend by between 1s and %s", MaxDuration)
	}
	return s.control(ctx, id, ctlExtend, d, by)
}

func (s *Service) control(ctx context.Context, id string, op ctlOp, d time.Duration, by string) (*Drop, error) {
	if dc := s.deciders.get(id); dc != nil {
		return dc.control(ctx, op, d, by)
	}
	return s.placement.control(ctx, id, op, d, by)
}

// controlHere controls the drop's decider here, or refuses; it never asks
// the placement.
func (s *Service) controlHere(ctx context.Context, id string, op ctlOp, d time.Duration, by string) (*Drop, error) {
	if dc := s.deciders.get(id); dc != nil {
		return dc.control(ctx, op, d, by)
	}
	return nil, s.controlAbsent(ctx, id)
}

// controlAbsent is the answer to a control for a drop with no decider here.
func (s *Service) controlAbsent(ctx context.Context, id string) error {
	dr, err := s.Drop(ctx, id)
	if err != nil {
		return err
	}
	return &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("drop %s is already %s", dr.ID, dr.State)}
}

// Viewer is who is claiming, as the platform tells us.
type Viewer struct {
	UserID         string    `json:"user_id"`
	Login          string    `json:"login"`
	Subscriber     bool      `json:"subscriber"` // subscriber, VIP, moderator or broadcaster
	AccountCreated time.Time `json:"account_created,omitzero"`
}

// ClaimRequest is one viewer's attempt.
type ClaimRequest struct {
	DropID  string `json:"drop_id"`
	Channel string `json:"channel"` // used when DropID is empty: the channel's live drop
	Viewer
	Code string `json:"code"`
	// RemoteIP is the address a web claim came from (empty from chat): on a
	// listen drop, wrong codes from one address are limited (listen.go).
	RemoteIP string `json:"remote_ip,omitempty"`
}

// ClaimResult is an accepted claim: a win (with its pickup token) or a raffle entry.
type ClaimResult struct {
	DropID    string    `json:"drop_id"`
	UserID    string    `json:"user_id"`
	Outcome   string    `json:"outcome"`
	Unit      int       `json:"unit,omitempty"`
	Token     string    `json:"token,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Remaining int       `json:"remaining"`
	// HoldID and PayBy: a win on a priced drop is a hold to pay by then.
	HoldID string    `json:"hold_id,omitempty"`
	PayBy  time.Time `json:"pay_by,omitzero"`
}

// Claim decides one claim. It returns after the decision is durable: a win
// is in the ledger before this returns it. Rejections are *microdrop.Error values with
// a Reason and are counted.
func (s *Service) Claim(ctx context.Context, req ClaimRequest) (ClaimResult, error) {
	start := time.Now()
	res, err := s.claim(ctx, req)
	s.metrics.observeClaim(res, err, time.Since(start))
	return res, err
}

func (s *Service) claim(ctx context.Context, req ClaimRequest) (ClaimResult, error) {
	if err := checkClaim(req); err != nil {
		return ClaimResult{}, err
	}
	if req.DropID == "" {
		ch := NormalizeChannel(req.Channel)
		if dc := s.deciders.onChannel(ch); dc != nil {
			return s.claimAt(ctx, dc, req)
		}
		d, ok := s.placement.live(ch)
		if !ok {
			return ClaimResult{}, reject(microdrop.ENOTFOUND, ReasonNotOpen, "no drop is open right now")
		}
		req.DropID = d.ID
	}
	if dc := s.deciders.get(req.DropID); dc != nil {
		return s.claimAt(ctx, dc, req)
	}
	return s.placement.claim(ctx, req)
}

// claimHere decides a claim on this process's decider of the drop, or
// refuses it; it never asks the placement. liveErr answers a drop the
// ledger holds live that has no decider here (nil: "closed").
func (s *Service) claimHere(ctx context.Context, req ClaimRequest, liveErr error) (ClaimResult, error) {
	if err := checkClaim(req); err != nil {
		return ClaimResult{}, err
	}
	if dc := s.deciders.get(req.DropID); dc != nil {
		return s.claimAt(ctx, dc, req)
	}
	return ClaimResult{}, s.absent(ctx, req.DropID, liveErr)
}

func checkClaim(req ClaimRequest) error {
	if !idPattern.MatchString(req.UserID) {
		return reject(microdrop.EINVALID, ReasonInvalid, "user id must be 1-64 letters, digits, '_' or '-'")
	}
	if len(req.Login) > 64 || len(req.Code) > 32 {
		return reject(microdrop.EINVALID, ReasonInvalid, "login or code too long")
	}
	return nil
}

func (s *Service) claimAt(ctx context.Context, dc *decider, req ClaimRequest) (ClaimResult, error) {
	if !s.limiter.allow(dc.channel, req.UserID, s.now()) {
		return ClaimResult{}, reject(microdrop.ERATELIMIT, ReasonRateLimited, "slow down: too many claim attempts")
	}
	return dc.claim(ctx, req)
}

// absent is the answer to a claim for a drop with no decider here.
func (s *Service) absent(ctx context.Context, id string, liveErr error) error {
	if d, ok := s.ended.Get(id); ok && d.State == SoldOut {
		return reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")
	} else if ok {
		return reject(microdrop.ECONFLICT, ReasonClosed, "this drop has closed")
	}
	d, err := s.Drop(ctx, id)
	if err != nil {
		return reject(microdrop.ENOTFOUND, ReasonNotOpen, "no such drop")
	}
	if d.State == SoldOut {
		return reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")
	}
	if liveErr != nil && !d.State.Final() {
		return liveErr
	}
	return reject(microdrop.ECONFLICT, ReasonClosed, "this drop has closed")
}

// Pickup is one of a viewer's pickup tokens.
type Pickup struct {
	DropID    string    `json:"drop_id"`
	SKU       string    `json:"sku"`
	Title     string    `json:"title"`
	Outcome   string    `json:"outcome"`
	Token     string    `json:"token,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Redeemed  bool      `json:"redeemed"`
}

// Status returns a viewer's entries in a drop (wins with tokens, raffle
// entries, losses), for !mytoken and the claim page.
func (s *Service) Status(ctx context.Context, dropID, userID string) ([]Pickup, error) {
	if !idPattern.MatchString(userID) {
		return nil, microdrop.Errorf(microdrop.EINVALID, "invalid user id")
	}
	d, err := s.Drop(ctx, dropID)
	if err != nil {
		return nil, err
	}
	es, err := s.ledger.UserEntries(ctx, d.ID, userID)
	if err != nil {
		return nil, err
	}
	out := make([]Pickup, 0, len(es))
	for _, e := range es {
		out = append(out, Pickup{DropID: d.ID, SKU: d.SKU, Title: d.Title, Outcome: e.Outcome,
			Token: e.Token, ExpiresAt: e.ExpiresAt, Redeemed: !e.Redeemed.IsZero()})
	}
	return out, nil
}

// Redemption is a pickup handed over.
type Redemption struct {
	Token      string    `json:"token"`
	DropID     string    `json:"drop_id"`
	SKU        string    `json:"sku"`
	Title      string    `json:"title"`
	UserID     string    `json:"user_id"`
	Login      string    `json:"login,omitempty"`
	Unit       int       `json:"unit"`
	RedeemedAt time.Time `json:"redeemed_at"`
}

// Redeem hands over a pickup exactly once. Forged, malformed, unknown,
// expired and used tokens are told apart.
func (s *Service) Redeem(ctx context.Context, text string) (Redemption, error) {
	tok, err := s.signer.Verify(text)
	if err != nil {
		s.metrics.redeem(err)
		return Redemption{}, err
	}
	e, err := s.ledger.Redeem(ctx, tok, s.now())
	if err != nil {
		s.metrics.redeem(err)
		switch {
		case errors.Is(err, ErrTokenUsed):
			// The desk says when, in its own time zone, and to whom.
			return Redemption{DropID: e.DropID, UserID: e.UserID, Login: e.Login, Unit: e.Unit, RedeemedAt: e.Redeemed}, &microdrop.Error{Code: microdrop.ECONFLICT, Message: "this pickup code was already redeemed at " + e.Redeemed.UTC().Format(time.RFC3339), Err: ErrTokenUsed}
		case errors.Is(err, ErrTokenExpired):
			return Redemption{}, &microdrop.Error{Code: microdrop.EFORBIDDEN, Message: "this pickup code expired at " + e.ExpiresAt.UTC().Format(time.RFC3339), Err: ErrTokenExpired}
		case errors.Is(err, ErrTokenUnknown):
			return Redemption{}, &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "this pickup code was never issued", Err: ErrTokenUnknown}
		}
		return Redemption{}, err
	}
	s.metrics.redeem(nil)
	d, err := s.ledger.Drop(ctx, e.DropID)
	if err != nil {
		return Redemption{}, err
	}
	red := Redemption{Token: tok, DropID: d.ID, SKU: d.SKU, Title: d.Title, UserID: e.UserID, Login: e.Login, Unit: e.Unit, RedeemedAt: e.Redeemed}
	s.publish(microdrop.Event{Kind: microdrop.Redeemed, Channel: d.Channel, DropID: d.ID, At: e.Redeemed,
		Claim: &microdrop.ClaimView{UserID: e.UserID, Login: e.Login, Outcome: "redeemed", Units: e.Unit}})
	return red, nil
}
