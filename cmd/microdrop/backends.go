package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	mdnats "github.com/microdrop/microdrop/claims/nats"
	"github.com/microdrop/microdrop/claims/postgres"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// openLedger opens the configured ledger: SQLite in the data dir by default,
// or PostgreSQL shared by several replicas (postgres://...; search_path=...
// picks a schema). leases is set only for a shared ledger: this replica then
// decides only the drops whose lease it holds (see placement).
// Outbox events name buyers by holder, the receipts' pseudonym.
func (m *Main) openLedger(ctx context.Context, holder claims.Pseudonym) (l claims.Ledger, leases claims.DropLeases, err error) {
	switch dsn := m.Config.Ledger; {
	case dsn == "":
		l, err = sqlite.OpenWith(ctx, filepath.Join(m.Config.Data, "ledger.db"), sqlite.Options{Logger: m.Logger, Holder: holder})
		return l, nil, err
	case strings.HasPrefix(dsn, "sqlite:"):
		l, err = sqlite.OpenWith(ctx, strings.TrimPrefix(dsn, "sqlite:"), sqlite.Options{Logger: m.Logger, Holder: holder})
		return l, nil, err
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		pg, err := postgres.Open(ctx, dsn, postgres.Options{Logger: m.Logger, Holder: holder})
		if err != nil {
			return nil, nil, err
		}
		return pg, pg, nil
	}
	return nil, nil, fmt.Errorf("ledger %q is not supported by this build", m.Config.Ledger)
}

// openBus opens the configured event bus: in-process by default, or NATS
// JetStream shared by several replicas (nats://host:port?stream=S&prefix=P).
// fwd is set only for NATS, which also carries claims between replicas.
func (m *Main) openBus(ctx context.Context) (bus microdrop.Bus, fwd claims.Forwarder, closeBus func() error, err error) {
	if m.Config.Bus == "" {
		return microdrop.NewMemoryBus(), nil, func() error { return nil }, nil
	}
	servers, o, err := mdnats.ParseURL(m.Config.Bus)
	if err != nil {
		return nil, nil, nil, err
	}
	o.Logger = m.Logger
	b, err := mdnats.Open(ctx, servers, o)
	if err != nil {
		return nil, nil, nil, err
	}
	return b, b, b.Close, nil
}

// placement is where this process decides drops: all of them on its own
// ledger, or, on a ledger shared by replicas, the ones whose lease it holds,
// forwarding the rest to their holders over the bus (claims/leased.go).
func placement(leases claims.DropLeases, fwd claims.Forwarder) claims.Placement {
	if leases == nil {
		return claims.Local()
	}
	return claims.Leased(leases, fwd)
}

// busStats is what both buses report for /metrics.
type busStats interface {
	Stats() (subscribers, lag int, dropped uint64)
}

// registerBusMetrics exposes this replica's subscribers, their lag and drops.
func (m *Main) registerBusMetrics() {
	mb, ok := m.Bus.(busStats)
	if !ok {
		return
	}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "microdrop_bus_subscribers", Help: "Event bus subscribers."},
			func() float64 { n, _, _ := mb.Stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "microdrop_bus_lag_events", Help: "Events waiting in subscriber buffers and backlogs."},
			func() float64 { _, l, _ := mb.Stats(); return float64(l) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "microdrop_bus_dropped_events_total", Help: "Claim and redemption events slow subscribers missed; no other kind is ever dropped."},
			func() float64 { _, _, d := mb.Stats(); return float64(d) }),
	)
}
