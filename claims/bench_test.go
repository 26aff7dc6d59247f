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
// the SQLite ledger (WAL, synchronous=FULL): every op is one claim from a
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
