package chat

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
)

// BenchmarkRouterClaim: "!claim" messages parsed, checked, routed and
// decided by a real claims.Service on SQLite, 64 chatters at a time.
func BenchmarkRouterClaim(b *testing.B) {
	svc, bus := newService(b, time.Now)
	r, err := NewRouter(Deps{Claims: svc, Bus: bus, UserRate: 1e6, UserBurst: 1e6})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if got := r.Handle(ctx, mod("!drop open bench 1000000 1h")); len(got) != 1 || !strings.Contains(got[0].Text, "is open") {
		b.Fatal(texts(got))
	}
	var n atomic.Int64
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			if got := r.Handle(ctx, viewer(i, "!claim")); len(got) != 2 {
				b.Fatal(texts(got))
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkClaimsCore is the same load straight into claims.Service.Claim,
// for comparison.
func BenchmarkClaimsCore(b *testing.B) {
	svc, _ := newService(b, time.Now)
	ctx := context.Background()
	d, err := svc.OpenDrop(ctx, claims.OpenRequest{Channel: "chan", SKU: "bench", Stock: 1_000_000, Duration: claims.Duration(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := svc.Claim(ctx, claims.ClaimRequest{DropID: d.ID, Viewer: claims.Viewer{UserID: fmt.Sprintf("u%d", i), Login: "x"}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkParse is the parser alone.
func BenchmarkParse(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := Parse("!", "!drop open hoodie 50 1m30s $24.99 raffle MOON42"); err != nil {
			b.Fatal(err)
		}
	}
}
