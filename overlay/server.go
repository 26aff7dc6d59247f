package overlay

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/a-h/templ"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/webhook"
	"github.com/microdrop/microdrop/overlay/viewer"
	"github.com/microdrop/microdrop/templates"
)

//go:embed assets
var assetFS embed.FS

// Deps is what the overlay server needs from its caller.
type Deps struct {
	Claims *claims.Service
	Bus    microdrop.Bus
	Admin  microdrop.Admin
	Logger *slog.Logger
	// Now is the server clock the overlays' countdowns follow.
	Now func() time.Time
	// PublicURL is where viewers and OBS reach this service, e.g.
	// "http://localhost:8080": claim links and overlay URLs start with it.
	PublicURL string
	// Keys maps each channel to its read-only overlay key (at least 12
	// characters). Only these channels have overlays.
	Keys map[string]string
	// Ledger, when set, rebuilds an overlay's recent winners after a restart.
	Ledger claims.Ledger
	// Gatherer, when set, gives the dashboard the decision-latency histogram
	// (microdrop_claim_decision_seconds).
	Gatherer prometheus.Gatherer
	// DefaultGrace is the configured latency budget, shown on the dashboard.
	DefaultGrace time.Duration
	// CueProfile is the cue overlays play unless their URL says otherwise:
	// audible (default) or ultrasonic.
	CueProfile string
	// Streams, when set, lists the published media streams for the
	// dashboard (the media path owns them; the overlay only shows them).
	Streams func() []templates.DashboardStream
	// Alerts, when set, lists problems for a banner on the dashboard.
	Alerts func() []templates.DashboardAlert
	// PublishRTSP and PublishWHIP are where to publish the programme, for
	// the dashboard's hint (PublishRTSP empty: RTSP is off).
	PublishRTSP, PublishWHIP string
	// AllowedOrigins are extra origins (scheme://host[:port]) whose pages may
	// open the overlay WebSocket; the service's own origin always may.
	AllowedOrigins []string
	Hub            HubOptions
	// Viewers signs viewers in on the claim page and names them; local mode
	// (identity per browser) when nil.
	Viewers *viewer.Auth
	// Cards, when set, opens card checkouts for the claim page's "Pay by
	// card" (claims/stripe); without it the page offers no card payment.
	Cards claims.CardCheckout
	// Payouts, when set, shows creators' balances on the dashboard and
	// their statements at /dashboard/creators/{id}/statement.
	Payouts *claims.Payouts
	// Webhooks, when set, shows the webhook endpoints on the dashboard
	// with their delivery log, a redeliver and a re-enable action, and a
	// notice per disabled endpoint.
	Webhooks *webhook.Handler
}

// Server serves the overlay, its WebSocket hub, the dashboard, the claim
// page and the pickup desk.
type Server struct {
	claims    *claims.Service
	admin     microdrop.Admin
	log       *slog.Logger
	now       func() time.Time
	publicURL string
	keys      map[string]string
	channels  []string
	grace     time.Duration
	streams   func() []templates.DashboardStream
	alerts    func() []templates.DashboardAlert
	publish   [2]string // RTSP and WHIP URL for the dashboard's hint
	profile   string
	origins   []string
	hub       *Hub
	viewers   *viewer.Auth
	cards     claims.CardCheckout
	payouts   *claims.Payouts
	webhooks  *webhook.Handler
	stats     *statsSampler
	feed      *feed
	mux       *http.ServeMux
	assets    http.Handler

	startOnce sync.Once
	closeOnce sync.Once
	cancel    context.CancelFunc
}

// Routes are the path prefixes the server answers; mount Handler on each.
var routes = []string{"/overlay/", "/ws/overlay/", "/dashboard", "/dashboard/", "/c/", "/redeem", "/receipt"}

// Routes returns the path prefixes to mount Handler on.
func Routes() []string { return slices.Clone(routes) }

// MinKeyLength is the shortest overlay key accepted.
const MinKeyLength = 12

// New checks deps and builds the server; Start begins serving events.
func New(d Deps) (*Server, error) {
	if d.Claims == nil || d.Bus == nil {
		return nil, errors.New("overlay: claims service and bus are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.CueProfile == "" {
		d.CueProfile = "audible"
	}
	if d.CueProfile != "audible" && d.CueProfile != "ultrasonic" {
		return nil, fmt.Errorf("overlay: cue profile %q must be audible or ultrasonic", d.CueProfile)
	}
	pub := strings.TrimRight(d.PublicURL, "/")
	if _, err := url.Parse(pub); err != nil || !(strings.HasPrefix(pub, "http://") || strings.HasPrefix(pub, "https://")) {
		return nil, fmt.Errorf("overlay: public URL %q must start with http:// or https://", d.PublicURL)
	}
	keys := make(map[string]string, len(d.Keys))
	for ch, k := range d.Keys {
		if claims.NormalizeChannel(ch) != ch || ch == "" {
			return nil, fmt.Errorf("overlay: channel %q must be a lowercase channel login", ch)
		}
		if len(k) < MinKeyLength {
			return nil, fmt.Errorf("overlay: the key of channel %s is shorter than %d characters", ch, MinKeyLength)
		}
		keys[ch] = k
	}
	channels := make([]string, 0, len(keys))
	for ch := range keys {
		channels = append(channels, ch)
	}
	slices.Sort(channels)
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, err
	}
	log := d.Logger.With("component", "overlay")
	if d.Viewers == nil {
		if d.Viewers, err = viewer.New(viewer.Deps{PublicURL: pub, Sessions: microdrop.NewSessions(d.Now), Logger: d.Logger, Now: d.Now}); err != nil {
			return nil, err
		}
	}
	var entries entrySource
	if d.Ledger != nil {
		entries = d.Ledger
	}
	s := &Server{
		claims: d.Claims, admin: d.Admin, log: log, now: d.Now, publicURL: pub,
		keys: keys, channels: channels, grace: d.DefaultGrace, streams: d.Streams, alerts: d.Alerts, publish: [2]string{d.PublishRTSP, d.PublishWHIP}, profile: d.CueProfile,
		origins: d.AllowedOrigins, viewers: d.Viewers, cards: d.Cards, payouts: d.Payouts, webhooks: d.Webhooks,
		hub:    newHub(d.Claims, entries, channels, pub, log, d.Now, d.Hub),
		stats:  newStatsSampler(d.Claims.Metrics(), d.Gatherer, d.Now),
		feed:   newFeed(50),
		mux:    http.NewServeMux(),
		assets: http.StripPrefix("/overlay/assets/", http.FileServerFS(sub)),
	}
	s.routes()
	return s, nil
}

// Start subscribes to the bus and starts the hub and the dashboard's
// sampler. ctx bounds the initial state load.
func (s *Server) Start(ctx context.Context, bus microdrop.Bus) {
	s.startOnce.Do(func() {
		bg, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.hub.start(ctx, bus)
		// Claims and redemptions may be shed from the feed in a burst.
		feedSub := bus.Subscribe(4096, microdrop.Claimed, microdrop.Redeemed, microdrop.DropOpened, microdrop.SoldOut, microdrop.DropClosed, microdrop.DropExtended)
		go s.feed.run(bg, feedSub)
		go s.stats.run(bg)
	})
}

// Close disconnects every overlay and stops the hub.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.hub.stop()
	})
	return nil
}

// Handler serves every route in Routes.
func (s *Server) Handler() http.Handler { return s.mux }

// Hub returns the WebSocket hub (for stats).
func (s *Server) Hub() *Hub { return s.hub }

// OverlayURL is the browser-source URL of channel, key included.
func (s *Server) OverlayURL(channel string) string {
	return s.publicURL + "/overlay/" + url.PathEscape(channel) + "?key=" + url.QueryEscape(s.keys[channel])
}

// Channels lists the channels that have an overlay.
func (s *Server) Channels() []string { return slices.Clone(s.channels) }

func (s *Server) routes() {
	s.mux.Handle("GET /overlay/assets/", s.assets)
	s.mux.HandleFunc("GET /overlay/{channel}", s.overlayPage)
	s.mux.HandleFunc("GET /ws/overlay/{channel}", s.overlayWS)
	s.mux.HandleFunc("GET /dashboard", s.dashboard)
	s.mux.HandleFunc("GET /dashboard/live.json", s.adminGET(s.dashboardLive))
	s.mux.HandleFunc("GET /dashboard/creators/{id}/statement", s.adminGET(s.statement))
	s.mux.HandleFunc("POST /dashboard/login", s.login)
	s.mux.HandleFunc("POST /dashboard/logout", s.adminForm(s.logout))
	s.mux.HandleFunc("POST /dashboard/drops", s.adminForm(s.openDrop))
	s.mux.HandleFunc("POST /dashboard/drops/{id}/close", s.adminForm(s.closeDrop))
	s.mux.HandleFunc("POST /dashboard/drops/{id}/extend", s.adminForm(s.extendDrop))
	s.mux.HandleFunc("POST /dashboard/webhooks/{id}/enable", s.adminForm(s.enableEndpoint))
	s.mux.HandleFunc("POST /dashboard/webhooks/{id}/deliveries/{event}/redeliver", s.adminForm(s.redeliver))
	s.mux.HandleFunc("GET /c/{id}", s.claimPage)
	s.mux.HandleFunc("POST /c/{id}", s.claimSubmit)
	s.mux.HandleFunc("POST /c/{id}/holds/{hold}/pay", s.holdPay)
	s.mux.HandleFunc("POST /c/{id}/holds/{hold}/release", s.holdRelease)
	s.mux.HandleFunc("POST /c/{id}/holds/{hold}/address", s.holdAddress)
	s.mux.HandleFunc("GET /c/{id}/holds/{hold}/receipt.svg", s.holdReceiptQR)
	s.mux.HandleFunc("GET /receipt", s.receiptPage)
	s.mux.HandleFunc("GET /redeem", s.redeemPage)
	s.mux.HandleFunc("POST /redeem", s.adminForm(s.redeemSubmit))
	for _, p := range routes {
		s.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			httpError(w, http.StatusNotFound, "no such page: "+r.Method+" "+r.URL.Path)
		})
	}
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}

func render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = c.Render(r.Context(), w)
}

// checkKey finds the channel and compares its key in constant time.
func (s *Server) checkKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	ch := r.PathValue("channel")
	want, ok := s.keys[ch]
	if !ok {
		httpError(w, http.StatusNotFound, "no overlay for channel "+strconv.Quote(ch)+"; channels get one in the config or at first start")
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("key")), []byte(want)) != 1 {
		httpError(w, http.StatusForbidden, "wrong or missing overlay key: copy the overlay URL from the dashboard")
		return "", false
	}
	return ch, true
}

// parseLayout reads the overlay's layout options; a bad value is an error,
// not a silent default.
func (s *Server) parseLayout(q url.Values) (templates.OverlayView, error) {
	v := templates.OverlayView{Corner: "br", Scale: "1", Theme: "dark", Volume: "0.1", Cue: s.profile}
	if c := q.Get("corner"); c != "" {
		if c != "tl" && c != "tr" && c != "bl" && c != "br" {
			return v, fmt.Errorf("corner must be tl, tr, bl or br, not %q", c)
		}
		v.Corner = c
	}
	if sc := q.Get("scale"); sc != "" {
		f, err := strconv.ParseFloat(sc, 64)
		if err != nil || f < 0.5 || f > 2 {
			return v, fmt.Errorf("scale must be a number from 0.5 to 2, not %q", sc)
		}
		v.Scale = strconv.FormatFloat(f, 'f', -1, 64)
	}
	if t := q.Get("theme"); t != "" {
		if t != "dark" && t != "light" && t != "brand" {
			return v, fmt.Errorf("theme must be dark, light or brand, not %q", t)
		}
		v.Theme = t
	}
	if vol := q.Get("volume"); vol != "" {
		f, err := strconv.ParseFloat(vol, 64)
		if err != nil || f < 0 || f > 1 {
			return v, fmt.Errorf("volume must be a number from 0 to 1 (0.1 is -20 dB), not %q", vol)
		}
		v.Volume = strconv.FormatFloat(f, 'f', -1, 64)
	}
	if c := q.Get("cue"); c != "" {
		if c != "audible" && c != "ultrasonic" && c != "off" {
			return v, fmt.Errorf("cue must be audible, ultrasonic or off, not %q", c)
		}
		v.Cue = c
	}
	if d := q.Get("demo"); d != "" {
		v.Demo = d == "1"
	}
	return v, nil
}

func (s *Server) overlayPage(w http.ResponseWriter, r *http.Request) {
	ch, ok := s.checkKey(w, r)
	if !ok {
		return
	}
	v, err := s.parseLayout(r.URL.Query())
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	v.Channel, v.Key = ch, r.URL.Query().Get("key")
	render(w, r, http.StatusOK, templates.Overlay(v))
}

// originAllowed accepts no Origin (OBS and non-browser clients; the key is
// the check that matters), our own host, the public URL, and the
// configured extra origins.
func (s *Server) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) || strings.EqualFold(o, s.publicURL) {
		return true
	}
	for _, a := range s.origins {
		if strings.EqualFold(strings.TrimRight(a, "/"), o) {
			return true
		}
	}
	return false
}

func (s *Server) overlayWS(w http.ResponseWriter, r *http.Request) {
	ch, ok := s.checkKey(w, r)
	if !ok {
		return
	}
	if !s.originAllowed(r) {
		httpError(w, http.StatusForbidden, "this origin may not open the overlay feed")
		return
	}
	if !s.hub.admit() {
		httpError(w, http.StatusServiceUnavailable, errTooManyClients.Error())
		return
	}
	conn, err := s.hub.upgrade(w, r, func(*http.Request) bool { return true })
	if err != nil {
		s.hub.clients.Add(-1)
		return // the upgrader has answered
	}
	s.hub.serve(conn, s.hub.topics[ch])
}
