package overlay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/chat"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
	"github.com/microdrop/microdrop/overlay"
)

// textRig is the path a name takes onto the stream: chat (a platform
// vouching for the speaker) or the admin bridge, the claims service, the
// overlay hub, a browser source's WebSocket frame.
type textRig struct {
	router *chat.Router
	ts     *httptest.Server
	ws     *websocket.Conn
	dropID string
}

func newTextRig(tb testing.TB) *textRig {
	tb.Helper()
	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	tb.Cleanup(ts.Close)
	bus := microdrop.NewMemoryBus()
	signer, _ := claims.NewTokenSigner([]byte("0123456789abcdef0123"))
	ledger := sqlite.MustOpen(tb)
	svc, err := claims.New(claims.Deps{Ledger: ledger, Bus: bus, Signer: signer,
		Options: claims.Options{DefaultPolicy: claims.FCFS, ClaimRate: 1e6, ClaimBurst: 1e6}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = svc.Close() })
	admin := microdrop.NewAdmin(testAdminTok, false, nil)
	srv, err := overlay.New(overlay.Deps{Claims: svc, Bus: bus, Admin: admin, PublicURL: ts.URL, Keys: map[string]string{testChannel: testKey}})
	if err != nil {
		tb.Fatal(err)
	}
	srv.Start(context.Background(), bus)
	tb.Cleanup(func() { _ = srv.Close() })
	for _, p := range overlay.Routes() {
		mux.Handle(p, srv.Handler())
	}
	mux.Handle("/api/", claims.NewHandler(svc, admin, ts.URL, nil))
	router, err := chat.NewRouter(chat.Deps{Claims: svc, Bus: bus, UserRate: 1e6, UserBurst: 1e6})
	if err != nil {
		tb.Fatal(err)
	}
	d, err := svc.OpenDrop(context.Background(), claims.OpenRequest{Channel: testChannel, SKU: "cap", Stock: 1_000_000, Duration: claims.Duration(time.Hour)})
	if err != nil {
		tb.Fatal(err)
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/ws/overlay/"+testChannel+"?key="+testKey, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ws.Close() })
	return &textRig{router: router, ts: ts, ws: ws, dropID: d.ID}
}

// winnerFrame reads frames until one names want first among the winners,
// checking every name it sees on the way.
func (r *textRig) winnerFrame(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_ = r.ws.SetReadDeadline(deadline)
		_, data, err := r.ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for winner %q: %v", want, err)
		}
		var f overlay.Frame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		for _, w := range f.Winners {
			if err := microdrop.CheckText("winner", w.Name, 0); err != nil {
				t.Fatalf("the overlay shows %q: %v", w.Name, err)
			}
		}
		if f.Drop != nil {
			if err := microdrop.CheckText("title", f.Drop.Title, 0); err != nil {
				t.Fatalf("the overlay shows title %q: %v", f.Drop.Title, err)
			}
		}
		if len(f.Winners) > 0 && f.Winners[0].Name == want {
			return
		}
	}
	t.Fatalf("no frame named winner %q", want)
}

// FuzzNameToOverlayFrame: whatever a platform or the admin bridge sends as a
// name, the stream shows only plain text, or the bridge's claim is refused
// with a 400 naming the field.
func FuzzNameToOverlayFrame(f *testing.F) {
	for _, s := range []string{"ann", "ann\x00", "ann\x1b[31mred", "\u202egnp.exe", "a\u200bb", "\xff\xfe", "Zoë", "\u3164", "\ufeff"} {
		f.Add(s)
	}
	r := newTextRig(f)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, name string) {
		uid := fmt.Sprintf("fz%d", n.Add(1))
		// A chat platform vouches for the speaker; the name is stripped.
		replies := r.router.Handle(context.Background(), chat.Message{Platform: "twitch", Channel: testChannel, UserID: uid,
			Login: name, DisplayName: name, Text: "!claim", At: time.Now()})
		for _, rep := range replies {
			if err := microdrop.CheckText("reply", rep.Text, 0); err != nil {
				t.Fatalf("reply %q: %v", rep.Text, err)
			}
		}
		want := microdrop.DisplayText(name, 64)
		if want == "" {
			want = uid
		}
		r.winnerFrame(t, want)

		// The admin bridge's claim is checked at the edge: refused, or clean.
		uid2 := uid + "b"
		body, _ := json.Marshal(claims.ClaimBody{UserID: uid2, Login: name})
		req, _ := http.NewRequest("POST", r.ts.URL+"/api/drops/"+r.dropID+"/claims", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+testAdminTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		clean := microdrop.CheckText("login", name, 64) == nil
		switch {
		case clean && resp.StatusCode != 200:
			t.Fatalf("clean login %q refused: %d", name, resp.StatusCode)
		case !clean && resp.StatusCode != http.StatusBadRequest:
			t.Fatalf("login %q: %d, want 400", name, resp.StatusCode)
		case clean:
			w := name
			if w == "" {
				w = uid2
			}
			r.winnerFrame(t, w)
		}
	})
}
