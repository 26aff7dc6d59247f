package claims_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// BenchmarkClaim measures durable claim decisions through the Service with
// the SQLite ledger (WAL, synced before every answer): every op is one claim from a
// new viewer, decided and committed before it returns.
func BenchmarkClaim(b *testing.B) {
	for _, tc := range []struct {
		policy claims.Policy
		stock  int
	}{{claims.FCFS, claims.MaxStock}, {claims.FCFS, 1000}} {
		b.Run(fmt.Sprintf("%s/stock=%d", tc.policy, tc.stock), func(b *testing.B) {
			signer, _ := claims.NewTokenSigner([]byte("bench-key-0123456789"))
			svc, err := claims.New(claims.Deps{Ledger: sqlite.MustOpen(b), Bus: microdrop.NewMemoryBus(), Signer: signer,
				Options: claims.Options{ClaimRate: 1e9, ClaimBurst: 1 << 30}})
			if err != nil {
				b.Fatal(err)
			}
			defer svc.Close()
			d, err := svc.OpenDrop(context.Background(), claims.OpenRequest{Channel: "bench", SKU: "x", Stock: tc.stock,
				Duration: claims.Duration(time.Hour), Policy: tc.policy})
			if err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			b.SetParallelism(128)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, _ = svc.Claim(context.Background(), claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: fmt.Sprintf("u%d", n.Add(1))}})
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
		})
	}
}

// BenchmarkWindowClaims is a window's whole path through the Service and
// the durable SQLite ledger: 100,000 claims queued inside a 6 s window (on
// an injected clock), then the clock passes the window's end; one op runs
// from there until every claim has its answer, that is the draw plus the
// commit of 100,000 entries. BenchmarkWindowDraw is the draw alone.
func BenchmarkWindowClaims(b *testing.B) {
	const n, stock = 100_000, 1000
	signer, _ := claims.NewTokenSigner([]byte("bench-key-0123456789"))
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("viewer%07d", i)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		clk := newClock()
		svc, err := claims.New(claims.Deps{Ledger: sqlite.MustOpen(b), Bus: microdrop.NewMemoryBus(), Signer: signer, Now: clk.Now,
			Options: claims.Options{ClaimRate: 1e9, ClaimBurst: 1 << 30, CommitTimeout: time.Minute}})
		if err != nil {
			b.Fatal(err)
		}
		budget := claims.Duration(6 * time.Second)
		d, err := svc.OpenDrop(context.Background(), claims.OpenRequest{Channel: "bench", SKU: "x", Stock: stock,
			Duration: claims.Duration(time.Hour), Budget: &budget})
		if err != nil {
			b.Fatal(err)
		}
		queued := make([]claims.QueuedClaim, n)
		for j := range queued {
			queued[j] = svc.QueueClaim(claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: users[j]}})
		}
		// A duplicate is answered once the decider has taken all of them.
		if _, err := svc.Claim(context.Background(), claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: users[0]}}); microdrop.ErrorReason(err) != claims.ReasonDuplicate {
			b.Fatal(err)
		}
		b.StartTimer()
		clk.Advance(6 * time.Second)
		for _, q := range queued {
			_, _ = q.Wait()
		}
		b.StopTimer()
		svc.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/window")
}

// BenchmarkQRSVG is the pickup QR a winner's phone loads: one per win.
func BenchmarkQRSVG(b *testing.B) {
	signer, _ := claims.NewTokenSigner([]byte("bench-key-0123456789"))
	tok := signer.New()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := claims.QRSVG(tok); err != nil {
			b.Fatal(err)
		}
	}
}
