package sqlite_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/ledgertest"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// BenchmarkCommitWins measures durable group commits of won entries, the
// ledger's share of a claim decision. Reported per entry.
func BenchmarkCommitWins(b *testing.B) {
	for _, batch := range []int{64, 1024} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			l := sqlite.MustOpen(b)
			ctx := context.Background()
			d := ledgertest.NewDrop("bench", claims.MaxStock)
			if err := l.CreateDrop(ctx, d); err != nil {
				b.Fatal(err)
			}
			seq := int64(0)
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(batch, b.N-done)
				bt := claims.Batch{DropID: "bench", Wins: n}
				for i := 0; i < n; i++ {
					seq++
					bt.Insert = append(bt.Insert, ledgertest.Win("bench", seq, fmt.Sprintf("u%d", seq), 1, fmt.Sprintf("T%015d", seq)))
				}
				if err := l.Commit(ctx, bt); err != nil {
					b.Fatal(err)
				}
				done += n
			}
		})
	}
}
