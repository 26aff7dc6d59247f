package claims

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/microdrop/microdrop"
)

// holdTimer ends unpaid holds: it keeps every awaiting hold's deadline in
// a heap and, when the injected clock says one is due, passes its unit to
// the next entry in the drop's fair order. The ledger guards every pass
// (a hold ends once, an entry takes a unit once), so a payment racing the
// expiry, or two replicas expiring one hold, leave one outcome.
type holdTimer struct {
	s    *Service
	mu   sync.Mutex
	due  dueHeap
	kick chan struct{}
	// passing serializes the computation of passes: two passes computed
	// from the same line would hand one entry two units.
	passing sync.Mutex
}

type dueHold struct {
	id, drop string
	seq      int64
	at       time.Time
}

type dueHeap []dueHold

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(dueHold)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// holdPollMax bounds how long the timer sleeps, so a clock that jumps
// (a test's, or a corrected wall clock) is noticed soon.
const holdPollMax = 250 * time.Millisecond

func newHoldTimer(s *Service) *holdTimer {
	return &holdTimer{s: s, kick: make(chan struct{}, 1)}
}

func (t *holdTimer) track(hs ...Hold) {
	t.mu.Lock()
	for _, h := range hs {
		if h.State == HoldAwaiting {
			heap.Push(&t.due, dueHold{id: h.ID, drop: h.DropID, seq: h.Seq, at: h.Deadline})
		}
	}
	t.mu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// start loads the awaiting holds from the ledger and runs the timer.
func (t *holdTimer) start(ctx context.Context) error {
	if t.s.books == nil {
		return nil
	}
	hs, err := t.s.books.Holds(ctx, HoldFilter{State: HoldAwaiting})
	if err != nil {
		return fmt.Errorf("claims: load awaiting holds: %w", err)
	}
	t.track(hs...)
	t.s.wg.Add(1)
	go t.run()
	return nil
}

// holdRescan is how often the timer looks in the ledger for overdue holds
// it does not know: holds made by another replica that has since died.
const holdRescan = 15 * time.Second

func (t *holdTimer) run() {
	defer t.s.wg.Done()
	timer := time.NewTimer(holdPollMax)
	defer timer.Stop()
	rescan := time.NewTicker(holdRescan)
	defer rescan.Stop()
	for {
		wait := holdPollMax
		t.mu.Lock()
		if len(t.due) > 0 {
			wait = min(wait, max(t.due[0].at.Sub(t.s.now()), 0))
		}
		t.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-t.s.quit:
			return
		case <-t.kick:
		case <-timer.C:
		case <-rescan.C:
			t.rescan()
		}
		if err := t.expire(context.Background()); err != nil {
			t.s.log.Warn("expire holds", "err", err)
		}
	}
}

// rescan tracks the awaiting holds in the ledger that are already due; one
// the timer also knows is passed once, the second attempt finds it ended.
func (t *holdTimer) rescan() {
	ctx, cancel := context.WithTimeout(context.Background(), t.s.opts.CommitTimeout)
	defer cancel()
	hs, err := t.s.books.Holds(ctx, HoldFilter{State: HoldAwaiting})
	if err != nil {
		t.s.log.Warn("rescan awaiting holds", "err", err)
		return
	}
	now := t.s.now()
	var due []Hold
	for _, h := range hs {
		if !h.Deadline.After(now) {
			due = append(due, h)
		}
	}
	if len(due) > 0 {
		t.track(due...)
	}
}

// expire passes on every hold due by now.
func (t *holdTimer) expire(ctx context.Context) error {
	now := t.s.now()
	byDrop := map[string][]string{}
	var order []string
	t.mu.Lock()
	for len(t.due) > 0 && !t.due[0].at.After(now) {
		d := heap.Pop(&t.due).(dueHold)
		if byDrop[d.drop] == nil {
			order = append(order, d.drop)
		}
		byDrop[d.drop] = append(byDrop[d.drop], d.id)
	}
	t.mu.Unlock()
	var errs []error
	for _, drop := range order {
		if _, err := t.pass(ctx, drop, byDrop[drop], HoldExpired, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pass ends the given holds of one drop (expired or released) at now and
// hands each unit to the next entry in the drop's fair order, in deadline
// order. Passes are applied in order and stop at the first the ledger
// refuses (a hold paid meanwhile); the rest are computed again from the
// ledger, so no pass is computed from a line that did not happen.
func (t *holdTimer) pass(ctx context.Context, dropID string, ids []string, state HoldState, now time.Time) ([]Hold, error) {
	t.passing.Lock()
	defer t.passing.Unlock()
	var ended []Hold
	for attempt := 0; len(ids) > 0; attempt++ {
		if attempt == 5 {
			t.retryLater(dropID, ids, now)
			return ended, fmt.Errorf("drop %s: %d passes still refused after retries", dropID, len(ids))
		}
		d, err := t.s.ledger.Drop(ctx, dropID)
		if err != nil {
			t.retryLater(dropID, ids, now)
			return ended, err
		}
		es, err := t.s.ledger.Entries(ctx, dropID)
		if err != nil {
			t.retryLater(dropID, ids, now)
			return ended, err
		}
		hs, err := t.s.books.Holds(ctx, HoldFilter{DropID: dropID})
		if err != nil {
			t.retryLater(dropID, ids, now)
			return ended, err
		}
		byID := make(map[string]Hold, len(hs))
		for _, h := range hs {
			byID[h.ID] = h
		}
		login := make(map[int64]string, len(es))
		for _, e := range es {
			login[e.Seq] = e.Login
		}
		var todo []Hold
		seen := make(map[string]bool, len(ids))
		for _, id := range ids {
			h, ok := byID[id]
			if seen[id] {
				continue // known to the timer twice (a rescan)
			}
			seen[id] = true
			if !ok || h.State != HoldAwaiting {
				continue // paid or ended meanwhile
			}
			if state == HoldExpired && now.Before(h.Deadline) {
				t.track(h)
				continue
			}
			todo = append(todo, h)
		}
		sort.Slice(todo, func(i, j int) bool {
			if !todo[i].Deadline.Equal(todo[j].Deadline) {
				return todo[i].Deadline.Before(todo[j].Deadline)
			}
			return todo[i].Seq < todo[j].Seq
		})
		l := newLine(d, es)
		passes := make([]Pass, len(todo))
		for i, h := range todo {
			l.pass(h.Seq, -1)
			p := Pass{HoldID: h.ID, State: state, At: now}
			if n := l.next(now); n >= 0 {
				unit := l.pass(-1, n)
				e := l.order[n]
				p.Next = &Hold{ID: HoldID(d.ID, e.Seq), DropID: d.ID, Seq: e.Seq, UserID: e.UserID, Unit: unit,
					AmountMinor: h.AmountMinor, Currency: h.Currency, State: HoldAwaiting, CreatedAt: now.UTC(),
					Deadline: now.Add(d.PayWindow).UTC(), PassedFrom: h.ID}
			}
			passes[i] = p
		}
		errs := t.s.books.PassHolds(ctx, passes)
		ids = ids[:0]
		refused := false
		for i, p := range passes {
			if errs[i] != nil {
				refused = true
				ids = append(ids, p.HoldID)
				continue
			}
			h := todo[i]
			h.State, h.SettledAt = state, now
			kind := microdrop.HoldExpired
			if state == HoldReleased {
				kind = microdrop.HoldReleased
			}
			if p.Next != nil {
				h.PassedTo = p.Next.ID
			}
			ended = append(ended, h)
			t.s.publish(holdEvent(kind, d, h, login[h.Seq], now))
			if p.Next != nil {
				t.track(*p.Next)
				t.s.publish(holdEvent(microdrop.HoldPassed, d, *p.Next, login[p.Next.Seq], now))
				t.s.metrics.holdsPassed.Inc()
			}
		}
		if !refused {
			break
		}
	}
	return ended, nil
}

// retryLater puts holds back on the timer after a failure.
func (t *holdTimer) retryLater(dropID string, ids []string, now time.Time) {
	t.mu.Lock()
	for _, id := range ids {
		heap.Push(&t.due, dueHold{id: id, drop: dropID, at: now.Add(time.Second)})
	}
	t.mu.Unlock()
}

func holdEvent(kind microdrop.Kind, d *Drop, h Hold, login string, at time.Time) microdrop.Event {
	return microdrop.Event{ID: BusEventID(kind, h.ID), Kind: kind, Channel: d.Channel, DropID: d.ID, At: at, Hold: h.View(login)}
}

// BusEventID is the id of the bus event of kind about hold: the id of the
// outbox event reporting the same fact, so the service's publish after
// commit and the outbox relay's (RelayOutbox) are one message to a bus
// that dedupes. HoldPassed tells the next holder of their hold, which the
// outbox reports as that hold's hold.won; HoldReleased is the outbox's
// hold.passed.
func BusEventID(kind microdrop.Kind, hold string) string {
	switch kind {
	case microdrop.HoldPaid:
		return eventID(EventHoldPaid, hold)
	case microdrop.HoldExpired:
		return eventID(EventHoldExpired, hold)
	case microdrop.HoldReleased:
		return eventID(EventHoldPassed, hold)
	case microdrop.HoldPassed:
		return eventID(EventHoldWon, hold)
	}
	return ""
}

// View is what subscribers may see of a hold.
func (h Hold) View(login string) *microdrop.HoldView {
	return &microdrop.HoldView{ID: h.ID, UserID: h.UserID, Login: login, Unit: h.Unit, AmountMinor: h.AmountMinor,
		Currency: h.Currency, State: string(h.State), Deadline: h.Deadline, PassedFrom: h.PassedFrom, PassedTo: h.PassedTo}
}

var errNoBooks = &microdrop.Error{Code: microdrop.EINVALID, Message: "this ledger keeps no books: paid drops are off"}

// ExpireDue passes on every hold due by the injected clock now. The timer
// calls it on its own; a caller that has just moved the clock need not wait.
func (s *Service) ExpireDue(ctx context.Context) error {
	if s.books == nil {
		return errNoBooks
	}
	return s.holds.expire(ctx)
}

var errNotYourHold = &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "no such hold"}

// HoldFor returns a hold to its owner. Anyone else is told there is no
// such hold, so hold ids reveal nothing.
func (s *Service) HoldFor(ctx context.Context, id, userID string) (Hold, error) {
	if s.books == nil {
		return Hold{}, errNoBooks
	}
	h, err := s.books.Hold(ctx, id)
	if errors.Is(err, ErrHoldNotFound) || (err == nil && h.UserID != userID) {
		return Hold{}, errNotYourHold
	}
	return h, err
}

// ReleaseHold gives an awaiting hold up on its owner's word: the unit goes
// to the next entry in the drop's fair order at once.
func (s *Service) ReleaseHold(ctx context.Context, id, userID string) (Hold, error) {
	h, err := s.HoldFor(ctx, id, userID)
	if err != nil {
		return Hold{}, err
	}
	if h.State != HoldAwaiting {
		return h, microdrop.Errorf(microdrop.ECONFLICT, "this hold is already %s", h.State)
	}
	ended, err := s.holds.pass(ctx, h.DropID, []string{h.ID}, HoldReleased, s.now())
	if err != nil {
		return Hold{}, err
	}
	if len(ended) == 0 {
		h, _ = s.books.Hold(ctx, id)
		return h, microdrop.Errorf(microdrop.ECONFLICT, "this hold is already %s", h.State)
	}
	return ended[0], nil
}

// payPostings takes amount from account into the creator's balance and
// the platform's fee (the creator's own fee, else the default).
func (s *Service) payPostings(from string, d *Drop, h Hold) []Posting {
	fee := s.FeeFor(d.Creator()).Of(h.AmountMinor)
	ps := []Posting{{Account: from, Currency: h.Currency, Amount: -h.AmountMinor}}
	if net := h.AmountMinor - fee; net != 0 {
		ps = append(ps, Posting{Account: CreatorAccount(d.Creator()), Currency: h.Currency, Amount: net})
	}
	if fee != 0 {
		ps = append(ps, Posting{Account: AccountPlatformFee, Currency: h.Currency, Amount: fee})
	}
	return ps
}

// PayFromWallet pays an awaiting hold from its owner's wallet: one ledger
// transaction takes the wallet's money and marks the hold paid, so the
// payment is final when this returns.
func (s *Service) PayFromWallet(ctx context.Context, id, userID string) (Hold, error) {
	h, err := s.HoldFor(ctx, id, userID)
	if err != nil {
		return Hold{}, err
	}
	d, err := s.ledger.Drop(ctx, h.DropID)
	if err != nil {
		return Hold{}, err
	}
	if !d.Accepts(PayWallet) {
		return h, microdrop.Errorf(microdrop.EINVALID, "this drop is not paid from the wallet")
	}
	now := s.now()
	m := Movement{Key: "wallet:" + h.ID, Kind: MovePay, HoldID: h.ID, At: now.UTC(), Postings: s.payPostings(WalletAccount(userID), d, h)}
	paid, applied, err := s.books.PayHold(ctx, h.ID, "wallet", m, now)
	switch {
	case errors.Is(err, ErrInsufficientFunds):
		return h, &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("your wallet has less than %s", formatMoney(h.AmountMinor, h.Currency)), Err: err}
	case errors.Is(err, ErrHoldDue):
		return h, &microdrop.Error{Code: microdrop.ECONFLICT, Message: "the time to pay for this hold is up", Err: err}
	case errors.Is(err, ErrHoldSettled):
		return h, &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("this hold is already %s", h.State), Err: err}
	case err != nil:
		return h, err
	}
	if applied {
		s.paid(d, paid)
	}
	return paid, nil
}

// paid tells everyone a hold is paid, after the commit.
func (s *Service) paid(d *Drop, h Hold) {
	s.metrics.holdsPaid.Inc()
	s.publish(holdEvent(microdrop.HoldPaid, d, h, "", h.SettledAt))
}

// TopUp credits a viewer's wallet from a provider's clearing account, once
// per key (the provider's event or payment id).
func (s *Service) TopUp(ctx context.Context, key, userID, provider string, amount int64, currency string, at time.Time) (bool, error) {
	if s.books == nil {
		return false, errNoBooks
	}
	if !idPattern.MatchString(userID) || amount <= 0 || amount > 1e9 || !currencyPattern.MatchString(currency) || key == "" {
		return false, microdrop.Errorf(microdrop.EINVALID, "a top-up needs a user id, a positive amount in minor units and a currency like EUR")
	}
	return s.books.Post(ctx, Movement{Key: "topup:" + key, Kind: MoveTopUp, At: at.UTC(), Postings: []Posting{
		{Account: ClearingAccount(provider), Currency: currency, Amount: -amount},
		{Account: WalletAccount(userID), Currency: currency, Amount: amount}}})
}

// Wallet is a viewer's wallet balance.
func (s *Service) Wallet(ctx context.Context, userID, currency string) (int64, error) {
	if s.books == nil {
		return 0, errNoBooks
	}
	return s.books.Balance(ctx, WalletAccount(userID), currency)
}

// Books returns the ledger's books, nil when it keeps none.
func (s *Service) Books() Books { return s.books }

// AuditMoney proves the books.
func (s *Service) AuditMoney(ctx context.Context) (MoneyReport, error) {
	if s.books == nil {
		return MoneyReport{}, errNoBooks
	}
	ms, err := s.books.Movements(ctx, "")
	if err != nil {
		return MoneyReport{}, err
	}
	hs, err := s.books.Holds(ctx, HoldFilter{})
	if err != nil {
		return MoneyReport{}, err
	}
	pb, ok := s.ledger.(PayoutBooks)
	if !ok {
		return AuditMoney(ms, hs), nil
	}
	ps, err := pb.Payouts(ctx, PayoutFilter{})
	if err != nil {
		return MoneyReport{}, err
	}
	return AuditMoneyAndPayouts(ms, hs, ps), nil
}

func formatMoney(minor int64, currency string) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, minor/100, minor%100, currency)
}

// HoldStatus is a hold as its owner sees it: what is left to do and, once
// paid, the receipt.
type HoldStatus struct {
	Hold
	SKU        string   `json:"sku"`
	Title      string   `json:"title"`
	PayMethods []string `json:"pay_methods"`
	SecondsMS  int64    `json:"time_left_ms"`
	Receipt    string   `json:"receipt,omitempty"`
}

// HoldStatus is a hold with its drop's terms and, once paid, its receipt.
func (s *Service) HoldStatus(ctx context.Context, h Hold) (HoldStatus, error) {
	d, err := s.ledger.Drop(ctx, h.DropID)
	if err != nil {
		return HoldStatus{}, err
	}
	st := HoldStatus{Hold: h, SKU: d.SKU, Title: d.Title, PayMethods: d.PayMethods}
	if h.State == HoldAwaiting {
		st.SecondsMS = max(h.Deadline.Sub(s.now()).Milliseconds(), 0)
	}
	if h.State == HoldPaid && s.receipts != nil {
		if st.Receipt, err = s.receipts.Sign(s.receiptOf(d, h)); err != nil {
			return HoldStatus{}, err
		}
	}
	return st, nil
}

func (s *Service) receiptOf(d *Drop, h Hold) Receipt {
	return Receipt{HoldID: h.ID, DropID: d.ID, SKU: d.SKU, LimitedRunID: d.LimitedRunID, Unit: h.Unit, Amount: h.AmountMinor,
		Currency: h.Currency, PaidAt: h.SettledAt.Unix(), Holder: s.receipts.HolderID(d.CreatorID, h.UserID), Method: h.Method}
}

// ReceiptKeys is the public key set, empty without a receipt signer.
func (s *Service) ReceiptKeys() ReceiptKeys {
	if s.receipts == nil {
		return ReceiptKeys{Keys: []ReceiptKey{}}
	}
	return s.receipts.Keys()
}

// RedeemReceipt hands over a paid unit at the desk, exactly once per
// receipt.
func (s *Service) RedeemReceipt(ctx context.Context, text string) (Receipt, error) {
	if s.receipts == nil || s.books == nil {
		return Receipt{}, errNoBooks
	}
	r, err := s.receipts.Verify(text)
	switch {
	case errors.Is(err, ErrReceiptMalformed):
		return Receipt{}, &microdrop.Error{Code: microdrop.EINVALID, Message: "that is not a microdrop receipt", Err: err}
	case err != nil:
		return Receipt{}, &microdrop.Error{Code: microdrop.EFORBIDDEN, Message: "this receipt's signature does not verify", Err: err}
	}
	h, err := s.books.RedeemHold(ctx, r.HoldID, s.now())
	switch {
	case errors.Is(err, ErrTokenUsed):
		return r, &microdrop.Error{Code: microdrop.ECONFLICT, Message: "this receipt was already redeemed at " + h.Redeemed.UTC().Format(time.RFC3339), Err: err}
	case errors.Is(err, ErrHoldNotFound), errors.Is(err, ErrHoldSettled):
		return r, &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "this receipt is for no paid unit", Err: err}
	case err != nil:
		return r, err
	}
	return r, nil
}

// CardPayment is a provider's word that a hold was paid by card.
type CardPayment struct {
	Provider  string // "stripe"
	PaymentID string // the provider's id of the payment (a Checkout Session): one credit per id
	HoldID    string
	Amount    int64
	Currency  string
	At        time.Time
}

// Card payment outcomes the provider adapter acts on.
var (
	// ErrPaidLate: the money arrived after the hold ended; it is owed
	// back (recorded in the refunds account) and must be refunded.
	ErrPaidLate = errors.New("card payment arrived after its hold ended")
	// ErrPaymentMismatch: amount or currency differ from the hold; the
	// payment is not credited, owed back, and flagged.
	ErrPaymentMismatch = errors.New("card payment does not match its hold")
)

// PayByCard records a verified card payment. A replayed payment id is a
// no-op (nil). A payment for a hold that has ended or whose amount or
// currency differ is not credited to anyone: the money is booked as owed
// back (refunds) and ErrPaidLate or ErrPaymentMismatch tells the adapter to
// refund it through the provider.
func (s *Service) PayByCard(ctx context.Context, p CardPayment) (Hold, error) {
	if s.books == nil {
		return Hold{}, errNoBooks
	}
	h, err := s.books.Hold(ctx, p.HoldID)
	if err != nil {
		return Hold{}, err
	}
	d, err := s.ledger.Drop(ctx, h.DropID)
	if err != nil {
		return Hold{}, err
	}
	clearing := ClearingAccount(p.Provider)
	owe := func(why error) (Hold, error) {
		cur := strings.ToUpper(p.Currency)
		if p.Amount <= 0 || !currencyPattern.MatchString(cur) {
			s.metrics.paymentsFlagged.WithLabelValues("malformed").Inc()
			return h, why
		}
		_, err := s.books.Post(ctx, Movement{Key: p.Provider + ":owed:" + p.PaymentID, Kind: MoveRefund, HoldID: h.ID, At: p.At.UTC(),
			Postings: []Posting{{Account: clearing, Currency: cur, Amount: -p.Amount}, {Account: AccountRefunds, Currency: cur, Amount: p.Amount}}})
		if err != nil {
			return h, err
		}
		return h, why
	}
	if p.Amount != h.AmountMinor || !strings.EqualFold(p.Currency, h.Currency) {
		s.metrics.paymentsFlagged.WithLabelValues("mismatch").Inc()
		s.log.Warn("card payment does not match its hold: not credited, to be refunded", "hold", h.ID, "payment", p.PaymentID,
			"amount", p.Amount, "currency", p.Currency, "want_amount", h.AmountMinor, "want_currency", h.Currency)
		return owe(ErrPaymentMismatch)
	}
	m := Movement{Key: p.Provider + ":" + p.PaymentID, Kind: MovePay, HoldID: h.ID, At: p.At.UTC(), Postings: s.payPostings(clearing, d, h)}
	paid, applied, err := s.books.PayHold(ctx, h.ID, PayCard, m, p.At)
	switch {
	case errors.Is(err, ErrHoldDue), errors.Is(err, ErrHoldSettled):
		if paid.State == HoldPaid && paid.Method == PayCard {
			return paid, nil // paid already by this provider's earlier word
		}
		s.metrics.paymentsFlagged.WithLabelValues("late").Inc()
		s.log.Warn("card payment after its hold ended: to be refunded", "hold", h.ID, "state", paid.State, "payment", p.PaymentID)
		return owe(ErrPaidLate)
	case err != nil:
		return Hold{}, err
	}
	if applied {
		s.paid(d, paid)
	}
	return paid, nil
}

// Refunded records that the provider paid owed money back.
func (s *Service) Refunded(ctx context.Context, p CardPayment, refundID string) error {
	if s.books == nil {
		return errNoBooks
	}
	cur := strings.ToUpper(p.Currency)
	_, err := s.books.Post(ctx, Movement{Key: p.Provider + ":refund:" + refundID, Kind: MoveRefund, HoldID: p.HoldID, At: p.At.UTC(),
		Postings: []Posting{{Account: AccountRefunds, Currency: cur, Amount: -p.Amount}, {Account: ClearingAccount(p.Provider), Currency: cur, Amount: p.Amount}}})
	return err
}

// CheckoutTerms is what a card checkout for a hold needs to say.
func (s *Service) CheckoutTerms(ctx context.Context, holdID, userID string) (Hold, *Drop, error) {
	h, err := s.HoldFor(ctx, holdID, userID)
	if err != nil {
		return Hold{}, nil, err
	}
	d, err := s.ledger.Drop(ctx, h.DropID)
	if err != nil {
		return Hold{}, nil, err
	}
	switch {
	case !d.Accepts(PayCard):
		return h, d, microdrop.Errorf(microdrop.EINVALID, "this drop does not take cards")
	case h.State != HoldAwaiting:
		return h, d, microdrop.Errorf(microdrop.ECONFLICT, "this hold is already %s", h.State)
	case !s.now().Before(h.Deadline):
		return h, d, microdrop.Errorf(microdrop.ECONFLICT, "the time to pay for this hold is up")
	}
	return h, d, nil
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }

// HoldSummary is a paid drop at a glance, for the streamer: paid,
// awaiting payment (with deadlines), passed on, and revenue.
type HoldSummary struct {
	DropID   string    `json:"drop_id"`
	Paid     int       `json:"paid"`
	Awaiting []HoldDue `json:"awaiting"`
	Passed   int       `json:"passed"`
	Revenue  int64     `json:"revenue_minor"`
	Currency string    `json:"currency"`
	Unsold   int       `json:"unsold"` // units passed on with nobody waiting
}

// HoldDue is an awaiting hold's deadline.
type HoldDue struct {
	HoldID   string    `json:"hold_id"`
	UserID   string    `json:"user_id"`
	Deadline time.Time `json:"deadline"`
}

// HoldSummary summarizes a drop's holds.
func (s *Service) HoldSummary(ctx context.Context, dropID string) (HoldSummary, error) {
	if s.books == nil {
		return HoldSummary{}, errNoBooks
	}
	d, err := s.Drop(ctx, dropID)
	if err != nil {
		return HoldSummary{}, err
	}
	hs, err := s.books.Holds(ctx, HoldFilter{DropID: d.ID})
	if err != nil {
		return HoldSummary{}, err
	}
	sum := HoldSummary{DropID: d.ID, Currency: d.Currency, Awaiting: []HoldDue{}}
	for _, h := range hs {
		switch h.State {
		case HoldPaid:
			sum.Paid++
			sum.Revenue += h.AmountMinor
		case HoldAwaiting:
			sum.Awaiting = append(sum.Awaiting, HoldDue{HoldID: h.ID, UserID: h.UserID, Deadline: h.Deadline})
		default:
			sum.Passed++
			if h.PassedTo == "" {
				sum.Unsold++
			}
		}
	}
	return sum, nil
}
