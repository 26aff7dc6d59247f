package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/ledgertest"
	"github.com/microdrop/microdrop/claims/sqlite"
	"github.com/microdrop/microdrop/claims/webhook"
)

// clock is a simulated clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	if t.After(c.t) {
		c.t = t
	}
	c.mu.Unlock()
}

type rig struct {
	ledger *sqlite.Ledger
	store  *webhook.Store
	worker *webhook.Worker
	h      *webhook.Handler
	clock  *clock
}

func newRig(t *testing.T, o webhook.Options) *rig {
	t.Helper()
	l := sqlite.MustOpenWith(t, sqlite.Options{Holder: ledgertest.Holder})
	st, err := webhook.OpenStore(context.Background(), filepath.Join(t.TempDir(), "webhooks.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	w := webhook.NewWorker(webhook.Deps{Outbox: l, Store: st, Now: c.Now, Options: o, Jitter: func() float64 { return 1 }})
	return &rig{ledger: l, store: st, worker: w, h: webhook.NewHandler(st, w, l, adminFor()), clock: c}
}

func (r *rig) endpoint(t *testing.T, url, channel string, kinds ...string) webhook.Endpoint {
	t.Helper()
	ep, err := r.h.Create(context.Background(), webhook.EndpointBody{URL: &url, Channel: &channel, Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// paidDrop runs a priced drop through won, paid and picked up for user.
func (r *rig) paidDrop(t *testing.T, id, user string) {
	t.Helper()
	ctx := context.Background()
	d := ledgertest.NewDrop(id, 1)
	d.Channel, d.PayWindow, d.PayMethods = "shop", time.Hour, []string{claims.PayWallet}
	if err := r.ledger.CreateDrop(ctx, d); err != nil {
		t.Fatal(err)
	}
	now := r.clock.Now()
	e := ledgertest.Win(id, 1, user, 1, "")
	h := ledgertest.NewHold(id, 1, user, now.Add(time.Hour))
	h.CreatedAt = now
	if err := r.ledger.Commit(ctx, claims.Batch{DropID: id, Wins: 1, Insert: []claims.Entry{e}, Holds: []claims.Hold{h}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ledger.Post(ctx, ledgertest.TopUp("top-"+id, user, 4500)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ledger.PayHold(ctx, h.ID, "wallet", ledgertest.WalletPay(h, 450), now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ledger.RedeemHold(ctx, h.ID, now); err != nil {
		t.Fatal(err)
	}
}

// received is what a receiver accepted.
type received struct {
	id, kind, hold string
	body           []byte
	headers        http.Header
}

// TestReceiverRecovers: the receiver drops the connection, times out,
// answers 500, then recovers; everything is delivered once it does, in
// order per drop, each checked by the library's own verifier.
func TestReceiverRecovers(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, webhook.Options{AttemptTimeout: 300 * time.Millisecond})
	var mu sync.Mutex
	var calls int
	var got []received
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		switch n {
		case 1: // fails: the connection drops without an answer
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
			return
		case 2: // times out
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
			return
		case 3:
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		body, _ := io.ReadAll(req.Body)
		wh, _ := standardwebhooks.NewWebhook(secretOf(t, r, req))
		if err := wh.Verify(body, req.Header); err != nil {
			t.Errorf("signature: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var b claims.EventBody
		if err := json.Unmarshal(body, &b); err != nil {
			t.Errorf("body: %v", err)
		}
		mu.Lock()
		got = append(got, received{id: req.Header.Get("webhook-id"), kind: b.Type, hold: b.Data.HoldID, body: body, headers: req.Header.Clone()})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	defer close(release)
	ep := r.endpoint(t, srv.URL+"/hooks", "shop", claims.EventHoldWon, claims.EventHoldPaid, claims.EventPickupRedeemed)
	secrets.Store(ep.ID, ep.Secret)
	r.paidDrop(t, "a1", "alice")
	r.paidDrop(t, "b1", "bob")
	for i := 0; i < 40; i++ {
		if err := r.worker.Step(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 6 {
			break
		}
		next, err := r.store.NextDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r.clock.Set(next)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 6 {
		t.Fatalf("receiver has %d of 6 events after recovering (%d calls)", len(got), calls)
	}
	order := map[string][]string{}
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g.id] {
			t.Fatalf("event %s delivered twice after a 2xx", g.id)
		}
		seen[g.id] = true
		order[g.hold] = append(order[g.hold], g.kind)
	}
	for _, h := range []string{"a1-1", "b1-1"} {
		if fmt.Sprint(order[h]) != "[hold.won hold.paid pickup.redeemed]" {
			t.Fatalf("hold %s events in order %v", h, order[h])
		}
	}
	// The verifier refuses a tampered body and a wrong secret.
	wh, _ := standardwebhooks.NewWebhook(ep.Secret)
	tampered := append([]byte(nil), got[0].body...)
	tampered[len(tampered)-2] ^= 1
	if err := wh.Verify(tampered, got[0].headers); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Fatalf("tampered body: %v", err)
	}
	other, _ := standardwebhooks.NewWebhook(webhook.NewSecret())
	if err := other.Verify(got[0].body, got[0].headers); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Fatalf("another endpoint's secret: %v", err)
	}
	// The log shows the three failures (dropped, timed out, 500) and a
	// success for each event; retries came 5s, then 10s after a failure.
	log, err := r.h.Log(ctx, ep.ID, 50)
	if err != nil {
		t.Fatal(err)
	}
	var dropped, timedOut, five, ok int
	for _, d := range log {
		if d.State != webhook.Delivered {
			t.Fatalf("delivery %s is %s", d.EventID, d.State)
		}
		want := 5 * time.Second
		for i, a := range d.Log {
			switch {
			case a.Status == 204:
				ok++
			case a.Status == 500:
				five++
			case strings.Contains(a.Error, "no answer within"):
				timedOut++
			case a.Status == 0 && a.Error != "":
				dropped++
			}
			if i > 0 {
				if gap := a.At.Sub(d.Log[i-1].At); gap != want {
					t.Fatalf("%s: attempt %d came %s after the one before, want %s", d.EventID, i+1, gap, want)
				}
				want *= 2
			}
		}
	}
	if dropped != 1 || timedOut != 1 || five != 1 || ok != 6 {
		t.Fatalf("log: %d dropped, %d timed out, %d answered 500, %d delivered; want 1, 1, 1, 6: %+v", dropped, timedOut, five, ok, log)
	}
}

var secrets sync.Map

func secretOf(t *testing.T, _ *rig, _ *http.Request) string {
	var s string
	secrets.Range(func(_, v any) bool { s = v.(string); return false })
	return s
}

// TestSeventyTwoHours: a receiver that never answers 2xx is retried with
// exponential backoff for 72 simulated hours; then the endpoint is
// disabled. Enabled again, it gets the event once it answers.
func TestSeventyTwoHours(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, webhook.Options{})
	var mu sync.Mutex
	up := false
	var delivered []string
	wh := (*standardwebhooks.Webhook)(nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		// The timestamps are the simulated clock's, days ahead: check
		// the signature without the freshness window.
		if err := wh.VerifyIgnoringTimestamp(body, req.Header); err != nil {
			t.Errorf("signature: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !up {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		delivered = append(delivered, req.Header.Get("webhook-id"))
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	ep := r.endpoint(t, srv.URL, "", claims.EventPayoutPaid)
	wh, _ = standardwebhooks.NewWebhook(ep.Secret)
	if _, err := r.ledger.Post(ctx, ledgertest.PayoutPaid("po_9", "creator1", "file", 700)); err != nil {
		t.Fatal(err)
	}
	start := r.clock.Now()
	for i := 0; i < 200; i++ {
		if err := r.worker.Step(ctx); err != nil {
			t.Fatal(err)
		}
		next, err := r.store.NextDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if next.IsZero() {
			break
		}
		r.clock.Set(next)
	}
	got, err := r.store.Endpoint(ctx, ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Disabled || got.DisabledReason == "" {
		t.Fatalf("endpoint after 72 h of failures: %+v", got)
	}
	as, err := r.store.Attempts(ctx, ep.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	want := 5 * time.Second
	for i := 1; i < len(as); i++ {
		if gap := as[i].At.Sub(as[i-1].At); gap != want {
			t.Fatalf("gap before attempt %d is %s, want %s", i+1, gap, want)
		}
		want = min(want*2, webhook.MaxRetryDelay)
	}
	span := as[len(as)-1].At.Sub(as[0].At)
	if span < webhook.RetryFor || span >= webhook.RetryFor+webhook.MaxRetryDelay || !as[0].At.Equal(start) {
		t.Fatalf("retried for %s over %d attempts, want 72h up to one more delay", span, len(as))
	}
	t.Logf("%d attempts over %s, then disabled: %s", len(as), span, got.DisabledReason)
	// Disabled: nothing more is tried, whatever the time.
	r.clock.Set(r.clock.Now().Add(24 * time.Hour))
	if err := r.worker.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.store.Attempts(ctx, ep.ID, ""); len(n) != len(as) {
		t.Fatalf("a disabled endpoint was tried: %d attempts, was %d", len(n), len(as))
	}
	mu.Lock()
	up = true
	mu.Unlock()
	enable := true
	if _, err := r.h.Update(ctx, ep.ID, webhook.EndpointBody{Enabled: &enable}); err != nil {
		t.Fatal(err)
	}
	if err := r.worker.Step(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != 1 || delivered[0] != "msg_payout_paid_po_9" {
		t.Fatalf("after enabling: delivered %v", delivered)
	}
}
