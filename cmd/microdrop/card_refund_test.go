package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	stripego "github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/stripe/stripetest"
)

// In serve, an admin refund of a card-paid hold goes back through
// Stripe's Refund API (stripe-mock) and is booked paid back: nothing is
// left owed, the books balance, and a second call with the same key sends
// nothing. Without the admin token nobody refunds.
func TestCardRefundInServe(t *testing.T) {
	rec := stripetest.Record(t, stripetest.StartMock(t))
	const whsec = "whsec_test_123"
	cfg := filepath.Join(t.TempDir(), "microdrop.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "payments:\n  fee_basis_points: 500\n  stripe:\n    secret_key: sk_test_123\n    webhook_secret: %s\n    api_base: %s\n", whsec, rec.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewMain(io.Discard, io.Discard)
	env := func(k string) (string, bool) {
		if k == "MICRODROP_ADMIN_TOKEN" {
			return testAdminToken, true
		}
		return "", false
	}
	if err := m.ParseFlags([]string{"--config", cfg, "--http", "127.0.0.1:0", "--rtsp", "off", "--data", t.TempDir()}, env); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.HTTPAddr
	var open claims.DropResponse
	if st, err := api(t, "POST", base+"/api/drops", map[string]any{"channel": "streamer", "sku": "hoodie", "stock": 1, "price_minor": 4500,
		"currency": "EUR", "duration": "1m", "policy": "fcfs", "pay": []string{"card"}, "creator_id": "crea"}, &open); st != 201 {
		t.Fatalf("open: %d %v", st, err)
	}
	var won claims.ClaimResult
	if st, err := api(t, "POST", base+"/api/drops/"+open.Drop.ID+"/claims", map[string]any{"user_id": "ann"}, &won); st != 200 || won.HoldID == "" {
		t.Fatalf("claim: %d %v", st, err)
	}
	// Stripe says the hold's Checkout Session is paid.
	payload, _ := json.Marshal(map[string]any{"id": "evt_1", "object": "event", "api_version": stripego.APIVersion, "type": "checkout.session.completed",
		"created": time.Now().Unix(), "data": map[string]any{"object": map[string]any{"id": "cs_ann", "object": "checkout.session",
			"client_reference_id": won.HoldID, "amount_total": 4500, "currency": "eur", "payment_status": "paid", "payment_intent": "pi_ann"}}})
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: whsec, Timestamp: time.Now()})
	req, _ := http.NewRequest("POST", base+"/webhooks/stripe", bytes.NewReader(signed.Payload))
	req.Header.Set("Stripe-Signature", signed.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stripe webhook: %v %v", resp, err)
	}
	resp.Body.Close()

	refund := map[string]any{"key": "r1", "amount_minor": 1500}
	b, _ := json.Marshal(refund)
	req, _ = http.NewRequest("POST", base+"/api/holds/"+won.HoldID+"/refund", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("refund without the token: %v %v", resp, err)
	}
	for i, want := range []bool{true, false} {
		var out struct {
			Movement claims.Movement
			Applied  bool
		}
		if st, err := api(t, "POST", base+"/api/holds/"+won.HoldID+"/refund", refund, &out); st != 200 || err != nil || out.Applied != want {
			t.Fatalf("refund %d: %d %v %+v", i, st, err, out)
		}
	}
	n := 0
	for _, r := range rec.Requests() {
		if r.Path == "/v1/refunds" {
			n++
		}
	}
	var audit claims.MoneyReport
	if st, _ := api(t, "GET", base+"/api/money/audit", nil, &audit); st != 200 || !audit.Balanced || n != 1 ||
		audit.Balances[claims.AccountRefunds]["EUR"] != 0 || audit.Balances[claims.ClearingAccount("stripe")]["EUR"] != -3000 ||
		audit.Balances[claims.CreatorAccount("crea")]["EUR"] != 4275-1425 {
		t.Fatalf("%d refunds sent; books %+v", n, audit)
	}
}
