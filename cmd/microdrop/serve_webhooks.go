package main

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/webhook"
)

// startWebhooks delivers the ledger's outbox to the webhook endpoints and
// mounts their admin API.
func (m *Main) startWebhooks(ctx context.Context) error {
	ob, ok := m.Ledger.(claims.Outbox)
	if !ok {
		return nil
	}
	st, err := m.openWebhookStore(ctx)
	if err != nil {
		return err
	}
	m.onClose("webhook store", st.Close)
	w := webhook.NewWorker(webhook.Deps{Outbox: ob, Store: st, Now: m.Now, Logger: m.Logger, Metrics: webhook.NewMetrics(m.Registry)})
	w.Start()
	// The worker stops before the store and the ledger close.
	m.onClose("webhooks", w.Close)
	m.webhooks = webhook.NewHandler(st, w, ob, m.Admin)
	m.api.WithAddresses(m.webhooks)
	m.Mux.Handle("/api/webhooks/", m.webhooks)
	return nil
}

// openWebhookStore opens where endpoints, queues and the delivery log
// live: webhooks.db in the data dir for a SQLite ledger; for a shared
// Postgres ledger its database, so every replica sees the same endpoints
// and log, and one replica at a time (the delivery lease's holder)
// delivers.
func (m *Main) openWebhookStore(ctx context.Context) (*webhook.Store, error) {
	if dsn := m.Config.Ledger; strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		owner := ""
		if r, ok := m.Ledger.(interface{ ReplicaID() string }); ok {
			owner = r.ReplicaID()
		}
		return webhook.OpenPostgresStore(ctx, dsn, owner)
	}
	return webhook.OpenStore(ctx, filepath.Join(m.Config.Data, "webhooks.db"))
}

// startRelay, in scale-out (a shared bus), publishes to the bus the hold
// events the ledger's outbox holds past the last relayed one, so a replica
// killed between its commit and its publish loses none; the bus drops the
// copies of events the service did publish (they carry the same id).
func (m *Main) startRelay() {
	src, ok := m.Ledger.(claims.OutboxRelay)
	books, isBooks := m.Ledger.(claims.Books)
	if !ok || !isBooks || m.Config.Bus == "" {
		return
	}
	r := claims.NewRelay(src, books.Hold, m.Bus, m.Logger, time.Second)
	r.Start()
	m.onClose("outbox relay", r.Close)
}
