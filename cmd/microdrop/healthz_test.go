package main

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// refusingLedger is the real SQLite ledger whose commits fail while refuse
// is set; reads keep working, as on a disk that filled up.
type refusingLedger struct {
	claims.Ledger
	refuse atomic.Bool
}

func (l *refusingLedger) Commit(ctx context.Context, b claims.Batch) error {
	if l.refuse.Load() {
		return errors.New("disk full")
	}
	return l.Ledger.Commit(ctx, b)
}

// /healthz turns degraded, with the reason, while the ledger answers reads
// but fails the deciders' commits, and healthy again once a commit lands.
func TestHealthzReportsFailingCommits(t *testing.T) {
	l := &refusingLedger{Ledger: sqlite.MustOpen(t)}
	signer, err := claims.NewTokenSigner([]byte("healthz-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := claims.New(claims.Deps{Ledger: l, Bus: microdrop.NewMemoryBus(), Signer: signer,
		Options: claims.Options{ClaimRate: 1000, ClaimBurst: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	m := &Main{Ledger: l, Claims: svc}
	healthz := func() (int, string) {
		rec := httptest.NewRecorder()
		m.healthz(rec, httptest.NewRequest("GET", "/healthz", nil))
		body, _ := io.ReadAll(rec.Body)
		return rec.Code, string(body)
	}
	if code, body := healthz(); code != 200 || body != "ok\n" {
		t.Fatalf("healthy: %d %q", code, body)
	}
	d, err := svc.OpenDrop(context.Background(), claims.OpenRequest{Channel: "streamer", SKU: "hoodie", Stock: 3,
		Duration: claims.Duration(time.Hour), Policy: claims.FCFS})
	if err != nil {
		t.Fatal(err)
	}
	claim := func(user string) error {
		_, err := svc.Claim(context.Background(), claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: user}})
		return err
	}
	l.refuse.Store(true)
	if err := claim("alice"); microdrop.ErrorReason(err) != microdrop.ReasonUnavailable {
		t.Fatalf("claim on a refusing ledger: %v", err)
	}
	if code, body := healthz(); code != 503 || !strings.Contains(body, "degraded") || !strings.Contains(body, d.ID) || strings.Contains(body, "disk full") {
		t.Fatalf("degraded: %d %q; want 503 naming the drop, without the ledger's own error text", code, body)
	}
	l.refuse.Store(false)
	if err := claim("alice"); err != nil {
		t.Fatal(err)
	}
	if code, body := healthz(); code != 200 {
		t.Fatalf("after recovery: %d %q", code, body)
	}
}
