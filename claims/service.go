package claims

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/microdrop/microdrop"
)

// Options are the claims settings that come from config.
type Options struct {
	DefaultGrace       time.Duration // grace when a drop does not say; 0 means none
	DefaultBucketWidth time.Duration // 250 ms when zero
	DefaultPolicy      Policy        // bucketed when empty
	TokenTTL           time.Duration // 30 days when zero
	ClaimRate          float64       // claim attempts per second per user; 2 when zero
	ClaimBurst         int           // 3 when zero
	MaxBatch           int           // claims decided per round; 4096 when zero
}

func (o *Options) fill() {
	if o.DefaultBucketWidth == 0 {
		o.DefaultBucketWidth = 250 * time.Millisecond
	}
	if o.DefaultPolicy == "" {
		o.DefaultPolicy = Bucketed
	}
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
}

// Deps is what the Service needs from its caller.
type Deps struct {
	Ledger  Ledger
	Bus     microdrop.Bus
	Signer  *TokenSigner
	Logger  *slog.Logger
	Now     func() time.Time
	Metrics *Metrics // optional
	Options Options
}

// Service decides drops and claims. Each live drop has one decider goroutine
// that owns its state; claims queue to it, are decided in memory in batches,
// committed to the ledger in one transaction per batch, and only then
// acknowledged and published.
type Service struct {
	ledger  Ledger
	bus     microdrop.Bus
	signer  *TokenSigner
	log     *slog.Logger
	now     func() time.Time
	opts    Options
	metrics *Metrics
	limiter *userLimiter

	mu      sync.Mutex
	runners map[string]*runner // live drops by id
	ended   *lru.Cache[string, *Drop]
	closed  bool
	wg      sync.WaitGroup

	// replicas is set when the ledger is shared by several replicas
	// (claims/replica.go); nil on a single node.
	replicas *replicaSet
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
	d.Options.fill()
	ended, err := lru.New[string, *Drop](1024)
	if err != nil {
		return nil, err
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	s := &Service{
		ledger: d.Ledger, bus: d.Bus, signer: d.Signer,
		log: d.Logger.With("component", "claims"), now: d.Now, opts: d.Options,
		metrics: d.Metrics,
		limiter: newUserLimiter(d.Options.ClaimRate, d.Options.ClaimBurst, 1<<17),
		runners: make(map[string]*runner),
		ended:   ended,
	}
	// Scale-out: a shared ledger makes this one replica of several.
	s.replicas = newReplicaSet(s, d.Ledger, d.Bus)
	return s, nil
}

// Metrics returns the service's counters.
func (s *Service) Metrics() *Metrics { return s.metrics }

// Start resumes the deciders of every drop that was live when the service
// last stopped, rebuilt from the ledger.
func (s *Service) Start(ctx context.Context) error {
	if s.replicas != nil {
		// Scale-out: resume only the drops whose decider is gone.
		return s.replicas.start(ctx)
	}
	drops, err := s.ledger.Drops(ctx, DropFilter{Live: true})
	if err != nil {
		return fmt.Errorf("claims: load live drops: %w", err)
	}
	for _, d := range drops {
		entries, err := s.ledger.Entries(ctx, d.ID)
		if err != nil {
			return fmt.Errorf("claims: load entries of %s: %w", d.ID, err)
		}
		r := newRunner(s, d, entries)
		s.mu.Lock()
		s.runners[d.ID] = r
		s.mu.Unlock()
		s.wg.Add(1)
		go r.run()
		s.log.Info("resumed drop", "drop", d.ID, "channel", d.Channel, "remaining", d.Remaining, "entries", len(entries))
	}
	return nil
}

// Close stops every decider after its pending commits.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	rs := make([]*runner, 0, len(s.runners))
	for _, r := range s.runners {
		rs = append(rs, r)
	}
	s.mu.Unlock()
	if s.replicas != nil {
		s.replicas.stop() // no more takeovers
	}
	ids := make([]string, 0, len(rs))
	for _, r := range rs {
		r.stop()
		ids = append(ids, r.id)
	}
	s.wg.Wait()
	if s.replicas != nil {
		s.replicas.release(ids) // after the last commits: others take over at once
	}
	return nil
}

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
	ClaimCode    string    `json:"claim_code"`
	By           string    `json:"-"`
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
	dur := time.Duration(r.Duration)
	if dur < MinDuration || dur > MaxDuration {
		return bad("duration must be between 1s and %s", MaxDuration)
	}
	grace := s.opts.DefaultGrace
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
	if r.Policy == "" {
		r.Policy = s.opts.DefaultPolicy
	}
	if !r.Policy.Valid() {
		return bad("policy must be fcfs, bucketed or raffle")
	}
	width := time.Duration(r.BucketWidth)
	if width == 0 {
		width = s.opts.DefaultBucketWidth
	}
	if width < 10*time.Millisecond || width > 10*time.Second {
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
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	var cb [4]byte
	for binary.BigEndian.Uint32(cb[:]) == 0 {
		if _, err := rand.Read(cb[:]); err != nil {
			return nil, err
		}
	}
	d := &Drop{
		ID: newDropID(), Channel: r.Channel, SKU: r.SKU, Title: r.Title,
		Stock: r.Stock, Remaining: r.Stock, PriceMinor: r.PriceMinor, Currency: r.Currency,
		OpensAt: opens.UTC(), ClosesAt: opens.Add(dur).UTC(), Grace: grace, Cap: r.Cap,
		Stages: r.Stages, LimitedRunID: r.LimitedRunID, CreatorID: r.CreatorID,
		Policy: r.Policy, BucketWidth: width, ClaimCode: r.ClaimCode,
		CueCode: binary.BigEndian.Uint32(cb[:]), Seed: seed, SeedHash: SeedHashOf(seed),
		State: Open, CreatedAt: now.UTC(),
	}
	if opens.After(now) {
		d.State = Scheduled
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

// OpenDrop creates a drop and starts taking claims. A channel has at most one
// live drop at a time.
func (s *Service) OpenDrop(ctx context.Context, req OpenRequest) (*Drop, error) {
	now := s.now()
	d, err := s.validateOpen(&req, now)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, microdrop.Errorf(microdrop.EINTERNAL, "service is shutting down")
	}
	for _, r := range s.runners {
		if r.channel == d.Channel {
			s.mu.Unlock()
			return nil, &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("channel %s already has a live drop (%s); close it first", d.Channel, r.id)}
		}
	}
	// Hold the slot while the ledger writes, so two opens cannot race.
	r := newRunner(s, d, nil)
	s.runners[d.ID] = r
	s.mu.Unlock()

	if err := s.createDrop(ctx, d); err != nil { // scale-out: also checks other replicas' channels
		s.mu.Lock()
		delete(s.runners, d.ID)
		s.mu.Unlock()
		return nil, fmt.Errorf("claims: create drop: %w", err)
	}
	s.wg.Add(1)
	go r.run()
	s.log.Info("drop opened", "drop", d.ID, "channel", d.Channel, "sku", d.SKU, "stock", d.Stock, "policy", d.Policy, "by", req.By)
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

func (s *Service) runner(id string) *runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runners[id]
}

func (s *Service) forget(r *runner) {
	s.mu.Lock()
	if s.runners[r.id] == r {
		delete(s.runners, r.id)
	}
	s.mu.Unlock()
}

// Drop returns a drop as it is now.
func (s *Service) Drop(ctx context.Context, id string) (*Drop, error) {
	if r := s.runner(id); r != nil {
		return r.snapshot(), nil
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
	s.mu.Lock()
	for _, r := range s.runners {
		if r.channel == channel {
			s.mu.Unlock()
			return r.snapshot(), nil
		}
	}
	s.mu.Unlock()
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
	s.mu.Lock()
	for _, r := range s.runners {
		if r.channel == channel {
			s.mu.Unlock()
			return r.snapshot(), true
		}
	}
	s.mu.Unlock()
	if s.replicas != nil {
		return s.replicas.liveDrop(channel) // decided by another replica
	}
	return nil, false
}

// Waiting is how many claims of a live bucketed drop wait for their bucket's
// draw (0 for other drops).
func (s *Service) Waiting(dropID string) int {
	if r := s.runner(dropID); r != nil {
		return int(r.waiting.Load())
	}
	return 0
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
		if r := s.runner(d.ID); r != nil {
			ds[i] = r.snapshot()
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
	r := s.runner(id)
	if r == nil && s.replicas != nil && !isForwarded(ctx) {
		return s.replicas.controlElsewhere(ctx, id, op, d, by)
	}
	if r == nil {
		dr, err := s.Drop(ctx, id)
		if err != nil {
			return nil, err
		}
		return nil, &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("drop %s is already %s", dr.ID, dr.State)}
	}
	c := ctlReq{op: op, d: d, by: by, reply: make(chan ctlReply, 1)}
	select {
	case r.ctl <- c:
	case <-r.done:
		return nil, &microdrop.Error{Code: microdrop.ECONFLICT, Message: "drop has just ended"}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case rep := <-c.reply:
		return rep.drop, rep.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
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
	if !idPattern.MatchString(req.UserID) {
		return ClaimResult{}, reject(microdrop.EINVALID, ReasonInvalid, "user id must be 1-64 letters, digits, '_' or '-'")
	}
	if len(req.Login) > 64 || len(req.Code) > 32 {
		return ClaimResult{}, reject(microdrop.EINVALID, ReasonInvalid, "login or code too long")
	}
	var r *runner
	if req.DropID != "" {
		r = s.runner(req.DropID)
		if r == nil && s.replicas != nil && !isForwarded(ctx) {
			return s.replicas.claimElsewhere(ctx, req) // decided by another replica
		}
		if r == nil {
			if d, ok := s.ended.Get(req.DropID); ok && d.State == SoldOut {
				return ClaimResult{}, reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")
			} else if ok {
				return ClaimResult{}, reject(microdrop.ECONFLICT, ReasonClosed, "this drop has closed")
			}
			d, err := s.Drop(ctx, req.DropID)
			if err != nil {
				return ClaimResult{}, reject(microdrop.ENOTFOUND, ReasonNotOpen, "no such drop")
			}
			if d.State == SoldOut {
				return ClaimResult{}, reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")
			}
			if s.replicas != nil && !d.State.Final() { // scale-out: live, but its decider could not be reached
				return ClaimResult{}, reject(microdrop.EINTERNAL, ReasonUnavailable, "the drop's decider is moving to another replica; try again")
			}
			return ClaimResult{}, reject(microdrop.ECONFLICT, ReasonClosed, "this drop has closed")
		}
	} else {
		ch := NormalizeChannel(req.Channel)
		s.mu.Lock()
		for _, x := range s.runners {
			if x.channel == ch {
				r = x
				break
			}
		}
		s.mu.Unlock()
		if r == nil && s.replicas != nil && !isForwarded(ctx) {
			if d, ok := s.replicas.liveDrop(ch); ok { // decided by another replica
				req.DropID = d.ID
				return s.claim(ctx, req)
			}
		}
		if r == nil {
			return ClaimResult{}, reject(microdrop.ENOTFOUND, ReasonNotOpen, "no drop is open right now")
		}
	}
	if !s.limiter.allow(r.channel, req.UserID) {
		return ClaimResult{}, reject(microdrop.ERATELIMIT, ReasonRateLimited, "slow down: too many claim attempts")
	}
	r.inflight.Add(1)
	if r.closing.Load() {
		r.inflight.Add(-1)
		if r.snap.Load().State == SoldOut {
			return ClaimResult{}, reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")
		}
		return ClaimResult{}, reject(microdrop.ECONFLICT, ReasonClosed, "this drop has closed")
	}
	cr := getClaimReq()
	cr.req = req
	select {
	case r.in <- cr:
		r.inflight.Add(-1)
	case <-ctx.Done():
		// Not queued: nothing was decided.
		r.inflight.Add(-1)
		putClaimReq(cr)
		return ClaimResult{}, ctx.Err()
	}
	// Once queued the decider will answer; wait for it even if ctx ends, so
	// a win is never decided without the caller learning of it.
	rep := <-cr.reply
	putClaimReq(cr)
	return rep.res, rep.err
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
			return Redemption{}, &microdrop.Error{Code: microdrop.ECONFLICT, Message: "this pickup code was already redeemed at " + e.Redeemed.UTC().Format(time.RFC3339), Err: ErrTokenUsed}
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
	red := Redemption{Token: tok, DropID: d.ID, SKU: d.SKU, Title: d.Title, UserID: e.UserID, Unit: e.Unit, RedeemedAt: e.Redeemed}
	s.publish(microdrop.Event{Kind: microdrop.Redeemed, Channel: d.Channel, DropID: d.ID, At: e.Redeemed,
		Claim: &microdrop.ClaimView{UserID: e.UserID, Login: e.Login, Outcome: "redeemed", Units: e.Unit}})
	return red, nil
}
