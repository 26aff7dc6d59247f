package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/webhook"
	"github.com/microdrop/microdrop/templates"
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

// webhookAlerts is a dashboard notice per disabled endpoint.
func (m *Main) webhookAlerts() []templates.DashboardAlert {
	if m.webhooks == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	eps, err := m.webhooks.Endpoints(ctx)
	if err != nil {
		return []templates.DashboardAlert{{What: "The webhook endpoints could not be read.", Fix: "Check the server log."}}
	}
	var as []templates.DashboardAlert
	for _, e := range eps {
		if e.Disabled {
			as = append(as, templates.DashboardAlert{What: "Webhook endpoint " + e.ID + " (" + e.URL + ") is disabled: " + e.DisabledReason + ". Its events wait in its queue.",
				Fix: "When it answers again, enable it: PATCH /api/webhooks/endpoints/" + e.ID + ` with {"enabled":true}; the failed deliveries are retried in order.`})
		}
	}
	return as
}
