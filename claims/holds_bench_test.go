package claims_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/ledgertest"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// BenchmarkExpire10kHolds: 10,000 holds of one priced drop fall due in the
// same second and are passed down the line (10,000 waiting) with the next
// holders told. One op is the whole pass-down.
func BenchmarkExpire10kHolds(b *testing.B) {
	const n = 10_000
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		l := sqlite.MustOpen(b)
		d := ledgertest.NewDrop(fmt.Sprintf("bench%d", i), n)
		d.Policy, d.Stages, d.PayWindow, d.PayMethods, d.State = claims.FCFS, nil, 10*time.Minute, []string{claims.PayWallet}, claims.Closed
		if err := l.CreateDrop(ctx, d); err != nil {
			b.Fatal(err)
		}
		t0 := d.OpensAt
		due := t0.Add(10 * time.Minute)
		batch := claims.Batch{DropID: d.ID, Wins: n}
		for s := int64(1); s <= 2*n; s++ {
			e := claims.Entry{DropID: d.ID, Seq: s, UserID: fmt.Sprintf("u%d", s), Cap: 1, Outcome: claims.OutcomeLost, ArrivedAt: t0, DecidedAt: t0}
			if s <= n {
				e.Outcome, e.Unit = claims.OutcomeWon, 1
				batch.Holds = append(batch.Holds, claims.Hold{ID: claims.HoldID(d.ID, s), DropID: d.ID, Seq: s, UserID: e.UserID, Unit: 1,
					AmountMinor: d.PriceMinor, Currency: d.Currency, State: claims.HoldAwaiting, CreatedAt: t0,
					Deadline: due.Add(time.Duration(s) * 50 * time.Microsecond)}) // spread over half a second
			}
			batch.Insert = append(batch.Insert, e)
		}
		if err := l.Commit(ctx, batch); err != nil {
			b.Fatal(err)
		}
		bus := microdrop.NewMemoryBus()
		sub := bus.Subscribe(4 * n)
		now := due.Add(time.Second)
		signer, _ := claims.NewTokenSigner([]byte("current-key-0123456789"))
		svc, err := claims.New(claims.Deps{Ledger: l, Bus: bus, Signer: signer, Now: func() time.Time { return now }})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		// Start loads the holds; its timer finds them due and passes them.
		if err := svc.Start(ctx); err != nil {
			b.Fatal(err)
		}
		told := 0
		for told < n {
			if e := <-sub.C(); e.Kind == microdrop.HoldPassed {
				told++
			}
		}
		b.StopTimer()
		svc.Close()
		if hs, _ := l.Holds(ctx, claims.HoldFilter{DropID: d.ID, State: claims.HoldExpired}); len(hs) != n {
			b.Fatalf("%d holds expired, want %d", len(hs), n)
		}
		b.StartTimer()
	}
}
