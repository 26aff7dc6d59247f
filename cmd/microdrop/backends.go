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
// picks a schema). With Postgres this replica decides only the drops whose
// lease it holds and forwards the rest over the bus (claims/replica.go).
func (m *Main) openLedger(ctx context.Context) (claims.Ledger, error) {
	switch l := m.Config.Ledger; {
	case l == "":
		return sqlite.Open(ctx, filepath.Join(m.Config.Data, "ledger.db"), m.Logger)
	case strings.HasPrefix(l, "sqlite:"):
		return sqlite.Open(ctx, strings.TrimPrefix(l, "sqlite:"), m.Logger)
	case strings.HasPrefix(l, "postgres://"), strings.HasPrefix(l, "postgresql://"):
		return postgres.Open(ctx, l, postgres.Options{Logger: m.Logger})
	}
	return nil, fmt.Errorf("ledger %q is not supported by this build", m.Config.Ledger)
}

// openBus opens the configured event bus: in-process by default, or NATS
// JetStream shared by several replicas (nats://host:port?stream=S&prefix=P).
func (m *Main) openBus(ctx context.Context) (microdrop.Bus, func() error, error) {
	if m.Config.Bus == "" {
		return microdrop.NewMemoryBus(), func() error { return nil }, nil
	}
	servers, o, err := mdnats.ParseURL(m.Config.Bus)
	if err != nil {
		return nil, nil, err
	}
	o.Logger = m.Logger
	b, err := mdnats.Open(ctx, servers, o)
	if err != nil {
		return nil, nil, err
	}
	return b, b.Close, nil
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
