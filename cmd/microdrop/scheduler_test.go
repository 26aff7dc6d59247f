package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
)

type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *simClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// payoutLoopRunning reports whether a goroutine of the payout scheduler
// is alive.
func payoutLoopRunning() bool {
	buf := make([]byte, 1<<22)
	return bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("claims.(*Payouts).Start"))
}

// The payout scheduler in serve, on serve's injected clock: a creator on
// a daily schedule is paid out with no API call once money is in the
// balance, not again on the same day however often it looks, again after
// the clock passes midnight, and the scheduler's goroutine is gone after
// shutdown.
func TestPayoutSchedulerInServe(t *testing.T) {
	if payoutLoopRunning() {
		t.Fatal("a payout scheduler is running before the test")
	}
	data := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "microdrop.yml")
	if err := os.WriteFile(cfg, []byte(`payments:
  fee_basis_points: 500
creators:
  crea:
    payout:
      schedule: daily
      currency: EUR
`), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := &simClock{t: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	m := NewMain(io.Discard, &lockedWriter{w: &bytes.Buffer{}})
	env := func(k string) (string, bool) {
		if k == "MICRODROP_ADMIN_TOKEN" {
			return testAdminToken, true
		}
		return "", false
	}
	if err := m.ParseFlags([]string{"--config", cfg, "--http", "127.0.0.1:0", "--rtsp", "off", "--data", data}, env); err != nil {
		t.Fatal(err)
	}
	m.Now, m.PayoutTick = clock.Now, 10*time.Millisecond
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
	base := "http://" + m.HTTPAddr
	sell := func(user string) {
		t.Helper()
		var open claims.DropResponse
		if st, err := api(t, "POST", base+"/api/drops", map[string]any{"channel": user, "sku": "hoodie", "stock": 1, "price_minor": 2000,
			"currency": "EUR", "duration": "1m", "policy": "fcfs", "pay": []string{"wallet"}, "creator_id": "crea", "limited_run_id": "run-" + user}, &open); st != 201 {
			t.Fatalf("open: %d %v", st, err)
		}
		var won claims.ClaimResult
		if st, err := api(t, "POST", base+"/api/drops/"+open.Drop.ID+"/claims", map[string]any{"user_id": user}, &won); st != 200 || won.HoldID == "" {
			t.Fatalf("claim: %d %v", st, err)
		}
		if st, _ := api(t, "POST", base+"/api/wallets/"+user+"/topup", map[string]any{"key": "k-" + user, "amount_minor": 2000, "currency": "EUR"}, nil); st != 200 {
			t.Fatalf("top-up: %d", st)
		}
		if st, _ := api(t, "POST", base+"/api/holds/"+won.HoldID+"/pay", map[string]any{"user_id": user, "method": "wallet"}, nil); st != 200 {
			t.Fatalf("pay: %d", st)
		}
	}
	paidOut := func() []claims.Payout {
		t.Helper()
		var list struct{ Payouts []claims.Payout }
		if st, err := api(t, "GET", base+"/api/payouts?creator=crea&state=paid", nil, &list); st != 200 {
			t.Fatalf("payouts: %d %v", st, err)
		}
		return list.Payouts
	}
	waitPaid := func(n int) []claims.Payout {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ps := paidOut()
			if len(ps) >= n {
				return ps
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d payouts paid after 20s, want %d", len(ps), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	sell("ann")
	ps := waitPaid(1)
	if ps[0].AmountMinor != 1900 || ps[0].Provider != claims.ProviderFile || !ps[0].CreatedAt.Equal(clock.Now()) {
		t.Fatalf("first payout %+v (clock %s)", ps[0], clock.Now())
	}
	if _, err := os.Stat(filepath.Join(data, "payouts", ps[0].Reference)); err != nil {
		t.Fatalf("payout file: %v", err)
	}
	// More money the same day: the scheduler looks many times and waits.
	sell("ben")
	clock.Advance(13 * time.Hour) // 23:00, still the 26th
	time.Sleep(300 * time.Millisecond)
	if ps := paidOut(); len(ps) != 1 {
		t.Fatalf("paid out twice on one day: %+v", ps)
	}
	clock.Advance(2 * time.Hour) // 01:00 on the 27th
	ps = waitPaid(2)
	if ps[1].AmountMinor != 1900 || ps[1].CreatedAt.Day() != 27 || ps[1].Lines[0].LimitedRunID != "run-ben" {
		t.Fatalf("second payout %+v", ps[1])
	}
	if !payoutLoopRunning() {
		t.Fatal("no payout scheduler goroutine while serving")
	}
	closed = true
	if err := m.Close(); err != nil && !strings.Contains(err.Error(), "context canceled") {
		t.Fatal(err)
	}
	if payoutLoopRunning() {
		t.Fatal("the payout scheduler is still running after shutdown")
	}
}
