package local

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/chat"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

const adminToken = "admin-token-0123456789"

func newRoom(tb testing.TB, policy claims.Policy) (*httptest.Server, *claims.Service, *Chat) {
	tb.Helper()
	bus := microdrop.NewMemoryBus()
	signer, _ := claims.NewTokenSigner([]byte("0123456789abcdef0123"))
	svc, err := claims.New(claims.Deps{Ledger: sqlite.MustOpen(tb), Bus: bus, Signer: signer,
		Options: claims.Options{DefaultPolicy: policy, ClaimRate: 1e6, ClaimBurst: 1e6}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = svc.Close() })
	router, err := chat.NewRouter(chat.Deps{Claims: svc, Bus: bus, UserRate: 1e6, UserBurst: 1e6})
	if err != nil {
		tb.Fatal(err)
	}
	room, err := New(Config{Router: router, Admin: microdrop.NewAdmin(adminToken, false, nil)})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	room.Routes(mux)
	srv := httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); room.Run(ctx) }()
	tb.Cleanup(func() { srv.Close(); cancel(); <-done })
	return srv, svc, room
}

func post(t *testing.T, srv *httptest.Server, path string, admin bool, body any) (int, []byte) {
	t.Helper()
	return postAs(t, http.DefaultClient, srv, path, admin, body)
}

// browser is a client that opened the chat page: its cookie jar holds the
// device identity the room binds it to.
func browser(t *testing.T, srv *httptest.Server) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(srv.URL + "/chat")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return c
}

func deviceID(t *testing.T, srv *httptest.Server, c *http.Client) string {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == microdrop.DeviceCookie {
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(ck)
			d, _ := microdrop.DeviceOf(r)
			return d.UserID
		}
	}
	t.Fatal("no device cookie")
	return ""
}

func postAs(t *testing.T, c *http.Client, srv *httptest.Server, path string, admin bool, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if admin {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

type sock struct {
	t      *testing.T
	ws     *websocket.Conn
	userID string
	web    *http.Client
}

// dial opens a socket from a fresh browser (its own device identity).
func dial(t *testing.T, srv *httptest.Server, login string) *sock {
	t.Helper()
	c := browser(t, srv)
	ws, code, err := dialAs(srv, c, url.Values{"channel": {"local"}, "login": {login}})
	if err != nil {
		t.Fatalf("dial: %d %v", code, err)
	}
	t.Cleanup(func() { ws.Close() })
	return &sock{t: t, ws: ws, userID: deviceID(t, srv, c), web: c}
}

func dialAs(srv *httptest.Server, c *http.Client, q url.Values) (*websocket.Conn, int, error) {
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/chat?" + q.Encode()
	d := websocket.Dialer{Jar: c.Jar}
	ws, resp, err := d.Dial(u, nil)
	code := 0
	if resp != nil {
		code = resp.StatusCode
		resp.Body.Close()
	}
	return ws, code, err
}

func (s *sock) say(text string) {
	s.t.Helper()
	if err := s.ws.WriteJSON(frame{Text: text}); err != nil {
		s.t.Fatal(err)
	}
}

// expect reads frames until one of the type contains want.
func (s *sock) expect(typ, want string) frame {
	s.t.Helper()
	_ = s.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var seen []string
	for i := 0; i < 200; i++ {
		var f frame
		if err := s.ws.ReadJSON(&f); err != nil {
			s.t.Fatalf("waiting for %s %q: %v; saw %q", typ, want, err, seen)
		}
		if f.Type == typ && strings.Contains(f.Text, want) {
			return f
		}
		seen = append(seen, f.Type+": "+f.Text)
	}
	s.t.Fatalf("no %s %q in 200 frames: %q", typ, want, seen)
	return frame{}
}

// TestLocalChatEndToEnd drives the room over its WebSocket and its HTTP
// API: a granted moderator opens a drop, viewers claim over the socket and
// by POST, winners get their code privately, the room sees the replies.
func TestLocalChatEndToEnd(t *testing.T) {
	srv, svc, _ := newRoom(t, claims.Bucketed)

	mod := dial(t, srv, "Mod1")
	if code, _ := post(t, srv, "/api/chat/roles", false, GrantRequest{UserID: mod.userID, Role: "moderator"}); code != http.StatusUnauthorized {
		t.Fatalf("grant without admin: %d", code)
	}
	if code, b := post(t, srv, "/api/chat/roles", true, GrantRequest{UserID: mod.userID, Role: "mod"}); code != http.StatusOK {
		t.Fatalf("grant: %d %s", code, b)
	}
	v1 := dial(t, srv, "viewer1")

	v1.say("!drop hoodie 2 90s")
	v1.expect("reply", "!drop is for moderators")
	mod.say("!drop hoodie 2 90s")
	mod.expect("reply", "hoodie drop is open: 2 available for 1m30s")
	v1.expect("reply", "hoodie drop is open")

	v1.say("!claim")
	w := v1.expect("whisper", "Your pickup code: ")
	mod.expect("reply", "@viewer1 won hoodie")
	token := strings.Fields(strings.SplitN(w.Text, "pickup code: ", 2)[1])[0]
	if _, err := svc.Redeem(context.Background(), token); err != nil {
		t.Fatalf("the whispered code does not redeem: %v", err)
	}

	code, b := postAs(t, browser(t, srv), srv, "/api/chat", false, PostRequest{Login: "viewer2", Text: "!claim"})
	var pr PostResponse
	if code != http.StatusOK || json.Unmarshal(b, &pr) != nil || len(pr.Replies) != 2 || !pr.Replies[1].Private {
		t.Fatalf("POST claim: %d %s", code, b)
	}
	mod.expect("reply", "@viewer2 won hoodie")

	v3 := dial(t, srv, "viewer3")
	v3.say("!claim")
	v3.expect("reply", "@viewer3 sorry, hoodie sold out")

	// Roles beyond viewer need the admin token; bad bodies change nothing.
	if code, b := postAs(t, browser(t, srv), srv, "/api/chat", false, PostRequest{Text: "!drop close", Roles: []string{"moderator"}}); code != http.StatusForbidden {
		t.Fatalf("moderator without admin: %d %s", code, b)
	}
	for _, bad := range []PostRequest{{UserID: "", Text: "!claim"}, {UserID: "a b", Text: "!claim"}, {UserID: "x", Text: ""},
		{UserID: "x", Text: strings.Repeat("a", 501)}, {UserID: "x", Channel: "Not A Channel!", Text: "!claim"}, {UserID: "x", Text: "!claim", Roles: []string{"king"}}} {
		if code, b := post(t, srv, "/api/chat", true, bad); code != http.StatusBadRequest {
			t.Fatalf("bad request %+v: %d %s", bad, code, b)
		}
	}
	if code, b := post(t, srv, "/api/chat", true, PostRequest{UserID: "boss", Text: "!drop tee 1 1m", Roles: []string{"broadcaster"}}); code != http.StatusOK || !strings.Contains(string(b), "tee drop is open") {
		t.Fatalf("admin as broadcaster: %d %s", code, b)
	}

	resp, err := http.Get(srv.URL + "/chat")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `data-channel="local"`) || !strings.Contains(string(page), "/chat/assets/chat.js") {
		t.Fatalf("chat page: %d %s", resp.StatusCode, page)
	}
	if resp, err := http.Get(srv.URL + "/chat/assets/chat.js"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("chat.js: %v", err)
	} else {
		resp.Body.Close()
	}
}

// BenchmarkLocalChatClaim: chat messages through POST /api/chat (parsed,
// routed, decided by a real claims.Service on SQLite, replies queued), with
// many chatters at once.
func BenchmarkLocalChatClaim(b *testing.B) {
	srv, _, room := newRoom(b, claims.FCFS)
	_ = srv
	mux := http.NewServeMux()
	room.Routes(mux)
	req := httptest.NewRequest(http.MethodPost, "/api/chat", strings.NewReader(`{"user_id":"boss","text":"!drop open bench 1000000 1h","roles":["moderator"]}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), "is open") {
		b.Fatal(rec.Body.String())
	}
	var n atomic.Int64
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Sprintf(`{"user_id":"u%d","login":"u%d","text":"!claim"}`, i, i)
			req := httptest.NewRequest(http.MethodPost, "/api/chat", strings.NewReader(body))
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if !strings.Contains(rec.Body.String(), "won bench") {
				b.Fatal(rec.Body.String())
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// TestLocalChatImpersonation: nobody speaks as, or hears the whispers of,
// another local user; only the admin bridge names users.
func TestLocalChatImpersonation(t *testing.T) {
	srv, _, _ := newRoom(t, claims.FCFS)
	if code, b := post(t, srv, "/api/chat", true, PostRequest{UserID: "boss", Text: "!drop cap 5 5m", Roles: []string{"broadcaster"}}); code != http.StatusOK {
		t.Fatalf("open: %d %s", code, b)
	}
	victim := dial(t, srv, "victim")
	victim.say("!claim")
	victim.expect("whisper", "Your pickup code: ")

	attacker := browser(t, srv)
	// POST /api/chat naming the victim: refused, and no code in the answer.
	code, b := postAs(t, attacker, srv, "/api/chat", false, PostRequest{UserID: victim.userID, Login: "x", Text: "!mytoken"})
	if code != http.StatusForbidden || strings.Contains(string(b), "pickup code") {
		t.Fatalf("!mytoken as the victim: %d %s", code, b)
	}
	// Without a cookie at all: a fresh identity, never the victim's.
	code, b = post(t, srv, "/api/chat", false, PostRequest{UserID: victim.userID, Text: "!mytoken"})
	if code != http.StatusForbidden {
		t.Fatalf("cookieless !mytoken as the victim: %d %s", code, b)
	}
	// Another channel (a Twitch one) is not the local room.
	if code, b := postAs(t, attacker, srv, "/api/chat", false, PostRequest{Channel: "streamer", Text: "!mytoken"}); code != http.StatusForbidden {
		t.Fatalf("local chat into another channel: %d %s", code, b)
	}
	// A socket asking for the victim's user_id is refused at the handshake.
	if ws, code, err := dialAs(srv, attacker, url.Values{"channel": {"local"}, "user_id": {victim.userID}}); err == nil || code != http.StatusForbidden {
		if ws != nil {
			ws.Close()
		}
		t.Fatalf("socket as the victim: %d %v", code, err)
	}
	if ws, code, err := dialAs(srv, http.DefaultClient, url.Values{"channel": {"local"}}); err == nil || code != http.StatusUnauthorized {
		if ws != nil {
			ws.Close()
		}
		t.Fatalf("socket without a device: %d %v", code, err)
	}
	// On its own socket, a frame naming the victim is refused, and the
	// victim's whisper never reaches the attacker.
	spy := dial(t, srv, "spy")
	if err := spy.ws.WriteJSON(frame{Text: "!mytoken", UserID: victim.userID, Login: "victim"}); err != nil {
		t.Fatal(err)
	}
	spy.expect("error", "only the admin bridge")
	victim.say("!mytoken")
	victim.expect("whisper", "pickup code")
	spy.say("!mytoken")
	f := spy.expect("reply", "")
	_ = spy.ws.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		var g frame
		if err := spy.ws.ReadJSON(&g); err != nil {
			break
		}
		if g.Type == "whisper" {
			t.Fatalf("the spy received a whisper: %+v (after %+v)", g, f)
		}
	}
}

func TestLocalChatClosedWhenSignInRequired(t *testing.T) {
	srv, _, room := newRoom(t, claims.FCFS)
	room.cfg.SignInRequired = true
	if code, b := postAs(t, browser(t, srv), srv, "/api/chat", false, PostRequest{Text: "!claim"}); code != http.StatusForbidden {
		t.Fatalf("local chat with sign-in on: %d %s", code, b)
	}
	if code, b := post(t, srv, "/api/chat", true, PostRequest{UserID: "bridge_user", Text: "!stock"}); code != http.StatusOK {
		t.Fatalf("admin bridge with sign-in on: %d %s", code, b)
	}
}
