package overlay

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims/webhook"
	"github.com/microdrop/microdrop/templates"
)

// dashboardLogSize is how many deliveries per endpoint the dashboard shows.
const dashboardLogSize = 20

// dashWebhooks is the dashboard's view of the webhook endpoints with their
// latest deliveries, and a notice per disabled endpoint.
func (s *Server) dashWebhooks(ctx context.Context) ([]templates.DashboardEndpoint, []templates.DashboardAlert) {
	if s.webhooks == nil {
		return nil, nil
	}
	eps, err := s.webhooks.Endpoints(ctx)
	if err != nil {
		s.log.Warn("dashboard: webhook endpoints", "err", err)
		return nil, []templates.DashboardAlert{{What: "The webhook endpoints could not be read.", Fix: "Check the server log."}}
	}
	var out []templates.DashboardEndpoint
	var alerts []templates.DashboardAlert
	for _, e := range eps {
		de := templates.DashboardEndpoint{ID: e.ID, URL: e.URL, Channel: defaultStr(e.Channel, "every channel"),
			Kinds: strings.Join(e.Kinds, ", "), Fulfilment: e.Fulfilment, Disabled: e.Disabled, DisabledReason: e.DisabledReason}
		if e.Disabled {
			de.DisabledAt = e.DisabledAt.Local().Format(time.DateTime)
			alerts = append(alerts, templates.DashboardAlert{
				What: "Webhook endpoint " + e.ID + " (" + e.URL + ") is disabled: " + e.DisabledReason + ". Its events wait in its queue.",
				Fix:  "When it answers again, press Enable under Webhooks (or PATCH /api/webhooks/endpoints/" + e.ID + ` with {"enabled":true}); the failed deliveries are retried in order.`})
		}
		log, err := s.webhooks.Log(ctx, e.ID, dashboardLogSize)
		if err != nil {
			s.log.Warn("dashboard: webhook log", "endpoint", e.ID, "err", err)
			de.LogError = "the delivery log could not be read: " + microdrop.ErrorMessage(err)
		}
		for _, d := range log {
			de.Deliveries = append(de.Deliveries, dashDelivery(d))
		}
		out = append(out, de)
	}
	return out, alerts
}

func dashDelivery(d webhook.DeliveryLog) templates.DashboardDelivery {
	dd := templates.DashboardDelivery{EventID: d.EventID, Kind: d.Kind, DropID: d.DropID, State: d.State,
		Attempts: strconv.Itoa(d.Attempts), Error: d.LastError}
	if d.LastStatus != 0 {
		dd.Status = strconv.Itoa(d.LastStatus)
	} else if d.Attempts > 0 {
		dd.Status = "no answer"
	}
	at := d.FirstAt
	if n := len(d.Log); n > 0 {
		last := d.Log[n-1]
		at = last.At
		dd.Latency = strconv.FormatInt(last.Latency.Milliseconds(), 10) + " ms"
	}
	if !d.DeliveredAt.IsZero() {
		at = d.DeliveredAt
	}
	if !at.IsZero() {
		dd.At = at.Local().Format(time.DateTime)
	}
	if d.State == webhook.Pending && !d.NextAt.IsZero() {
		dd.NextAt = d.NextAt.Local().Format(time.DateTime)
	}
	return dd
}

// enableEndpoint enables a disabled endpoint again.
func (s *Server) enableEndpoint(w http.ResponseWriter, r *http.Request) {
	if s.webhooks == nil {
		httpError(w, http.StatusNotFound, "webhooks are off: the ledger keeps no outbox")
		return
	}
	on := true
	e, err := s.webhooks.Update(r.Context(), r.PathValue("id"), webhook.EndpointBody{Enabled: &on})
	if err != nil {
		s.failForm(w, r, err, nil)
		return
	}
	http.Redirect(w, r, "/dashboard?what=enabled&done="+url.QueryEscape(e.ID)+"#webhooks", http.StatusSeeOther)
}

// redeliver queues one delivery again, due now.
func (s *Server) redeliver(w http.ResponseWriter, r *http.Request) {
	if s.webhooks == nil {
		httpError(w, http.StatusNotFound, "webhooks are off: the ledger keeps no outbox")
		return
	}
	d, err := s.webhooks.Redeliver(r.Context(), r.PathValue("id"), r.PathValue("event"))
	if err != nil {
		s.failForm(w, r, err, nil)
		return
	}
	http.Redirect(w, r, "/dashboard?what=redelivering&done="+url.QueryEscape(d.EventID)+"#webhooks", http.StatusSeeOther)
}
