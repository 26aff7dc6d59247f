package stripe_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
	"github.com/microdrop/microdrop/claims/stripe"
	"github.com/microdrop/microdrop/claims/stripe/stripetest"
)

const whsec = "whsec_test_0123456789"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	svc   *claims.Service
	books claims.Books
	clock *clock
	hook  *httptest.Server
	cards *stripe.Cards
	mock  string // stripe-mock's URL
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	mock := stripetest.StartMock(t)
	l := sqlite.MustOpen(t)
	// Webhook signatures are checked against the wall clock, so the
	// service's clock starts at it and moves only when the test says.
	ck := &clock{t: time.Now().UTC().Truncate(time.Second)}
	signer, _ := claims.NewTokenSigner([]byte("current-key-0123456789"))
	svc, err := claims.New(claims.Deps{Ledger: l, Bus: microdrop.NewMemoryBus(), Signer: signer, Now: ck.Now,
		Options: claims.Options{ClaimRate: 1000, ClaimBurst: 1000, FeeBasisPoints: 500}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	cards, err := stripe.New(svc, stripe.Config{SecretKey: "sk_test_123", WebhookSecret: whsec, APIBase: mock, PublicURL: "http://localhost:8080"})
	if err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(cards)
	t.Cleanup(hook.Close)
	return &fixture{svc: svc, books: svc.Books(), clock: ck, hook: hook, cards: cards, mock: mock}
}

func sessionEvent(id, typ, session, hold string, amount int64, currency, status string) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": stripego.APIVersion, "type": typ, "created": time.Now().Unix(),
		"data": map[string]any{"object": map[string]any{"id": session, "object": "checkout.session", "client_reference_id": hold,
			"amount_total": amount, "currency": currency, "payment_status": status, "payment_intent": "pi_" + session}},
	})
	return b
}

func (f *fixture) post(t *testing.T, payload []byte, secret string, at time.Time) int {
	t.Helper()
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret, Timestamp: at})
	req, _ := http.NewRequest("POST", f.hook.URL, bytes.NewReader(signed.Payload))
	req.Header.Set("Stripe-Signature", signed.Header)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (f *fixture) hold(t *testing.T, id string) claims.Hold {
	t.Helper()
	h, err := f.books.Hold(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (f *fixture) balance(t *testing.T, account string) int64 {
	t.Helper()
	n, err := f.books.Balance(context.Background(), account, "EUR")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCardPayments(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	d, err := f.svc.OpenDrop(ctx, claims.OpenRequest{Channel: "streamer", SKU: "hoodie", Stock: 2, PriceMinor: 4500, Currency: "EUR",
		Duration: claims.Duration(time.Minute), Policy: claims.FCFS, Pay: []string{"card"}, LimitedRunID: "run1", CreatorID: "crea"})
	if err != nil {
		t.Fatal(err)
	}
	var holds []string
	for _, u := range []string{"ann", "ben", "cat"} {
		res, err := f.svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: u, Login: u}})
		if u == "cat" {
			if microdrop.ErrorReason(err) != claims.ReasonWaitlisted {
				t.Fatalf("cat: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		holds = append(holds, res.HoldID)
	}
	ann, ben := holds[0], holds[1]

	// A Checkout Session per hold, against Stripe's mock; only the owner gets one.
	if _, err := f.cards.Checkout(ctx, ann, "ben"); microdrop.ErrorCode(err) != microdrop.ENOTFOUND {
		t.Fatalf("checkout of another viewer's hold: %v", err)
	}
	co, err := f.cards.Checkout(ctx, ann, "ann")
	if err != nil || co.SessionID == "" || co.ExpiresAt.Before(f.hold(t, ann).Deadline) {
		t.Fatalf("checkout: %+v %v", co, err)
	}

	now := time.Now()
	paid := sessionEvent("evt_1", "checkout.session.completed", "cs_ann", ann, 4500, "eur", "paid")
	// Forged and stale signatures: 400, nothing changes.
	if st := f.post(t, paid, "whsec_wrong", now); st != 400 {
		t.Fatalf("forged signature: %d", st)
	}
	if st := f.post(t, paid, whsec, now.Add(-10*time.Minute)); st != 400 {
		t.Fatalf("stale signature: %d", st)
	}
	if h := f.hold(t, ann); h.State != claims.HoldAwaiting {
		t.Fatalf("a refused webhook changed the hold: %+v", h)
	}
	// An async method still pending pays nothing yet.
	if st := f.post(t, sessionEvent("evt_0", "checkout.session.completed", "cs_ann", ann, 4500, "eur", "unpaid"), whsec, now); st != 200 {
		t.Fatalf("pending: %d", st)
	}
	if h := f.hold(t, ann); h.State != claims.HoldAwaiting {
		t.Fatalf("an unpaid session paid the hold: %+v", h)
	}
	if st := f.post(t, paid, whsec, now); st != 200 {
		t.Fatalf("completed: %d", st)
	}
	if h := f.hold(t, ann); h.State != claims.HoldPaid || h.Method != "card" {
		t.Fatalf("after completed: %+v", h)
	}
	creator := f.balance(t, claims.CreatorAccount("crea"))
	if creator != 4275 || f.balance(t, claims.AccountPlatformFee) != 225 {
		t.Fatalf("creator %d fee %d after one card payment", creator, f.balance(t, claims.AccountPlatformFee))
	}
	// Replayed, repeated by another event for the same session, and out of order: no double credit.
	for _, ev := range [][]byte{paid,
		sessionEvent("evt_2", "checkout.session.async_payment_succeeded", "cs_ann", ann, 4500, "eur", "paid"),
		sessionEvent("evt_3", "checkout.session.expired", "cs_ann", ann, 4500, "eur", "unpaid"),
		sessionEvent("evt_4", "checkout.session.async_payment_failed", "cs_ann", ann, 4500, "eur", "unpaid"),
	} {
		if st := f.post(t, ev, whsec, now); st != 200 {
			t.Fatalf("replay: %d", st)
		}
	}
	if c := f.balance(t, claims.CreatorAccount("crea")); c != creator {
		t.Fatalf("creator %d after replays, want %d", c, creator)
	}

	// ben pays the wrong amount: not credited, refunded, flagged.
	if st := f.post(t, sessionEvent("evt_5", "checkout.session.completed", "cs_ben1", ben, 100, "eur", "paid"), whsec, now); st != 200 {
		t.Fatalf("mismatch: %d", st)
	}
	if h := f.hold(t, ben); h.State != claims.HoldAwaiting {
		t.Fatalf("a mismatched payment paid the hold: %+v", h)
	}
	// ben's time runs out: the unit passes to cat; then his payment arrives late and is refunded.
	f.clock.Advance(claims.DefaultPayWindow)
	if err := f.svc.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}
	if h := f.hold(t, ben); h.State != claims.HoldExpired || h.PassedTo == "" {
		t.Fatalf("ben's hold after its deadline: %+v", h)
	}
	if st := f.post(t, sessionEvent("evt_6", "checkout.session.completed", "cs_ben2", ben, 4500, "eur", "paid"), whsec, now); st != 200 {
		t.Fatalf("late: %d", st)
	}
	if st := f.post(t, sessionEvent("evt_6", "checkout.session.completed", "cs_ben2", ben, 4500, "eur", "paid"), whsec, now); st != 200 {
		t.Fatalf("late replay: %d", st)
	}
	if h := f.hold(t, ben); h.State != claims.HoldExpired {
		t.Fatalf("a late payment revived the hold: %+v", h)
	}
	if f.balance(t, claims.AccountRefunds) != 0 || f.balance(t, claims.CreatorAccount("crea")) != creator {
		t.Fatalf("refunds %d creator %d: late and mismatched payments must be paid back and credit nobody",
			f.balance(t, claims.AccountRefunds), f.balance(t, claims.CreatorAccount("crea")))
	}
	rep, err := f.svc.AuditMoney(ctx)
	if err != nil || !rep.Balanced || rep.Revenue["EUR"] != 4500 {
		t.Fatalf("money audit %+v %v", rep, err)
	}
	if a, err := f.svc.Audit(ctx, d.ID); err != nil || !a.Match || a.Passes != 1 {
		t.Fatalf("drop audit %+v %v", a, err)
	}
}

// A webhook whose payment cannot be committed is not acknowledged (5xx),
// so Stripe delivers it again; after a restart the retry is credited.
func TestWebhookAnsweredOnlyAfterCommit(t *testing.T) {
	ctx := context.Background()
	mock := stripetest.StartMock(t)
	path := filepath.Join(t.TempDir(), "ledger.db")
	ck := &clock{t: time.Now().UTC().Truncate(time.Second)}
	signer, _ := claims.NewTokenSigner([]byte("current-key-0123456789"))
	start := func() (*claims.Service, *sqlite.Ledger, *httptest.Server) {
		l, err := sqlite.Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		svc, err := claims.New(claims.Deps{Ledger: l, Bus: microdrop.NewMemoryBus(), Signer: signer, Now: ck.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Start(ctx); err != nil {
			t.Fatal(err)
		}
		cards, err := stripe.New(svc, stripe.Config{SecretKey: "sk_test_123", WebhookSecret: whsec, APIBase: mock})
		if err != nil {
			t.Fatal(err)
		}
		return svc, l, httptest.NewServer(cards)
	}
	svc, l, hook := start()
	d, err := svc.OpenDrop(ctx, claims.OpenRequest{Channel: "streamer", SKU: "hoodie", Stock: 1, PriceMinor: 4500, Currency: "EUR",
		Duration: claims.Duration(time.Minute), Policy: claims.FCFS, Pay: []string{"card"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: "ann"}})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{hook: hook}
	ev := sessionEvent("evt_k", "checkout.session.completed", "cs_k", res.HoldID, 4500, "eur", "paid")
	// The ledger goes away between receiving the webhook and committing it.
	svc.Close()
	l.Close()
	if st := f.post(t, ev, whsec, time.Now()); st < 500 {
		t.Fatalf("a webhook that was not committed was answered %d", st)
	}
	hook.Close()
	svc, l, hook = start()
	defer func() { hook.Close(); svc.Close(); l.Close() }()
	f.hook = hook
	if h, _ := l.Hold(ctx, res.HoldID); h.State != claims.HoldAwaiting {
		t.Fatalf("hold after the refused webhook: %+v", h)
	}
	if st := f.post(t, ev, whsec, time.Now()); st != 200 {
		t.Fatalf("retried webhook: %d", st)
	}
	if h, _ := l.Hold(ctx, res.HoldID); h.State != claims.HoldPaid {
		t.Fatalf("hold after the retry: %+v", h)
	}
}
