package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

// Handler is the admin API of webhook endpoints, under /api/webhooks/.
// Every route needs the admin (microdrop.Admin.Check).
type Handler struct {
	store  *Store
	worker *Worker
	outbox claims.Outbox
	admin  microdrop.Admin
	mux    *http.ServeMux
}

// NewHandler serves the endpoint API.
func NewHandler(store *Store, worker *Worker, outbox claims.Outbox, admin microdrop.Admin) *Handler {
	h := &Handler{store: store, worker: worker, outbox: outbox, admin: admin, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /api/webhooks/endpoints", h.list)
	h.mux.HandleFunc("POST /api/webhooks/endpoints", h.create)
	h.mux.HandleFunc("GET /api/webhooks/endpoints/{id}", h.get)
	h.mux.HandleFunc("PATCH /api/webhooks/endpoints/{id}", h.update)
	h.mux.HandleFunc("DELETE /api/webhooks/endpoints/{id}", h.remove)
	h.mux.HandleFunc("GET /api/webhooks/endpoints/{id}/deliveries", h.deliveries)
	h.mux.HandleFunc("POST /api/webhooks/endpoints/{id}/deliveries/{event}/redeliver", h.redeliver)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.admin.Check(r); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// EndpointBody creates or changes an endpoint. On update, absent fields
// stay as they are.
type EndpointBody struct {
	URL        *string  `json:"url"`
	Channel    *string  `json:"channel"`
	Kinds      []string `json:"kinds"`
	Fulfilment *bool    `json:"fulfilment"`
	// Enabled, on update: true enables a disabled endpoint again (its
	// failed deliveries are retried), false disables it.
	Enabled *bool `json:"enabled"`
}

var channelPattern = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// CheckURL refuses anything but an absolute http(s) URL with a host.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "" || len(raw) > 2000:
		return microdrop.Errorf(microdrop.EINVALID, "url must be an http or https URL of at most 2000 characters")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "":
		return microdrop.Errorf(microdrop.EINVALID, "url must be an absolute http or https URL, like https://shop.example/hooks/microdrop")
	case u.User != nil:
		return microdrop.Errorf(microdrop.EINVALID, "url must not carry a user name or password; the signature authenticates")
	case u.Fragment != "":
		return microdrop.Errorf(microdrop.EINVALID, "url must not have a #fragment")
	}
	return nil
}

// CheckKinds refuses an empty or unknown event kind list.
func CheckKinds(kinds []string) error {
	if len(kinds) == 0 {
		return microdrop.Errorf(microdrop.EINVALID, "kinds must name at least one event kind: %s", strings.Join(claims.EventKinds, ", "))
	}
	seen := map[string]bool{}
	for _, k := range kinds {
		if !claims.KnownEventKind(k) {
			return microdrop.Errorf(microdrop.EINVALID, "unknown event kind %q; the kinds are %s", k, strings.Join(claims.EventKinds, ", "))
		}
		if seen[k] {
			return microdrop.Errorf(microdrop.EINVALID, "event kind %q given twice", k)
		}
		seen[k] = true
	}
	return nil
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "ep_" + hex.EncodeToString(b)
}

// view is an endpoint without its secret.
func view(e Endpoint) Endpoint {
	e.Secret = ""
	return e
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	eps, err := h.store.Endpoints(r.Context())
	if err != nil {
		microdrop.WriteError(w, err)
		return
	}
	out := make([]Endpoint, 0, len(eps))
	for _, e := range eps {
		out = append(out, view(e))
	}
	microdrop.WriteJSON(w, http.StatusOK, map[string]any{"endpoints": out})
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	e, err := h.store.Endpoint(r.Context(), r.PathValue("id"))
	if err != nil {
		microdrop.WriteError(w, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, view(e))
}

// Create makes an endpoint. It starts at the current end of the outbox:
// it gets the events committed from now on.
func (h *Handler) Create(ctx context.Context, b EndpointBody) (Endpoint, error) {
	if b.URL == nil {
		return Endpoint{}, microdrop.Errorf(microdrop.EINVALID, "url is required")
	}
	if err := CheckURL(*b.URL); err != nil {
		return Endpoint{}, err
	}
	if err := CheckKinds(b.Kinds); err != nil {
		return Endpoint{}, err
	}
	ch := ""
	if b.Channel != nil && *b.Channel != "" {
		if !channelPattern.MatchString(*b.Channel) {
			return Endpoint{}, microdrop.Errorf(microdrop.EINVALID, "channel must be 1-64 lowercase letters, digits or _ (or empty for every channel)")
		}
		ch = *b.Channel
	}
	if b.Enabled != nil && !*b.Enabled {
		return Endpoint{}, microdrop.Errorf(microdrop.EINVALID, "a new endpoint is enabled; disable it after creating it")
	}
	end, err := h.outboxEnd(ctx)
	if err != nil {
		return Endpoint{}, err
	}
	e := Endpoint{ID: newID(), Channel: ch, URL: *b.URL, Secret: NewSecret(), Kinds: b.Kinds, Fulfilment: b.Fulfilment != nil && *b.Fulfilment,
		CreatedAt: h.worker.d.Now().UTC(), Cursor: end}
	if err := h.store.CreateEndpoint(ctx, e); err != nil {
		return Endpoint{}, err
	}
	return e, nil
}

// outboxEnd is the seq of the outbox's last event.
func (h *Handler) outboxEnd(ctx context.Context) (int64, error) {
	var end int64
	for range 10_000 {
		evs, err := h.outbox.OutboxAfter(ctx, end, 1000)
		if err != nil {
			return 0, err
		}
		if len(evs) == 0 {
			return end, nil
		}
		end = evs[len(evs)-1].Seq
	}
	return end, nil
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	var b EndpointBody
	if err := microdrop.DecodeJSON(w, r, &b); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	e, err := h.Create(r.Context(), b)
	if err != nil {
		microdrop.WriteError(w, err)
		return
	}
	// The only time the secret is shown.
	microdrop.WriteJSON(w, http.StatusCreated, e)
}

// Update changes an endpoint.
func (h *Handler) Update(ctx context.Context, id string, b EndpointBody) (Endpoint, error) {
	e, err := h.store.Endpoint(ctx, id)
	if err != nil {
		return Endpoint{}, err
	}
	if b.Channel != nil && *b.Channel != e.Channel {
		return Endpoint{}, microdrop.Errorf(microdrop.EINVALID, "an endpoint's channel cannot change; create another endpoint")
	}
	if b.URL != nil {
		if err := CheckURL(*b.URL); err != nil {
			return Endpoint{}, err
		}
		e.URL = *b.URL
	}
	if b.Kinds != nil {
		if err := CheckKinds(b.Kinds); err != nil {
			return Endpoint{}, err
		}
		e.Kinds = b.Kinds
	}
	if b.Fulfilment != nil {
		e.Fulfilment = *b.Fulfilment
	}
	now := h.worker.d.Now().UTC()
	if b.Enabled != nil {
		switch {
		case *b.Enabled:
			e.Disabled, e.DisabledReason, e.DisabledAt = false, "", time.Time{}
		case !e.Disabled:
			e.Disabled, e.DisabledReason, e.DisabledAt = true, "disabled by the admin", now
		}
	}
	if err := h.store.UpdateEndpoint(ctx, e, now); err != nil {
		return Endpoint{}, err
	}
	h.worker.Kick()
	return view(e), nil
}

func (h *Handler) update(w http.ResponseWriter, r *http.Request) {
	var b EndpointBody
	if err := microdrop.DecodeJSON(w, r, &b); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	e, err := h.Update(r.Context(), r.PathValue("id"), b)
	if err != nil {
		microdrop.WriteError(w, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, e)
}

func (h *Handler) remove(w http.ResponseWriter, r *http.Request) {
	if err := h.store.DeleteEndpoint(r.Context(), r.PathValue("id")); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// DeliveryLog is a delivery with its attempts.
type DeliveryLog struct {
	Delivery
	Log []Attempt `json:"attempts_log"`
}

// Log is an endpoint's latest deliveries, newest first, with their
// attempts.
func (h *Handler) Log(ctx context.Context, id string, limit int) ([]DeliveryLog, error) {
	if _, err := h.store.Endpoint(ctx, id); err != nil {
		return nil, err
	}
	ds, err := h.store.Deliveries(ctx, id, limit)
	if err != nil {
		return nil, err
	}
	out := make([]DeliveryLog, 0, len(ds))
	for _, d := range ds {
		as, err := h.store.Attempts(ctx, id, d.EventID)
		if err != nil {
			return nil, err
		}
		out = append(out, DeliveryLog{Delivery: d, Log: as})
	}
	return out, nil
}

func (h *Handler) deliveries(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "limit must be 1-500"))
			return
		}
		limit = n
	}
	out, err := h.Log(r.Context(), r.PathValue("id"), limit)
	if err != nil {
		microdrop.WriteError(w, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, map[string]any{"deliveries": out})
}

// Redeliver queues a delivery again, due now.
func (h *Handler) Redeliver(ctx context.Context, id, eventID string) (Delivery, error) {
	d, err := h.store.Redeliver(ctx, id, eventID, h.worker.d.Now())
	if err != nil {
		return Delivery{}, err
	}
	h.worker.Kick()
	return d, nil
}

func (h *Handler) redeliver(w http.ResponseWriter, r *http.Request) {
	d, err := h.Redeliver(r.Context(), r.PathValue("id"), r.PathValue("event"))
	if err != nil {
		microdrop.WriteError(w, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusAccepted, d)
}

// Endpoints lists endpoints without secrets, for the dashboard.
func (h *Handler) Endpoints(ctx context.Context) ([]Endpoint, error) {
	eps, err := h.store.Endpoints(ctx)
	for i := range eps {
		eps[i] = view(eps[i])
	}
	return eps, err
}
