package loadgen

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A waiting client answers the server's pings (a server drops overlays
// that do not, and connecting fifty thousand takes longer than its
// timeout), then still notes the open when it comes.
func TestOverlayClientAnswersPings(t *testing.T) {
	pongs := make(chan string, 4)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetPongHandler(func(data string) error { pongs <- data; return nil })
		go func() {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"snapshot","channel":"x","server_ms":1}`))
		time.Sleep(200 * time.Millisecond) // the client reads the snapshot alone, as it does from the hub
		for _, p := range []string{"one", "two"} {
			_ = c.WriteControl(websocket.PingMessage, []byte(p), time.Now().Add(time.Second))
			time.Sleep(100 * time.Millisecond)
		}
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"event","kind":"drop.opened","channel":"x","at_ms":1700000000000.5,"server_ms":1700000000001.25}`))
		time.Sleep(200 * time.Millisecond)
	}))
	defer ts.Close()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, _, err := conn.ReadMessage(); err != nil { // the snapshot
		t.Fatal(err)
	}
	var sub overlaySub
	bufs := &sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}
	done := make(chan struct{})
	go func() { defer close(done); overlayReadOpen(conn.NetConn(), &sub, bufs) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the open never noted")
	}
	for _, want := range []string{"one", "two"} {
		select {
		case got := <-pongs:
			if got != want {
				t.Errorf("pong %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("no pong for ping %q", want)
		}
	}
	if !sub.got || string(sub.at[:sub.atN]) != "1700000000000.5" || string(sub.sent[:sub.sentN]) != "1700000000001.25" {
		t.Errorf("receipt %+v", sub)
	}
}
