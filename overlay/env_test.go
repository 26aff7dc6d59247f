package overlay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/chat/twitch/twitchtest"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
	"github.com/microdrop/microdrop/overlay"
	"github.com/microdrop/microdrop/overlay/viewer"
)

const (
	testChannel  = "streamer"
	testKey      = "overlay-key-0123456789"
	testAdminTok = "admin-token-0123456789abcdef"
)

// env is a claims service with a real SQLite ledger, the overlay server and
// the JSON API on one httptest server, as `microdrop serve` mounts them.
type env struct {
	t     *testing.T
	svc   *claims.Service
	bus   *microdrop.MemoryBus
	srv   *overlay.Server
	ts    *httptest.Server
	admin microdrop.Admin
}

func newEnv(t *testing.T) *env { t.Helper(); return newEnvWith(t, envHooks{}) }

// envHooks adjust an env's dependencies: the claims service's before it is
// built (a clock, a receipt signer), the overlay's with the service built
// (a card checkout needs it).
type envHooks struct {
	claims  func(*claims.Deps)
	overlay func(*claims.Service, *overlay.Deps)
	// viewers, when set, makes the sign-in the claim page and the API name
	// viewers by (local mode otherwise).
	viewers func(pub string, mux *http.ServeMux) *viewer.Auth
}

// newSignedInEnv is newEnv with viewer sign-in through a test Twitch, whose
// viewer1 (id 555) and viewer2 (id 666) can sign in on the claim page.
func newSignedInEnv(t *testing.T) *env {
	t.Helper()
	tw := twitchtest.New(t, twitchtest.Options{})
	tw.AddOIDCUser(twitchtest.OIDCUser{ID: "555", Login: "viewer1", DisplayName: "Viewer1", CreatedAt: time.Date(2016, 3, 1, 0, 0, 0, 0, time.UTC)})
	tw.AddOIDCUser(twitchtest.OIDCUser{ID: "666", Login: "viewer2", DisplayName: "Viewer2", CreatedAt: time.Date(2018, 5, 1, 0, 0, 0, 0, time.UTC)})
	return newEnvWith(t, envHooks{viewers: func(pub string, mux *http.ServeMux) *viewer.Auth {
		p := viewer.Twitch(tw.AuthURL(), tw.Options().ClientID, tw.ClientSecret())
		p.HelixURL = tw.APIURL()
		a, err := viewer.New(viewer.Deps{Providers: []viewer.Provider{p}, PublicURL: pub, Sessions: microdrop.NewSessions(time.Now)})
		if err != nil {
			t.Fatal(err)
		}
		a.Routes(mux)
		tw.RegisterRedirect(a.RedirectURI("twitch"))
		return a
	}})
}

// newEnvWith builds the env with its hooks.
func newEnvWith(t *testing.T, hooks envHooks) *env {
	t.Helper()
	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)

	ledger := sqlite.MustOpen(t)
	bus := microdrop.NewMemoryBus()
	signer, err := claims.NewTokenSigner([]byte("0123456789abcdef0123"))
	if err != nil {
		t.Fatal(err)
	}
	grace := 2 * time.Second
	reg := prometheus.NewRegistry()
	cd := claims.Deps{Ledger: ledger, Bus: bus, Signer: signer, Metrics: claims.NewMetrics(reg),
		Options: claims.Options{DefaultGrace: grace, DefaultPolicy: claims.FCFS, ClaimRate: 1000, ClaimBurst: 1000}}
	if hooks.claims != nil {
		hooks.claims(&cd)
	}
	svc, err := claims.New(cd)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	admin := microdrop.NewAdmin(testAdminTok, false, nil)
	var auth *viewer.Auth
	if hooks.viewers != nil {
		auth = hooks.viewers(ts.URL, mux)
	}
	od := overlay.Deps{Viewers: auth, Ledger: ledger}
	if hooks.overlay != nil {
		hooks.overlay(svc, &od)
	}
	od.Claims, od.Bus, od.Admin, od.PublicURL = svc, bus, admin, ts.URL
	od.Keys, od.Ledger, od.DefaultGrace, od.Gatherer = map[string]string{testChannel: testKey}, ledger, grace, reg
	srv, err := overlay.New(od)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(ctx, bus)
	t.Cleanup(func() { _ = srv.Close() })
	for _, p := range overlay.Routes() {
		mux.Handle(p, srv.Handler())
	}
	api := claims.NewHandler(svc, admin, ts.URL, nil)
	if auth != nil {
		api.SetIdentity(auth)
	}
	mux.Handle("/api/", api)
	return &env{t: t, svc: svc, bus: bus, srv: srv, ts: ts, admin: admin}
}

// openDrop opens a drop through the JSON API, as a script or chat would.
func (e *env) openDrop(body string) claims.DropResponse {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/api/drops", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAdminTok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		e.t.Fatalf("open drop: %s: %s", resp.Status, b)
	}
	var dr claims.DropResponse
	if err := json.Unmarshal(b, &dr); err != nil {
		e.t.Fatal(err)
	}
	return dr
}

func (e *env) claim(dropID, user, code string) claims.ClaimResult {
	e.t.Helper()
	res, err := e.svc.Claim(context.Background(), claims.ClaimRequest{DropID: dropID, Code: code, Viewer: claims.Viewer{UserID: user, Login: user}})
	if err != nil {
		e.t.Fatalf("claim by %s: %v", user, err)
	}
	return res
}

func (e *env) wsURL(channel, key string) string {
	return "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/ws/overlay/" + channel + "?key=" + key
}

func (e *env) dial(header http.Header) *websocket.Conn {
	e.t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(e.wsURL(testChannel, testKey), header)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		e.t.Fatalf("dial overlay: %v %s", err, status)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// next reads frames until one matches; frames of other types are skipped.
func next(t *testing.T, c *websocket.Conn, match func(overlay.Frame) bool) overlay.Frame {
	t.Helper()
	for {
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for a frame: %v", err)
		}
		var f overlay.Frame
		if err := json.NewDecoder(bytes.NewReader(data)).Decode(&f); err != nil {
			t.Fatal(err)
		}
		if match(f) {
			return f
		}
	}
}

func claimReq(dropID, user string) claims.ClaimRequest {
	return claims.ClaimRequest{DropID: dropID, Viewer: claims.Viewer{UserID: user, Login: user}}
}
