package main

import (
	"context"
	"path/filepath"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/webhook"
)

// startWebhooks delivers the ledger's outbox to the webhook endpoints
// kept in the data dir, and mounts their admin API.
func (m *Main) startWebhooks(ctx context.Context) error {
	ob, ok := m.Ledger.(claims.Outbox)
	if !ok {
		return nil
	}
	st, err := webhook.OpenStore(ctx, filepath.Join(m.Config.Data, "webhooks.db"))
	if err != nil {
		return err
	}
	m.onClose("webhook store", st.Close)
	w := webhook.NewWorker(webhook.Deps{Outbox: ob, Store: st, Now: m.Now, Logger: m.Logger, Metrics: webhook.NewMetrics(m.Registry)})
	w.Start()
	// The worker stops before the store and the ledger close.
	m.onClose("webhooks", w.Close)
	m.webhooks = webhook.NewHandler(st, w, ob, m.Admin)
	m.Mux.Handle("/api/webhooks/", m.webhooks)
	return nil
}
