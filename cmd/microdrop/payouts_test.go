package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
	"github.com/microdrop/microdrop/claims/stripe"
	"github.com/microdrop/microdrop/claims/stripe/stripetest"
)

// seedPaidHold writes, into data's ledger, a wallet drop of creator won
// and paid by ann, and returns the drop.
func seedPaidHold(t *testing.T, data, creator string, price int64) *claims.Drop {
	t.Helper()
	ctx := context.Background()
	l, err := sqlite.Open(ctx, filepath.Join(data, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	signer, _ := claims.NewTokenSigner([]byte("seed-key-0123456789abcdef"))
	svc, err := claims.New(claims.Deps{Ledger: l, Bus: microdrop.NewMemoryBus(), Signer: signer,
		Options: claims.Options{ClaimRate: 100, ClaimBurst: 100, FeeBasisPoints: 500}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	d, err := svc.OpenDrop(ctx, claims.OpenRequest{Channel: "streamer", SKU: "hoodie", Stock: 1, PriceMinor: price, Currency: "EUR",
		Duration: claims.Duration(time.Minute), Policy: claims.FCFS, Pay: []string{"wallet"}, CreatorID: creator, LimitedRunID: "run1"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: "ann", Login: "ann"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.TopUp(ctx, "t1", "ann", "admin", price, "EUR", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PayFromWallet(ctx, res.HoldID, "ann"); err != nil {
		t.Fatal(err)
	}
	return d
}

// A payout run killed with SIGKILL after Stripe made the transfer and
// before the ledger recorded it paid resumes without paying twice: the
// restarted run sends the same transfer with the same idempotency key
// (which Stripe answers with the transfer it already made), exactly one
// paid movement is posted, and the books balance.
func TestPayoutRunKilledMidwayResumes(t *testing.T) {
	data := t.TempDir()
	d := seedPaidHold(t, data, "crea", 4500)
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
	var mu sync.Mutex
	var child *exec.Cmd
	killed := make(chan struct{})
	rec.OnResponse(func(r stripetest.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Path == "/v1/transfers" && child != nil {
			// Stripe has made the transfer; the run dies before it hears so.
			_ = syscall.Kill(-child.Process.Pid, syscall.SIGKILL)
			child = nil
			close(killed)
		}
	})
	run := func() (string, error) {
		cmd := exec.Command(microdropBinary(t), "payouts", "run", "--config", cfg, "--data", data)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		mu.Lock()
		err := cmd.Start()
		if err == nil && killed != nil {
			select {
			case <-killed:
			default:
				child = cmd
			}
		}
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(60 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Fatalf("payout run did not finish:\n%s", &out)
		}
		return out.String(), err
	}
	out, err := run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("first run was not killed: %v\n%s", err, out)
	}
	ctx := context.Background()
	l, err := sqlite.Open(ctx, filepath.Join(data, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := l.Payouts(ctx, claims.PayoutFilter{})
	if err != nil || len(ps) != 1 || ps[0].State != claims.PayoutInTransit {
		t.Fatalf("after the kill: %+v %v", ps, err)
	}
	l.Close()

	out, err = run()
	if err != nil || !strings.Contains(out, "1 resumed, 0 started, 1 paid") {
		t.Fatalf("resumed run: %v\n%s", err, out)
	}
	// Run once more: nothing is due, nothing is sent.
	if out, err := run(); err != nil || !strings.Contains(out, "0 resumed, 0 started, 0 paid") {
		t.Fatalf("third run: %v\n%s", err, out)
	}
	keys := map[string]int{}
	for _, r := range rec.Requests() {
		if r.Path == "/v1/transfers" {
			keys[r.IdempotencyKey]++
		}
	}
	want := stripe.TransferIdempotencyKey(ps[0].ID)
	if len(keys) != 1 || keys[want] != 2 {
		t.Fatalf("transfers by idempotency key %v, want 2 requests all with %s", keys, want)
	}
	l, err = sqlite.Open(ctx, filepath.Join(data, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ms, _ := l.Movements(ctx, "")
	hs, _ := l.Holds(ctx, claims.HoldFilter{})
	paid := 0
	for _, m := range ms {
		if m.Kind == claims.MovePayoutPaid {
			paid++
		}
	}
	rep := claims.AuditMoney(ms, hs)
	po, _ := l.Payout(ctx, ps[0].ID)
	if paid != 1 || !rep.Balanced || po.State != claims.PayoutPaid || !strings.HasPrefix(po.Reference, "tr_") ||
		rep.Balances[claims.PaidOutAccount(claims.ProviderStripeConnect)]["EUR"] != 4275 || po.Lines[0].DropID != d.ID {
		t.Fatalf("%d paid movements, books %+v, payout %+v", paid, rep, po)
	}
}

// The export reads each claim's payment and refunds, so claims.csv and
// the manifest carry paid/refunded per drop and revenue per creator.
func TestExportReadsPaymentsOfClaims(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	d := seedPaidHold(t, data, "crea", 4500)
	l, err := sqlite.Open(ctx, filepath.Join(data, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	signer, _ := claims.NewTokenSigner([]byte("seed-key-0123456789abcdef"))
	svc, err := claims.New(claims.Deps{Ledger: l, Bus: microdrop.NewMemoryBus(), Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.RefundHold(ctx, claims.Refund{Key: "r1", HoldID: claims.HoldID(d.ID, 1), AmountMinor: 500, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	cs, err := ledgerDrops{l}.Claims(ctx, d.ID)
	if err != nil || len(cs) != 1 || cs[0].PaidMinor != 4500 || cs[0].RefundedMinor != 500 {
		t.Fatalf("claims %+v %v", cs, err)
	}
}
