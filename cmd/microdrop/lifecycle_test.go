package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/stripe"
	"github.com/microdrop/microdrop/claims/stripe/stripetest"
)

// firstArrivals is the receiver's accepted events in the order each id
// first arrived.
func (h *hookReceiver) firstArrivals(t *testing.T) []claims.EventBody {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	var out []claims.EventBody
	for _, id := range h.ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		var b claims.EventBody
		if err := json.Unmarshal(h.bodies[id], &b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func (h *hookReceiver) waitFor(t *testing.T, n int, within time.Duration) []claims.EventBody {
	t.Helper()
	deadline := time.Now().Add(within)
	for h.unique() < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	evs := h.firstArrivals(t)
	if len(evs) < n {
		t.Fatalf("the receiver has %d events after %s, want %d: %+v", len(evs), within, n, evs)
	}
	return evs
}

// TestPaidDropLifeReachesReceiverAndStatement is the whole life of a paid
// drop through the real binary and its HTTP API: a priced drop is opened
// for a creator with a limited run, an admin claim wins a hold, the
// viewer pays from the wallet, the desk redeems the receipt, and a payout
// run pays the creator through Stripe Connect (stripe-mock). A fulfilment
// receiver, verifying every request with the Standard Webhooks library's
// own verifier, gets hold.won, hold.paid, pickup.redeemed and payout.paid
// in that order, naming the same drop, SKU, limited run, creator and
// holder; the creator's statement (HTML and CSV) lists the paid hold, the
// fee, the net and the payout, and the books balance.
func TestPaidDropLifeReachesReceiverAndStatement(t *testing.T) {
	rec := stripetest.Record(t, stripetest.StartMock(t))
	cfg := filepath.Join(t.TempDir(), "microdrop.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `payments:
  fee_basis_points: 500
  stripe:
    secret_key: sk_test_123
    webhook_secret: whsec_test_123
    api_base: %s
creators:
  crea:
    payout:
      schedule: daily
      currency: EUR
      connect_account: acct_1Crea0000
`, rec.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir(), freePort(t), []string{"--config", cfg})
	rcv := &hookReceiver{t: t, bodies: map[string][]byte{}, kinds: map[string][]string{}}
	hooks := httptest.NewServer(rcv)
	defer hooks.Close()
	var ep struct{ ID, Secret string }
	// Every channel, so the creator's payouts (of no channel) come too.
	if st, err := api(t, "POST", s.url+"/api/webhooks/endpoints", map[string]any{"url": hooks.URL + "/fulfil",
		"kinds": []string{claims.EventHoldWon, claims.EventHoldPaid, claims.EventPickupRedeemed, claims.EventPayoutPaid}}, &ep); st != 201 || err != nil {
		t.Fatalf("create endpoint: %d %v", st, err)
	}
	wh, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	rcv.wh = wh
	rcv.mu.Unlock()

	var open claims.DropResponse
	if st, err := api(t, "POST", s.url+"/api/drops", map[string]any{"channel": "shop", "sku": "hoodie", "stock": 1, "price_minor": 4500,
		"currency": "EUR", "duration": "10m", "policy": "fcfs", "pay": []string{"wallet"}, "creator_id": "crea", "limited_run_id": "run-7"}, &open); st != 201 {
		t.Fatalf("open: %d %v", st, err)
	}
	id := open.Drop.ID
	var won claims.ClaimResult
	if st, err := api(t, "POST", s.url+"/api/drops/"+id+"/claims", map[string]any{"user_id": "viewer1"}, &won); st != 200 || won.HoldID == "" {
		t.Fatalf("claim: %d %v %+v", st, err, won)
	}
	if st, err := api(t, "POST", s.url+"/api/wallets/viewer1/topup", map[string]any{"key": "top1", "amount_minor": 4500, "currency": "EUR"}, nil); st != 200 {
		t.Fatalf("top-up: %d %v", st, err)
	}
	var paid claims.HoldStatus
	if st, err := api(t, "POST", s.url+"/api/holds/"+won.HoldID+"/pay", map[string]any{"user_id": "viewer1", "method": "wallet"}, &paid); st != 200 || paid.Receipt == "" {
		t.Fatalf("pay: %d %v", st, err)
	}
	var redeemed struct{ Receipt claims.Receipt }
	if st, err := api(t, "POST", s.url+"/api/redeem", map[string]any{"receipt": paid.Receipt}, &redeemed); st != 200 || redeemed.Receipt.HoldID != won.HoldID {
		t.Fatalf("redeem: %d %v %+v", st, err, redeemed)
	}
	// The webhooks keep order per drop; a payout is of no drop, and a
	// day's payout run comes after the day's pickups: the run starts once
	// the pickup reached the receiver.
	rcv.waitFor(t, 3, 30*time.Second)
	var run claims.RunReport
	if st, err := api(t, "POST", s.url+"/api/payouts/run", nil, &run); st != 200 || len(run.Errors) > 0 {
		t.Fatalf("payout run: %d %v %+v", st, err, run)
	}
	// The scheduler in serve may have run first; either way one payout is paid.
	var list struct{ Payouts []claims.Payout }
	if st, err := api(t, "GET", s.url+"/api/payouts?creator=crea", nil, &list); st != 200 || len(list.Payouts) != 1 {
		t.Fatalf("payouts: %d %v %+v", st, err, list)
	}
	po := list.Payouts[0]
	if po.State != claims.PayoutPaid || po.AmountMinor != 4500-225 || po.Provider != claims.ProviderStripeConnect || !strings.HasPrefix(po.Reference, "tr_") ||
		len(po.Lines) != 1 || po.Lines[0].DropID != id || po.Lines[0].LimitedRunID != "run-7" || po.Lines[0].SKU != "hoodie" {
		t.Fatalf("payout %+v", po)
	}
	transfers := 0
	for _, r := range rec.Requests() {
		if r.Path == "/v1/transfers" {
			transfers++
			if r.IdempotencyKey != stripe.TransferIdempotencyKey(po.ID) {
				t.Fatalf("transfer with idempotency key %q", r.IdempotencyKey)
			}
		}
	}
	if transfers != 1 {
		t.Fatalf("%d transfers sent", transfers)
	}

	evs := rcv.waitFor(t, 4, 30*time.Second)
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Type)
	}
	if fmt.Sprint(kinds) != fmt.Sprint([]string{claims.EventHoldWon, claims.EventHoldPaid, claims.EventPickupRedeemed, claims.EventPayoutPaid}) {
		t.Fatalf("events in order %v", kinds)
	}
	holder := redeemed.Receipt.Holder
	for _, e := range evs[:3] {
		d := e.Data
		if d.DropID != id || d.HoldID != won.HoldID || d.SKU != "hoodie" || d.LimitedRunID != "run-7" || d.CreatorID != "crea" ||
			d.Channel != "shop" || holder == "" || d.HolderID != holder || d.AmountMinor != 4500 || d.Currency != "EUR" {
			t.Fatalf("%s names %+v; want drop %s, hold %s, run-7, crea, holder %s", e.Type, d, id, won.HoldID, holder)
		}
	}
	if d := evs[3].Data; d.PayoutID != po.ID || d.CreatorID != "crea" || d.AmountMinor != po.AmountMinor || d.Currency != "EUR" ||
		d.Provider != claims.ProviderStripeConnect || d.HolderID != "" {
		t.Fatalf("payout.paid %+v; want payout %+v", d, po)
	}
	rcv.mu.Lock()
	for _, body := range rcv.bodies {
		if strings.Contains(string(body), "viewer1") {
			t.Fatalf("an event names the viewer: %s", body)
		}
	}
	rcv.mu.Unlock()

	// The creator's statement: the paid hold, the fee, the net, the payout.
	st, html := getAs(t, s.url+"/dashboard/creators/crea/statement", true)
	if st != 200 || !strings.Contains(html, `data-drop="`+id+`"`) || !strings.Contains(html, "run-7") || !strings.Contains(html, "EUR 45.00") ||
		!strings.Contains(html, "EUR 2.25") || !strings.Contains(html, "EUR 42.75") || !strings.Contains(html, po.ID) || !strings.Contains(html, po.Reference) {
		t.Fatalf("statement page: %d\n%s", st, html)
	}
	st, body := getAs(t, s.url+"/dashboard/creators/crea/statement?format=csv", true)
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if st != 200 || err != nil || len(rows) != 3 || strings.Join(rows[0], ",") != strings.Join(claims.StatementCSVHeader, ",") ||
		strings.Join(rows[1], ",") != "crea,"+id+",hoodie,run-7,EUR,1,4500,225,0,0,4275,4275" || rows[2][1] != "total" {
		t.Fatalf("statement CSV: %d %v\n%s", st, err, body)
	}
	var audit claims.MoneyReport
	if st, _ := api(t, "GET", s.url+"/api/money/audit", nil, &audit); st != 200 || !audit.Balanced || audit.Payouts != 1 ||
		audit.Balances[claims.PaidOutAccount(claims.ProviderStripeConnect)]["EUR"] != 4275 {
		t.Fatalf("books: %+v", audit)
	}
}
