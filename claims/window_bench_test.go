package claims

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkWindowDraw measures what happens at a window's end: 100,000
// claims that arrived inside the window, ranked on arrival, are drawn:
// sorted by their seeded rank, the stock awarded (tokens signed, events
// built), every loser recorded, and the round handed to the committer. The
// ledger commit that follows is not in it (BenchmarkWindowClaims has the
// whole path). One op is one window.
func BenchmarkWindowDraw(b *testing.B) {
	const n = 100_000
	for _, stock := range []int{1000, 10_000} {
		b.Run(fmt.Sprintf("claims=%d/stock=%d", n, stock), func(b *testing.B) {
			signer, err := NewTokenSigner([]byte("bench-key-0123456789"))
			if err != nil {
				b.Fatal(err)
			}
			opts := Options{}
			opts.fill()
			s := &Service{signer: signer, opts: opts, now: time.Now, log: slog.New(slog.DiscardHandler), metrics: NewMetrics(nil)}
			open := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
			seed := make([]byte, 32)
			rand.NewChaCha8([32]byte{1}).Read(seed)
			users := make([]string, n)
			for i := range users {
				users[i] = fmt.Sprintf("viewer%07d", i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				d := &Drop{ID: "bench", Channel: "bench", SKU: "x", Stock: stock, Remaining: stock, Cap: 1, Policy: Window,
					Budget: 6 * time.Second, OpensAt: open, ClosesAt: open.Add(time.Minute), Seed: seed, SeedHash: SeedHashOf(seed), State: Open}
				dc := newDecider(s, d, nil)
				for j := 0; j < n; j++ {
					// The arrivals the decider ranks as they come in, spread over the 6 s.
					cr := &claimReq{req: ClaimRequest{DropID: d.ID, Viewer: Viewer{UserID: users[j]}}, reply: make(chan claimReply, 1),
						at: open.Add(time.Duration(j) * 6 * time.Second / n), seq: int64(j + 1), cap: 1}
					dc.window = append(dc.window, newWindowClaim(dc.d.rankOf(0, users[j], cr.seq), cr))
					dc.queued[users[j]]++
				}
				b.StartTimer()
				dc.decideWindow(d.WindowEndsAt())
				b.StopTimer()
				job := <-dc.commits
				if job.wins != stock || len(job.insert) != n || dc.d.State != SoldOut {
					b.Fatalf("draw gave %d wins, %d entries, state %s", job.wins, len(job.insert), dc.d.State)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/window")
		})
	}
}

// BenchmarkWindowRank is the work each claim costs on arrival in a window:
// its seeded rank (one SHA-256).
func BenchmarkWindowRank(b *testing.B) {
	seed := make([]byte, 32)
	d := &Drop{Policy: Window, Seed: seed}
	var r rank
	for i := 0; b.Loop(); i++ {
		r = d.rankOf(0, "viewer0012345", int64(i))
	}
	_ = r
}
