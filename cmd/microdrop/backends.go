package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// openLedger opens the configured ledger: SQLite in the data dir by default.
func (m *Main) openLedger(ctx context.Context) (claims.Ledger, error) {
	switch {
	case m.Config.Ledger == "":
		return sqlite.Open(ctx, filepath.Join(m.Config.Data, "ledger.db"), m.Logger)
	case strings.HasPrefix(m.Config.Ledger, "sqlite:"):
		return sqlite.Open(ctx, strings.TrimPrefix(m.Config.Ledger, "sqlite:"), m.Logger)
	}
	return nil, fmt.Errorf("ledger %q is not supported by this build", m.Config.Ledger)
}

// openBus opens the configured event bus: in-process by default.
func (m *Main) openBus(_ context.Context) (microdrop.Bus, func() error, error) {
	if m.Config.Bus == "" {
		return microdrop.NewMemoryBus(), func() error { return nil }, nil
	}
	return nil, nil, fmt.Errorf("bus %q is not supported by this build", m.Config.Bus)
}

// registerBusMetrics exposes subscribers, lag and drops of an in-memory bus.
func (m *Main) registerBusMetrics() {
	mb, ok := m.Bus.(*microdrop.MemoryBus)
	if !ok {
		return
	}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "microdrop_bus_subscribers", Help: "Event bus subscribers."},
			func() float64 { n, _, _ := mb.Stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "microdrop_bus_lag_events", Help: "Events waiting in subscriber buffers."},
			func() float64 { _, l, _ := mb.Stats(); return float64(l) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "microdrop_bus_dropped_events_total", Help: "Events slow subscribers missed."},
			func() float64 { _, _, d := mb.Stats(); return float64(d) }),
	)
}
