package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/microdrop/microdrop/claims"
)

// A drop that takes payment, in process: claims, holds, a wallet payment,
// a hold released and passed on, the receipt verified offline with the
// published keys by `microdrop receipt verify`, redeemed once at the desk,
// and `microdrop audit --money` proving the books, over the API and from
// the data dir.
func TestPaidDropInProcess(t *testing.T) {
	var stderr bytes.Buffer
	data := t.TempDir()
	m := NewMain(io.Discard, &lockedWriter{w: &stderr})
	env := func(k string) (string, bool) {
		if k == "MICRODROP_ADMIN_TOKEN" {
			return testAdminToken, true
		}
		return "", false
	}
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--rtsp", "off", "--data", data}, env); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			m.Close()
		}
	}()
	if !strings.Contains(fmt.Sprint(&stderr), "card payments are off") {
		t.Errorf("serve did not say card payments are off:\n%s", &stderr)
	}
	base := "http://" + m.HTTPAddr
	var open claims.DropResponse
	if st, err := api(t, "POST", base+"/api/drops", map[string]any{"channel": "streamer", "sku": "hoodie", "stock": 1, "price_minor": 4500,
		"currency": "EUR", "duration": "1m", "policy": "fcfs", "pay": []string{"wallet"}, "creator_id": "crea"}, &open); st != 201 {
		t.Fatalf("open: %d %v", st, err)
	}
	id := open.Drop.ID
	var won claims.ClaimResult
	if st, err := api(t, "POST", base+"/api/drops/"+id+"/claims", map[string]any{"user_id": "ann"}, &won); st != 200 || won.HoldID == "" {
		t.Fatalf("claim: %d %v %+v", st, err, won)
	}
	var next claims.ClaimResult
	if st, _ := api(t, "POST", base+"/api/drops/"+id+"/claims", map[string]any{"user_id": "ben"}, &next); st != 410 {
		t.Fatalf("waitlisted claim: %d", st)
	}
	// ann lets it go: ben is next in line and pays from his wallet.
	if st, err := api(t, "POST", base+"/api/holds/"+won.HoldID+"/release", map[string]any{"user_id": "ann"}, nil); st != 200 {
		t.Fatalf("release: %d %v", st, err)
	}
	bens := claims.HoldID(id, 2)
	if st, err := api(t, "POST", base+"/api/wallets/ben/topup", map[string]any{"key": "k1", "amount_minor": 4500, "currency": "EUR"}, nil); st != 200 {
		t.Fatalf("top-up: %d %v", st, err)
	}
	var paid claims.HoldStatus
	if st, err := api(t, "POST", base+"/api/holds/"+bens+"/pay", map[string]any{"user_id": "ben", "method": "wallet"}, &paid); st != 200 || paid.Receipt == "" {
		t.Fatalf("pay: %d %v %+v", st, err, paid)
	}
	var out bytes.Buffer
	if err := runReceipt(ctx, []string{"verify", "--keys", base, paid.Receipt}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "VALID") {
		t.Fatalf("receipt verify: %v\n%s", err, &out)
	}
	out.Reset()
	if err := runReceipt(ctx, []string{"verify", "--keys", base, paid.Receipt[:len(paid.Receipt)-4] + "AAAA"}, &out, io.Discard); err == nil {
		t.Fatalf("a forged receipt verified:\n%s", &out)
	}
	if st, err := api(t, "POST", base+"/api/redeem", map[string]any{"receipt": paid.Receipt}, nil); st != 200 {
		t.Fatalf("redeem: %d %v", st, err)
	}
	if st, _ := api(t, "POST", base+"/api/redeem", map[string]any{"receipt": paid.Receipt}, nil); st != 409 {
		t.Fatalf("second redeem: %d", st)
	}
	out.Reset()
	t.Setenv("MICRODROP_ADMIN_TOKEN", testAdminToken)
	if err := runAudit(ctx, []string{"--money", "--url", base}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "BALANCED") {
		t.Fatalf("audit --money --url: %v\n%s", err, &out)
	}
	out.Reset()
	if err := runAudit(ctx, []string{"--url", base, id}, &out, io.Discard); err != nil {
		t.Fatalf("drop audit with a pass: %v\n%s", err, &out)
	}
	closed = true
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runAudit(ctx, []string{"--money", "--data", data}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "EUR: total 0, revenue 4500") {
		t.Fatalf("audit --money --data: %v\n%s", err, &out)
	}
	out.Reset()
	if err := runAudit(ctx, []string{"--data", data, id}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "1 unpaid units passed on") {
		t.Fatalf("drop audit from the data dir: %v\n%s", err, &out)
	}
}
