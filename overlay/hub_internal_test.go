package overlay

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

// noDrops is a dropSource for a channel that has never had a drop.
type noDrops struct{}

func (noDrops) Current(context.Context, string) (*claims.Drop, error) {
	return nil, &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "none"}
}
func (noDrops) Drop(context.Context, string) (*claims.Drop, error) {
	return nil, &microdrop.Error{Code: microdrop.ENOTFOUND, Message: "none"}
}

// pipe returns a server-side connection (for the hub) and the client side.
func pipe(t *testing.T) (server, client *websocket.Conn) {
	t.Helper()
	got := make(chan *websocket.Conn, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		got <- c
	}))
	t.Cleanup(ts.Close)
	cc, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	sc := <-got
	t.Cleanup(func() { sc.Close() })
	return sc, cc
}

func testHub(opts HubOptions) *Hub {
	return newHub(noDrops{}, nil, []string{"ch"}, "http://example.test", slog.New(slog.DiscardHandler), time.Now, opts)
}

func view(remaining int, state string) *microdrop.DropView {
	return &microdrop.DropView{ID: "d1", Channel: "ch", Title: "Hoodie", Stock: 1000, Remaining: remaining, State: state,
		OpensAt: time.Now(), ClosesAt: time.Now().Add(time.Minute)}
}

func readFrame(t *testing.T, c *websocket.Conn) Frame {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var f Frame
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// A burst of claims becomes one stock frame carrying the last stock and the
// newest winners; an open goes out as its own frame at once.
func TestHubCoalescesClaimBursts(t *testing.T) {
	h := testHub(HubOptions{MaxWinners: 3})
	srv, cli := pipe(t)
	if !h.admit() {
		t.Fatal("hub refused the first client")
	}
	go h.serve(srv, h.topics["ch"])
	if f := readFrame(t, cli); f.Type != FrameSnapshot || f.Drop != nil {
		t.Fatalf("first frame = %+v, want an empty snapshot", f)
	}

	h.handle(microdrop.Event{Seq: 1, Kind: microdrop.DropOpened, Channel: "ch", DropID: "d1", At: time.Now(), Drop: view(1000, "open")})
	if f := readFrame(t, cli); f.Type != FrameEvent || f.Kind != microdrop.DropOpened || f.Drop.Remaining != 1000 {
		t.Fatalf("open frame = %+v", f)
	}
	for i := 1; i <= 500; i++ {
		h.handle(microdrop.Event{Seq: uint64(1 + i), Kind: microdrop.Claimed, Channel: "ch", DropID: "d1", At: time.Now(),
			Drop:  view(1000-i, "open"),
			Claim: &microdrop.ClaimView{UserID: "u" + strings.Repeat("x", i%3), Login: "viewer" + string(rune('a'+i%26)), Outcome: claims.OutcomeWon, Units: 1}})
	}
	h.flush()
	h.flush() // nothing new: no second frame
	h.handle(microdrop.Event{Seq: 600, Kind: microdrop.SoldOut, Channel: "ch", DropID: "d1", At: time.Now(), Drop: view(0, "sold_out")})

	f := readFrame(t, cli)
	if f.Type != FrameStock || f.Drop.Remaining != 500 || len(f.Winners) != 3 || f.Seq != 501 {
		t.Fatalf("after 500 claims: frame = %+v, want one stock frame with 500 left, 3 winners, seq 501", f)
	}
	if f.Winners[0].Name != "viewer"+string(rune('a'+500%26)) {
		t.Fatalf("newest winner first: got %q", f.Winners[0].Name)
	}
	if f := readFrame(t, cli); f.Type != FrameEvent || f.Kind != microdrop.SoldOut || f.Drop.State != "sold_out" {
		t.Fatalf("the frame after the burst must be the sell-out, got %+v", f)
	}
	if got := h.Stats().Frames; got != 3 {
		t.Fatalf("frames broadcast = %d, want 3 (open, one stock, sold out)", got)
	}
}

// A client whose writer is stuck is dropped when its buffer fills, without
// holding up the others, and every client gets the same prepared frame.
func TestHubDropsStuckClientOnly(t *testing.T) {
	h := testHub(HubOptions{SendBuffer: 16}) // the stuck clients below get 2
	tp := h.topics["ch"]

	stuckSrv, stuckCli := pipe(t)
	stuck := &client{conn: stuckSrv, send: make(chan outMsg, 2), gone: make(chan struct{})} // no writer goroutine
	other := &client{conn: stuckSrv, send: make(chan outMsg, 2), gone: make(chan struct{})}
	tp.mu.Lock()
	tp.clients[stuck] = struct{}{}
	tp.clients[other] = struct{}{}
	tp.mu.Unlock()

	fastSrv, fastCli := pipe(t)
	if !h.admit() {
		t.Fatal("hub refused a client")
	}
	go h.serve(fastSrv, tp)
	readFrame(t, fastCli) // snapshot: the fast client is subscribed

	h.handle(microdrop.Event{Seq: 1, Kind: microdrop.DropOpened, Channel: "ch", DropID: "d1", At: time.Now(), Drop: view(10, "open")})
	a, b := <-stuck.send, <-other.send
	if a.pm == nil || a.pm != b.pm {
		t.Fatal("clients of one channel must share one prepared frame")
	}
	// Only "other" drains; "stuck" stays full after three more frames.
	for i := 2; i <= 4; i++ {
		h.handle(microdrop.Event{Seq: uint64(i), Kind: microdrop.DropExtended, Channel: "ch", DropID: "d1", At: time.Now(), Drop: view(10, "open")})
		<-other.send
	}
	select {
	case <-stuck.gone:
	default:
		t.Fatal("the stuck client was not dropped")
	}
	tp.mu.Lock()
	_, still := tp.clients[stuck]
	tp.mu.Unlock()
	if still || h.Stats().SlowDrops != 1 {
		t.Fatalf("stuck client still subscribed=%v, slow drops=%d", still, h.Stats().SlowDrops)
	}
	if _, _, err := stuckCli.ReadMessage(); err == nil {
		t.Fatal("the stuck client's connection should be closed")
	}
	for i := 1; i <= 4; i++ {
		if f := readFrame(t, fastCli); f.Seq != uint64(i) {
			t.Fatalf("fast client frame %d has seq %d", i, f.Seq)
		}
	}
}

// Stale events (an older drop's, or a claim that a reload already counted)
// never move the overlay backwards.
func TestHubIgnoresStaleEvents(t *testing.T) {
	h := testHub(HubOptions{})
	h.handle(microdrop.Event{Seq: 1, Kind: microdrop.DropOpened, Channel: "ch", DropID: "d1", Drop: view(10, "open")})
	h.handle(microdrop.Event{Seq: 2, Kind: microdrop.Claimed, Channel: "ch", DropID: "d1", Drop: view(7, "open")})
	h.handle(microdrop.Event{Seq: 3, Kind: microdrop.Claimed, Channel: "ch", DropID: "d1", Drop: view(8, "open")})
	h.handle(microdrop.Event{Seq: 4, Kind: microdrop.DropClosed, Channel: "ch", DropID: "old", Drop: &microdrop.DropView{ID: "old", State: "closed"}})
	h.handle(microdrop.Event{Seq: 5, Kind: microdrop.Claimed, Channel: "other", DropID: "x", Drop: view(1, "open")})
	tp := h.topics["ch"]
	if tp.drop.ID != "d1" || tp.drop.Remaining != 7 || tp.drop.State != "open" {
		t.Fatalf("state = %+v, want d1 open with 7 left", tp.drop)
	}
	if _, ok := h.topics["other"]; ok {
		t.Fatal("a channel without an overlay key must not get a topic")
	}
}

// The QR code and claim URL of an open come from the event (its drop's
// claim code), and a claim event's stock from its ClaimView: the hub asks
// the claims service for neither (noDrops knows no drop at all).
func TestHubShowsWhatEventsCarry(t *testing.T) {
	h := testHub(HubOptions{})
	url := hubServer(t, h)
	c := dialHub(t, url)
	v := view(10, "open")
	v.Stock, v.ClaimCode = 10, "MOON"
	h.handle(microdrop.Event{Seq: 1, Kind: microdrop.DropOpened, Channel: "ch", DropID: "d1", At: time.Now(), Drop: v})
	f := readFrame(t, c)
	want := "http://example.test/c/d1?code=MOON"
	qr, err := NewQRBits(want)
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != microdrop.DropOpened || f.ClaimURL != want || f.QR == nil || *f.QR != *qr {
		t.Fatalf("open frame claim URL %q (QR %v), want %q and its QR code", f.ClaimURL, f.QR != nil, want)
	}
	h.handle(microdrop.Event{Seq: 2, Kind: microdrop.Claimed, Channel: "ch", DropID: "d1", At: time.Now(),
		Claim: &microdrop.ClaimView{UserID: "u1", Login: "ann", Outcome: claims.OutcomeWon, Units: 1, Remaining: 9}})
	h.flush()
	if f := readFrame(t, c); f.Type != FrameStock || f.Drop.Remaining != 9 || f.Drop.Winners != 1 || len(f.Winners) != 1 || f.Winners[0].Name != "ann" {
		t.Fatalf("stock frame = %+v (drop %+v), want 9 left and ann among the winners", f, f.Drop)
	}
}

// The hub as a slow bus subscriber: it is held up while 100,000 claims are
// published with the opens, extensions, sell-outs and closes of fifty
// drops in between. The bus sheds claims, never the others, so the
// overlay gets an event frame for every one of them, in order.
func TestHubBurstKeepsEveryEventFrame(t *testing.T) {
	bus := microdrop.NewMemoryBus()
	h := testHub(HubOptions{BusBuffer: 64, SendBuffer: 1 << 12})
	url := hubServer(t, h)
	h.start(context.Background(), bus)
	c := dialHub(t, url)

	type ev struct {
		kind microdrop.Kind
		seq  uint64
	}
	var want []ev
	pub := func(e microdrop.Event) {
		e.Channel, e.At = "ch", time.Now()
		e, _ = bus.Publish(context.Background(), e)
		if e.Kind != microdrop.Claimed {
			want = append(want, ev{e.Kind, e.Seq})
		}
	}
	const drops, perDrop = 50, 2000
	tp := h.topics["ch"]
	tp.mu.Lock() // the hub's loop waits for this in its first handle
	held := true
	for d := range drops {
		id := fmt.Sprint("d", d)
		v := func(remaining int, state string) *microdrop.DropView {
			return &microdrop.DropView{ID: id, Channel: "ch", Stock: perDrop, Remaining: remaining, State: state, ClaimCode: "MOON"}
		}
		pub(microdrop.Event{Kind: microdrop.DropOpened, DropID: id, Drop: v(perDrop, "open")})
		for n := 1; n <= perDrop; n++ {
			pub(microdrop.Event{Kind: microdrop.Claimed, DropID: id,
				Claim: &microdrop.ClaimView{UserID: fmt.Sprint(n), Outcome: claims.OutcomeWon, Units: 1, Remaining: perDrop - n}})
			if n == perDrop/2 {
				pub(microdrop.Event{Kind: microdrop.DropExtended, DropID: id, Drop: v(perDrop-n, "open")})
			}
		}
		pub(microdrop.Event{Kind: microdrop.SoldOut, DropID: id, Drop: v(0, "sold_out")})
		pub(microdrop.Event{Kind: microdrop.DropClosed, DropID: id, Drop: v(0, "closed")})
		if held && d == drops/2 {
			tp.mu.Unlock()
			held = false
		}
	}
	if held {
		tp.mu.Unlock()
	}

	var got []ev
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for len(got) < len(want) {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("after %d of %d event frames: %v", len(got), len(want), err)
		}
		var f Frame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		if f.Type == FrameEvent {
			got = append(got, ev{f.Kind, f.Seq})
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event frame %d is %v, want %v", i, got[i], want[i])
		}
	}
	if h.sub.Dropped() == 0 {
		t.Fatal("the bus shed no claim: the hub was not held up")
	}
	t.Logf("%d event frames, all of them; the bus shed %d claims", len(got), h.sub.Dropped())
}
