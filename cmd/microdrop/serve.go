package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/chat/twitch"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/stripe"
	"github.com/microdrop/microdrop/claims/webhook"
	"github.com/microdrop/microdrop/ingest"
	"github.com/microdrop/microdrop/ingest/highlight"
	"github.com/microdrop/microdrop/overlay/viewer"
	"github.com/microdrop/microdrop/templates"
)

// Main is the running service: config in, everything wired, one HTTP mux.
// End-to-end tests start the same Main on port 0.
type Main struct {
	Config Config
	Logger *slog.Logger
	Stdout io.Writer
	Stderr io.Writer
	// Now is the clock for every component (tests may replace it).
	Now func() time.Time

	Bus      microdrop.Bus
	Ledger   claims.Ledger
	Claims   *claims.Service
	Admin    microdrop.Admin
	Registry *prometheus.Registry
	Mux      *http.ServeMux
	Ingest   *ingest.Server
	// Viewers is viewer sign-in and identity (serve_viewer.go).
	Viewers *viewer.Auth
	// Payouts runs creator payouts on schedule (payouts.go); PayoutTick
	// is how often its scheduler looks at the clock (a minute when zero).
	Payouts    *claims.Payouts
	PayoutTick time.Duration

	// HTTPAddr is the address actually listened on (after Run).
	HTTPAddr string

	server *http.Server
	api    *claims.Handler
	cards  claims.CardCheckout // nil: card payments are off
	// webhooks is the webhook endpoint API, nil when the ledger keeps no
	// outbox.
	webhooks *webhook.Handler
	closers  []namedCloser
	clips    highlight.ClipMaker           // the Twitch client when its token has clips:edit: set by startChat, used by startHighlights
	twitch   atomic.Pointer[twitch.Client] // set by startChat when Twitch is on; read by /healthz and the dashboard
	// highlights is the highlight store, set by startHighlights (after
	// chat starts): Twitch clips made for !clip are recorded in it.
	highlights atomic.Pointer[highlight.SQLite]
}

type namedCloser struct {
	name string
	fn   func() error
}

// NewMain returns a Main with default config.
func NewMain(stdout, stderr io.Writer) *Main {
	return &Main{Config: DefaultConfig(), Stdout: stdout, Stderr: stderr, Now: time.Now}
}

// ParseFlags reads the config file (if any), the environment, then flags.
func (m *Main) ParseFlags(args []string, lookup func(string) (string, bool)) error {
	fs := flag.NewFlagSet("microdrop serve", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	configPath := fs.String("config", "", "YAML config file (see microdrop.example.yml); also MICRODROP_CONFIG")
	data := fs.String("data", "", "data directory (SQLite ledger, keys, highlights); also MICRODROP_DATA")
	httpAddr := fs.String("http", "", "HTTP listen address; also MICRODROP_HTTP")
	rtsp := fs.String("rtsp", "", "RTSP listen address, \"off\" to disable; also MICRODROP_RTSP")
	rtp := fs.String("rtp", "", "UDP address for RTSP's RTP packets (default :8000), \"off\" for TCP-only RTSP; also MICRODROP_UDP_RTP")
	rtcp := fs.String("rtcp", "", "UDP address for RTSP's RTCP packets (default :8001), \"off\" with --rtp off; also MICRODROP_UDP_RTCP")
	ledger := fs.String("ledger", "", "ledger: empty for SQLite in the data dir, or postgres://...; also MICRODROP_LEDGER")
	bus := fs.String("bus", "", "event bus: empty for in-process, or nats://...; also MICRODROP_BUS")
	publicURL := fs.String("public-url", "", "URL viewers use to reach this service (claim links); also MICRODROP_PUBLIC_URL")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	path := *configPath
	if path == "" {
		path, _ = lookup("MICRODROP_CONFIG")
	}
	if path != "" {
		if err := m.Config.LoadFile(path); err != nil {
			return err
		}
	}
	if err := m.Config.LoadEnv(lookup); err != nil {
		return err
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&m.Config.Data, *data)
	set(&m.Config.HTTP, *httpAddr)
	set(&m.Config.Ledger, *ledger)
	set(&m.Config.Bus, *bus)
	set(&m.Config.PublicURL, *publicURL)
	set(&m.Config.LogLevel, *logLevel)
	if *rtsp == "off" {
		m.Config.Ingest.RTSP, m.Config.Ingest.UDPRTP, m.Config.Ingest.UDPRTCP = "", "", ""
	} else {
		set(&m.Config.Ingest.RTSP, *rtsp)
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{{&m.Config.Ingest.UDPRTP, *rtp}, {&m.Config.Ingest.UDPRTCP, *rtcp}} {
		if f.v == "off" {
			*f.dst = ""
		} else {
			set(f.dst, f.v)
		}
	}
	return m.Config.Validate()
}

// Run opens the ledger and bus, starts every component and listens. It
// returns once the service is serving.
func (m *Main) Run(ctx context.Context) error {
	if m.Logger == nil {
		var lvl slog.Level
		_ = lvl.UnmarshalText([]byte(m.Config.LogLevel))
		m.Logger = slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: lvl}))
	}
	if m.Now == nil {
		m.Now = time.Now
	}
	log := m.Logger.With("component", "main")
	if err := os.MkdirAll(m.Config.Data, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := m.loadSecrets(); err != nil {
		return err
	}

	m.Registry = prometheus.NewRegistry()
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	bus, fwd, closeBus, err := m.openBus(ctx)
	if err != nil {
		return err
	}
	m.Bus = bus
	m.onClose("bus", closeBus)
	m.registerBusMetrics()

	receipts, err := m.receiptSigner()
	if err != nil {
		return err
	}
	ledger, leases, err := m.openLedger(ctx, receipts.HolderID)
	if err != nil {
		return err
	}
	m.Ledger = ledger
	m.onClose("ledger", ledger.Close)

	keys := make([][]byte, 0, len(m.Config.Claims.TokenKeys))
	for _, k := range m.Config.Claims.TokenKeys {
		keys = append(keys, []byte(k))
	}
	signer, err := claims.NewTokenSigner(keys...)
	if err != nil {
		return err
	}
	budget, err := m.Config.Claims.Budget.Options()
	if err != nil {
		return err
	}
	if m.Config.Payments.Stripe.SecretKey == "" {
		log.Info("card payments are off: set payments.stripe.secret_key (and payments.stripe.webhook_secret) to take cards; drops can still take wallet payments")
	}
	svc, err := claims.New(claims.Deps{
		Ledger: ledger, Bus: bus, Signer: signer, Receipts: receipts, Logger: m.Logger, Now: m.Now,
		Metrics:   claims.NewMetrics(m.Registry),
		Placement: placement(leases, fwd),
		Options: claims.Options{
			DefaultGrace:       time.Duration(m.Config.Claims.Grace),
			DefaultBucketWidth: time.Duration(m.Config.Claims.BucketWidth),
			DefaultPolicy:      claims.Policy(m.Config.Claims.Policy),
			TokenTTL:           time.Duration(m.Config.Claims.TokenTTL),
			ClaimRate:          m.Config.Claims.ClaimRate,
			ClaimBurst:         m.Config.Claims.ClaimBurst,
			CommitTimeout:      time.Duration(m.Config.Claims.CommitTimeout),
			Budget:             budget,
			FeeBasisPoints:     m.Config.Payments.FeeBasisPoints,
			Fees:               m.Config.Fees(),
		},
	})
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	m.Claims = svc
	// Every cue heard on air (relay, platform playback) sizes the window
	// of the channel's next drop.
	svc.LearnCueDelays(ctx, bus)
	if m.Config.Claims.GraceFromCue {
		// The measured cue-to-air delay, plus a second to react, becomes the
		// drop's grace when it is longer.
		svc.FollowCueDelays(ctx, bus, time.Second)
	}
	// Deciders finish their pending group commit before the ledger closes.
	m.onClose("claims", svc.Close)

	// Listen first: claim links derive from the address actually bound.
	ln, err := net.Listen("tcp", m.Config.HTTP)
	if err != nil {
		return fmt.Errorf("http listen on %s: %w", m.Config.HTTP, err)
	}
	m.HTTPAddr = ln.Addr().String()

	m.Mux = http.NewServeMux()
	m.api = claims.NewHandler(svc, m.Admin, m.publicURL(), m.Logger)
	if sc := m.Config.Payments.Stripe; sc.SecretKey != "" {
		cards, err := stripe.New(svc, stripe.Config{SecretKey: sc.SecretKey, WebhookSecret: sc.WebhookSecret, APIBase: sc.APIBase,
			PublicURL: m.publicURL(), Logger: m.Logger})
		if err != nil {
			_ = ln.Close()
			return err
		}
		m.api.WithCards(cards)
		m.cards = cards
		svc.RefundCardsWith(cards) // refunds of card payments go back through Stripe
		// Stripe calls this; the signature, not the admin token, vouches.
		m.Mux.Handle("POST /webhooks/stripe", cards)
		log.Info("card payments are on (Stripe Checkout); point a Stripe webhook at /webhooks/stripe", "events",
			"checkout.session.completed, checkout.session.async_payment_succeeded, checkout.session.async_payment_failed, checkout.session.expired")
	}
	if err := m.startPayouts(svc); err != nil {
		_ = ln.Close()
		return err
	}
	m.Mux.Handle("/api/", m.api)
	if err := m.startWebhooks(ctx); err != nil {
		_ = ln.Close()
		return err
	}
	m.startRelay()
	m.Mux.Handle("GET /.well-known/microdrop-receipt-keys", m.api.ReceiptKeysHandler())
	m.Mux.HandleFunc("GET /healthz", m.healthz)
	m.Mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	// Profiles for the admin only: they reveal internals and cost CPU.
	m.Mux.Handle("/debug/pprof/", m.adminOnly(http.HandlerFunc(pprof.Index)))
	m.Mux.Handle("/debug/pprof/profile", m.adminOnly(http.HandlerFunc(pprof.Profile)))

	for _, c := range []struct {
		name  string
		start func(context.Context) error
	}{
		{"ingest", m.startIngest},
		{"viewers", m.startViewers},
		{"chat", m.startChat},
		{"overlay", m.startOverlay},
		{"highlights", m.startHighlights},
	} {
		if err := c.start(ctx); err != nil {
			_ = ln.Close()
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}

	lim := newConnCap(ln, m.Config.Front.MaxConnsPerIP, fdBudget(fdLimit()), newClientIPs(m.Config.Front.TrustedProxies))
	m.server = &http.Server{Handler: newFront(m.Mux, m.Admin, m.Config.Front, m.Now),
		ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout, IdleTimeout: idleTimeout,
		ConnState: lim.connState, MaxHeaderBytes: 64 << 10}
	go func() {
		if err := m.server.Serve(lim); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("serving", "http", m.HTTPAddr, "data", m.Config.Data, "public_url", m.publicURL())
	return nil
}

// publicURL is where viewers reach us; derived from the listen address when
// not configured.
func (m *Main) publicURL() string {
	addr := m.HTTPAddr
	if addr == "" {
		addr = m.Config.HTTP
	}
	return publicURLFor(m.Config.PublicURL, addr)
}

// publicURLFor is the configured public URL, else the HTTP listen address
// as seen from this machine.
func publicURLFor(configured, addr string) string {
	if configured != "" {
		return strings.TrimRight(configured, "/")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://localhost:8080"
	}
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func (m *Main) adminOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.Admin.Check(r); err != nil {
			microdrop.WriteError(w, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (m *Main) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := m.Ledger.Drops(ctx, claims.DropFilter{Limit: 1}); err != nil {
		http.Error(w, "ledger unavailable", http.StatusServiceUnavailable)
		return
	}
	// The ledger may answer reads while failing the deciders' commits.
	if err := m.Claims.Health(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	// A broken Twitch link degrades health but keeps the replica in
	// service (200): claims, overlays and local chat still work.
	if tc := m.twitch.Load(); tc != nil {
		if h := tc.Health(); !h.OK {
			_, _ = fmt.Fprintf(w, "degraded\ntwitch: %s\nfix: %s\n", h.Reason, h.Fix)
			return
		}
	}
	_, _ = io.WriteString(w, "ok\n")
}

// alerts are the problems the dashboard shows in a banner.
func (m *Main) alerts() []templates.DashboardAlert {
	tc := m.twitch.Load()
	if tc == nil {
		return nil
	}
	if h := tc.Health(); !h.OK {
		return []templates.DashboardAlert{{What: "Twitch chat is not working: " + h.Reason + ".", Fix: "To fix it: " + h.Fix + "."}}
	}
	return nil
}

func (m *Main) onClose(name string, fn func() error) {
	m.closers = append(m.closers, namedCloser{name, fn})
}

// Close stops serving, then closes components in reverse order of start:
// the claims deciders finish their pending commits before the ledger closes.
func (m *Main) Close() error {
	var errs []error
	if m.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := m.server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
		cancel()
	}
	for i := len(m.closers) - 1; i >= 0; i-- {
		if err := m.closers[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.closers[i].name, err))
		}
	}
	m.closers = nil
	return errors.Join(errs...)
}

// loadSecrets reads or creates the admin token and the pickup token key in
// the data dir, printing a new admin token once.
func (m *Main) loadSecrets() error {
	if m.Config.AdminToken == "" {
		tok, created, err := readOrCreateSecret(filepath.Join(m.Config.Data, "admin-token"))
		if err != nil {
			return err
		}
		m.Config.AdminToken = tok
		if created {
			fmt.Fprintf(m.Stderr, "\nmicrodrop: generated admin token (stored in %s; shown once):\n\n    %s\n\n",
				filepath.Join(m.Config.Data, "admin-token"), tok)
		}
	}
	m.Admin = microdrop.NewAdmin(m.Config.AdminToken, strings.HasPrefix(m.Config.PublicURL, "https://"), m.Now)
	if len(m.Config.Claims.TokenKeys) == 0 {
		key, _, err := readOrCreateSecret(filepath.Join(m.Config.Data, "token-key"))
		if err != nil {
			return err
		}
		m.Config.Claims.TokenKeys = []string{key}
	}
	if len(m.Config.Payments.ReceiptKeys) == 0 {
		key, _, err := readOrCreateSecret(filepath.Join(m.Config.Data, "receipt-key"))
		if err != nil {
			return err
		}
		m.Config.Payments.ReceiptKeys = []string{key}
	}
	if m.Config.Payments.HolderSecret == "" {
		s, _, err := readOrCreateSecret(filepath.Join(m.Config.Data, "receipt-holder-secret"))
		if err != nil {
			return err
		}
		m.Config.Payments.HolderSecret = s
	}
	return nil
}

// receiptSigner makes the receipt keys from the configured secrets.
func (m *Main) receiptSigner() (*claims.ReceiptSigner, error) {
	seeds := make([][]byte, 0, len(m.Config.Payments.ReceiptKeys))
	for _, k := range m.Config.Payments.ReceiptKeys {
		if len(k) < 16 {
			return nil, errors.New("payments.receipt_keys: each key is a secret of at least 16 characters")
		}
		seed := sha256.Sum256([]byte(k))
		seeds = append(seeds, seed[:])
	}
	return claims.NewReceiptSigner([]byte(m.Config.Payments.HolderSecret), seeds...)
}

func readOrCreateSecret(path string) (string, bool, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 16 {
			return "", false, fmt.Errorf("%s holds a secret shorter than 16 characters; delete it to make a new one", path)
		}
		return s, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", false, err
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", false, err
	}
	s := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("store secret: %w", err)
	}
	return s, true, nil
}
