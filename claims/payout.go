package claims

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// PayoutState is where a payout is in its life.
type PayoutState string

const (
	// PayoutPending: decided (amount and lines), no money moved yet.
	PayoutPending PayoutState = "pending"
	// PayoutInTransit: the amount left the creator's balance for
	// creator_transit (MovePayout); the provider may or may not have it.
	PayoutInTransit PayoutState = "in_transit"
	// PayoutPaid: final; the provider took it (MovePayoutPaid).
	PayoutPaid PayoutState = "paid"
	// PayoutReturned: final; the provider refused it and the money went
	// back to the creator's balance (MovePayoutReturned), or, from
	// pending, the balance fell below it and nothing moved.
	PayoutReturned PayoutState = "returned"
)

// Payout providers: the rails money leaves microdrop by.
const (
	ProviderStripeConnect = "stripe_connect"
	ProviderFile          = "file"
)

// Payout is one payment of a creator's balance.
type Payout struct {
	ID          string      `json:"id"`
	CreatorID   string      `json:"creator_id"`
	Currency    string      `json:"currency"`
	AmountMinor int64       `json:"amount_minor"`
	State       PayoutState `json:"state"`
	// Provider is stripe_connect or file; Destination the connected
	// account (acct_...) for stripe_connect.
	Provider    string `json:"provider"`
	Destination string `json:"destination,omitempty"`
	// Reference is the provider's word: a transfer id, or the payout
	// file's name.
	Reference string `json:"reference,omitempty"`
	// Note says why a payout was returned.
	Note      string    `json:"note,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Lines attribute the amount to the drops it was earned on; they sum
	// to AmountMinor.
	Lines []PayoutLine `json:"lines"`
}

// PayoutLine is a drop's part of a payout.
type PayoutLine struct {
	DropID       string `json:"drop_id"`
	SKU          string `json:"sku,omitempty"`
	LimitedRunID string `json:"limited_run_id,omitempty"`
	AmountMinor  int64  `json:"amount_minor"`
}

// PayoutFilter selects payouts (empty fields match all).
type PayoutFilter struct {
	CreatorID string
	State     PayoutState
}

// Payout errors.
var (
	ErrPayoutNotFound = errors.New("payout: no such payout")
	ErrPayoutState    = errors.New("payout: not in the state this step starts from")
	ErrPayoutExists   = errors.New("payout: a payout with this id exists")
	// ErrPayoutRefused is a provider's final no: the payout is returned.
	ErrPayoutRefused = errors.New("payout: refused by the provider")
)

// PayoutBooks keeps payout records beside the books, each state change in
// the same transaction as the movement it makes. The ledger contract suite
// covers it.
type PayoutBooks interface {
	// CreatePayout records a pending payout; ErrPayoutExists for a known id.
	CreatePayout(ctx context.Context, p Payout) error
	// TransitPayout moves a pending payout in transit with m (its
	// MovePayout), in one transaction: ErrPayoutState unless pending,
	// ErrInsufficientFunds (and nothing changes) when the creator's
	// balance is below the amount.
	TransitPayout(ctx context.Context, id string, m Movement, at time.Time) (Payout, error)
	// SettlePayout ends an in-transit payout paid or returned with m (its
	// MovePayoutPaid or MovePayoutReturned), in one transaction, keeping
	// reference and note. ErrPayoutState unless in transit. A pending
	// payout may be returned with no movement (m.Key empty).
	SettlePayout(ctx context.Context, id string, state PayoutState, reference, note string, m Movement, at time.Time) (Payout, error)
	// Payout returns one payout; ErrPayoutNotFound when unknown.
	Payout(ctx context.Context, id string) (Payout, error)
	// Payouts lists payouts oldest first.
	Payouts(ctx context.Context, f PayoutFilter) ([]Payout, error)
}

// Schedules.
const (
	ScheduleDaily     = "daily"
	ScheduleWeekly    = "weekly"
	ScheduleThreshold = "threshold"
)

// PayoutPlan is a creator's payout settings.
type PayoutPlan struct {
	// Schedule is daily, weekly (on Weekday) or threshold (whenever the
	// balance reaches ThresholdMinor); empty: never paid out.
	Schedule string
	Weekday  time.Weekday
	// ThresholdMinor is the balance a threshold schedule pays out at.
	ThresholdMinor int64
	// MinimumMinor: a balance below it waits for the next run.
	MinimumMinor int64
	Currency     string
	// ConnectAccount is the Stripe Connect account (acct_...); empty:
	// payout files.
	ConnectAccount string
}

// Validate checks a plan a person configured.
func (p PayoutPlan) Validate() error {
	switch p.Schedule {
	case "", ScheduleDaily, ScheduleWeekly:
	case ScheduleThreshold:
		if p.ThresholdMinor <= 0 {
			return errors.New("a threshold schedule needs threshold_minor above 0")
		}
	default:
		return fmt.Errorf("schedule %q must be daily, weekly or threshold", p.Schedule)
	}
	if p.Schedule != "" && !currencyPattern.MatchString(p.Currency) {
		return fmt.Errorf("currency %q must be three capital letters, like EUR", p.Currency)
	}
	if p.MinimumMinor < 0 || p.ThresholdMinor < 0 {
		return errors.New("minimum and threshold are minor units, not negative")
	}
	if p.ConnectAccount != "" && (!strings.HasPrefix(p.ConnectAccount, "acct_") || len(p.ConnectAccount) > 64 || !idPattern.MatchString(p.ConnectAccount)) {
		return fmt.Errorf("connect_account %q must be a Stripe account id (acct_ and letters or digits)", p.ConnectAccount)
	}
	return nil
}

// Due reports whether a payout of balance is due at now, given when the
// creator's last payout (not returned) was created (zero: never).
// Daily and weekly pay once per UTC day or week (from the weekday's
// midnight), catching up after a run was missed; every schedule waits
// for the minimum.
func (p PayoutPlan) Due(now, last time.Time, balance int64) bool {
	if balance <= 0 || balance < p.MinimumMinor {
		return false
	}
	now = now.UTC()
	switch p.Schedule {
	case ScheduleDaily:
		day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		return last.Before(day)
	case ScheduleWeekly:
		day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		back := (int(now.Weekday()) - int(p.Weekday) + 7) % 7
		return last.Before(day.AddDate(0, 0, -back))
	case ScheduleThreshold:
		return balance >= p.ThresholdMinor
	}
	return false
}

// PayoutRail pays a payout out. Pay must be idempotent per payout id (a
// resumed run calls it again for a payout it may already have paid):
// it returns the provider's reference, ErrPayoutRefused (wrapped) for a
// final refusal, any other error for one worth retrying.
type PayoutRail interface {
	Pay(ctx context.Context, p Payout) (reference string, err error)
}

// PayoutsDeps is what the payout runner needs.
type PayoutsDeps struct {
	Service *Service
	// Plans are the creators' payout settings, by creator id.
	Plans map[string]PayoutPlan
	// Connect pays creators with a connected account; nil: they wait
	// (their payouts stay pending, with a warning).
	Connect PayoutRail
	// Files pays the others by writing a payout file.
	Files  PayoutRail
	Logger *slog.Logger
	Now    func() time.Time // the service's clock when nil
}

// Payouts runs payouts: on a schedule (Start) or on demand (Run).
type Payouts struct {
	d     PayoutsDeps
	store PayoutBooks
	log   *slog.Logger
	// running serializes runs in this process; across processes the
	// ledger's state checks keep each step to once.
	running sync.Mutex
	quit    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// NewPayouts returns the runner; the service's ledger must keep payouts.
func NewPayouts(d PayoutsDeps) (*Payouts, error) {
	if d.Service == nil || d.Service.books == nil {
		return nil, errNoBooks
	}
	store, ok := d.Service.ledger.(PayoutBooks)
	if !ok {
		return nil, fmt.Errorf("claims: ledger %T keeps no payouts", d.Service.ledger)
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = d.Service.now
	}
	for id, p := range d.Plans {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("creator %s: %w", id, err)
		}
	}
	return &Payouts{d: d, store: store, log: d.Logger.With("component", "payouts"), quit: make(chan struct{})}, nil
}

// Store is the ledger's payout records.
func (p *Payouts) Store() PayoutBooks { return p.store }

// RunReport is what one run did.
type RunReport struct {
	At       time.Time `json:"at"`
	Resumed  int       `json:"resumed"`
	Created  int       `json:"created"`
	Paid     []Payout  `json:"paid"`
	Returned []Payout  `json:"returned"`
	// Waiting are payouts left pending or in transit (a provider that
	// failed and will be tried again).
	Waiting []Payout `json:"waiting"`
	Errors  []string `json:"errors,omitempty"`
}

// Run resumes every unfinished payout, then starts the ones due.
func (p *Payouts) Run(ctx context.Context) (RunReport, error) {
	p.running.Lock()
	defer p.running.Unlock()
	now := p.d.Now()
	rep := RunReport{At: now.UTC(), Paid: []Payout{}, Returned: []Payout{}, Waiting: []Payout{}}
	all, err := p.store.Payouts(ctx, PayoutFilter{})
	if err != nil {
		return rep, err
	}
	open := map[string]bool{} // creator+currency with a payout under way
	last := map[string]time.Time{}
	var todo []Payout
	for _, po := range all {
		k := po.CreatorID + "/" + po.Currency
		if po.State == PayoutPending || po.State == PayoutInTransit {
			todo = append(todo, po)
			open[k] = true
			rep.Resumed++
		}
		if po.State != PayoutReturned && po.CreatedAt.After(last[k]) {
			last[k] = po.CreatedAt
		}
	}
	ids := make([]string, 0, len(p.d.Plans))
	for id := range p.d.Plans {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		plan := p.d.Plans[id]
		k := id + "/" + plan.Currency
		if plan.Schedule == "" || open[k] {
			continue
		}
		bal, err := p.d.Service.books.Balance(ctx, CreatorAccount(id), plan.Currency)
		if err != nil {
			return rep, err
		}
		if !plan.Due(now, last[k], bal) {
			continue
		}
		lines, err := p.lines(ctx, id, plan.Currency, all)
		if err != nil {
			return rep, err
		}
		po := Payout{ID: payoutID(id, plan.Currency, now), CreatorID: id, Currency: plan.Currency, AmountMinor: bal,
			State: PayoutPending, Provider: ProviderFile, CreatedAt: now.UTC(), UpdatedAt: now.UTC(), Lines: fitLines(lines, bal)}
		if plan.ConnectAccount != "" {
			po.Provider, po.Destination = ProviderStripeConnect, plan.ConnectAccount
		}
		if err := p.store.CreatePayout(ctx, po); err != nil {
			if errors.Is(err, ErrPayoutExists) {
				continue // another replica's run in the same second
			}
			return rep, err
		}
		rep.Created++
		todo = append(todo, po)
	}
	for _, po := range todo {
		done, err := p.advance(ctx, po)
		switch {
		case err != nil:
			rep.Errors = append(rep.Errors, fmt.Sprintf("payout %s: %v", po.ID, err))
			p.log.Warn("payout not finished; the next run tries again", "payout", po.ID, "err", err)
			rep.Waiting = append(rep.Waiting, done)
		case done.State == PayoutPaid:
			rep.Paid = append(rep.Paid, done)
		case done.State == PayoutReturned:
			rep.Returned = append(rep.Returned, done)
		default:
			rep.Waiting = append(rep.Waiting, done)
		}
	}
	return rep, nil
}

func payoutID(creator, currency string, at time.Time) string {
	return "po-" + creator + "-" + strings.ToLower(currency) + "-" + at.UTC().Format("20060102T150405")
}

// advance takes a payout through its remaining steps.
func (p *Payouts) advance(ctx context.Context, po Payout) (Payout, error) {
	now := p.d.Now().UTC()
	if po.State == PayoutPending {
		m := Movement{Key: "payout:" + po.ID, Kind: MovePayout, At: now, Postings: []Posting{
			{Account: CreatorAccount(po.CreatorID), Currency: po.Currency, Amount: -po.AmountMinor},
			{Account: CreatorTransitAccount(po.CreatorID), Currency: po.Currency, Amount: po.AmountMinor}}}
		next, err := p.store.TransitPayout(ctx, po.ID, m, now)
		if errors.Is(err, ErrInsufficientFunds) {
			// A refund took part of the balance since the payout was
			// decided: nothing moved; the next run decides again.
			return p.store.SettlePayout(ctx, po.ID, PayoutReturned, "", "the balance fell below the payout before it started", Movement{}, now)
		}
		if err != nil {
			return po, err
		}
		po = next
	}
	if po.State != PayoutInTransit {
		return po, nil
	}
	rail := p.d.Files
	if po.Provider == ProviderStripeConnect {
		rail = p.d.Connect
	}
	if rail == nil {
		return po, fmt.Errorf("no %s rail configured", po.Provider)
	}
	ref, err := rail.Pay(ctx, po)
	if errors.Is(err, ErrPayoutRefused) {
		p.log.Warn("payout refused; its money is back in the creator's balance", "payout", po.ID, "err", err)
		return p.store.SettlePayout(ctx, po.ID, PayoutReturned, "", truncate(err.Error(), 300), Movement{Key: "payout:" + po.ID + ":returned",
			Kind: MovePayoutReturned, At: now, Postings: []Posting{
				{Account: CreatorTransitAccount(po.CreatorID), Currency: po.Currency, Amount: -po.AmountMinor},
				{Account: CreatorAccount(po.CreatorID), Currency: po.Currency, Amount: po.AmountMinor}}}, now)
	}
	if err != nil {
		return po, err
	}
	done, err := p.store.SettlePayout(ctx, po.ID, PayoutPaid, ref, "", Movement{Key: "payout:" + po.ID + ":paid", Kind: MovePayoutPaid, At: now,
		Postings: []Posting{
			{Account: CreatorTransitAccount(po.CreatorID), Currency: po.Currency, Amount: -po.AmountMinor},
			{Account: PaidOutAccount(po.Provider), Currency: po.Currency, Amount: po.AmountMinor}}}, now)
	if err != nil {
		return po, err
	}
	p.log.Info("payout paid", "payout", done.ID, "creator", done.CreatorID, "amount", done.AmountMinor, "currency", done.Currency,
		"provider", done.Provider, "reference", done.Reference)
	return done, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// lines attributes a creator's balance to drops: each drop's net credit
// (payments less refunds) less what earlier payouts that were not
// returned already carried of it.
func (p *Payouts) lines(ctx context.Context, creator, currency string, payouts []Payout) ([]PayoutLine, error) {
	st, err := p.d.Service.dropNets(ctx, creator, currency, time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	carried := map[string]int64{}
	for _, po := range payouts {
		if po.CreatorID != creator || po.Currency != currency || po.State == PayoutReturned {
			continue
		}
		for _, l := range po.Lines {
			carried[l.DropID] += l.AmountMinor
		}
	}
	var out []PayoutLine
	for _, d := range st {
		if n := d.Net - carried[d.DropID]; n != 0 {
			out = append(out, PayoutLine{DropID: d.DropID, SKU: d.SKU, LimitedRunID: d.LimitedRunID, AmountMinor: n})
		}
	}
	return out, nil
}

// fitLines makes lines sum to amount: money in the balance that no drop
// explains (a credit posted by hand) gets a line of its own.
func fitLines(lines []PayoutLine, amount int64) []PayoutLine {
	var sum int64
	for _, l := range lines {
		sum += l.AmountMinor
	}
	if sum != amount {
		lines = append(lines, PayoutLine{DropID: "", AmountMinor: amount - sum})
	}
	if lines == nil {
		lines = []PayoutLine{}
	}
	return lines
}

// payoutTick is how often the scheduler looks at the clock: schedules are
// by the day, so a minute is soon enough, and an injected clock that
// jumps is noticed at the next tick.
const payoutTick = time.Minute

// Start runs payouts on schedule until Close: once at start (resuming
// what a crash left), then every tick.
func (p *Payouts) Start(tick time.Duration) {
	if tick <= 0 {
		tick = payoutTick
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			rep, err := p.Run(ctx)
			cancel()
			if err != nil {
				p.log.Warn("payout run failed", "err", err)
			} else if len(rep.Paid)+len(rep.Returned)+len(rep.Errors) > 0 {
				p.log.Info("payout run", "paid", len(rep.Paid), "returned", len(rep.Returned), "waiting", len(rep.Waiting))
			}
			select {
			case <-p.quit:
				return
			case <-t.C:
			}
		}
	}()
}

// Close stops the scheduler and waits for a run under way.
func (p *Payouts) Close() error {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
	return nil
}

// Balances is every creator's balance, the creators with a payout plan
// included.
func (p *Payouts) Balances(ctx context.Context) ([]CreatorBalance, error) {
	named := map[string]string{}
	for id, plan := range p.d.Plans {
		named[id] = plan.Currency
	}
	return p.d.Service.CreatorBalances(ctx, p.store, named)
}

// Plan is a creator's payout plan.
func (p *Payouts) Plan(creator string) (PayoutPlan, bool) {
	plan, ok := p.d.Plans[creator]
	return plan, ok
}

// String says a plan in words, for the dashboard.
func (p PayoutPlan) String() string {
	if p.Schedule == "" {
		return "no payouts"
	}
	s := p.Schedule
	switch p.Schedule {
	case ScheduleWeekly:
		s += " on " + p.Weekday.String()
	case ScheduleThreshold:
		s += " at " + formatMoney(p.ThresholdMinor, p.Currency)
	}
	if p.MinimumMinor > 0 {
		s += ", minimum " + formatMoney(p.MinimumMinor, p.Currency)
	}
	if p.ConnectAccount != "" {
		return s + ", Stripe Connect " + p.ConnectAccount
	}
	return s + ", payout file"
}
