package sqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/ledgertest"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// BenchmarkCommitWins measures durable group commits of won entries, the
// ledger's share of a claim decision. Reported per entry.
func BenchmarkCommitWins(b *testing.B) {
	signer, _ := claims.NewTokenSigner([]byte("bench-key-0123456789"))
	for _, batch := range []int{16, 64, 1024} {
		for _, random := range []bool{false, true} {
			b.Run(fmt.Sprintf("batch=%d/random=%v", batch, random), func(b *testing.B) {
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
						user, tok := fmt.Sprintf("u%09d", seq), fmt.Sprintf("T%015d", seq)
						if random {
							// As in a real drop: viewer ids and tokens in no order.
							user, tok = fmt.Sprintf("u%09d-%d", rand.Int64N(1e9), seq), signer.New()
						}
						bt.Insert = append(bt.Insert, ledgertest.Win("bench", seq, user, 1, tok))
					}
					if err := l.Commit(ctx, bt); err != nil {
						b.Fatal(err)
					}
					done += n
				}
			})
		}
	}
}
