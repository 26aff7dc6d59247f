package overlay

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/microdrop/microdrop"
)

// hubServer serves h's channel "ch" on a loopback test server, as overlayWS
// does, and returns its WebSocket URL.
func hubServer(t testing.TB, h *Hub) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.admit() {
			http.Error(w, "full", http.StatusServiceUnavailable)
			return
		}
		conn, err := h.upgrade(w, r, func(*http.Request) bool { return true })
		if err != nil {
			h.clients.Add(-1)
			return
		}
		h.serve(conn, h.topics["ch"])
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(h.stop)
	return "ws" + strings.TrimPrefix(ts.URL, "http")
}

// dialHub connects one client and reads its snapshot: from then on it is
// subscribed.
func dialHub(t testing.TB, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var f Frame
	if err := json.Unmarshal(data, &f); err != nil || f.Type != FrameSnapshot {
		t.Fatalf("first frame %s (%v), want a snapshot", data, err)
	}
	return c
}

func broadcast(h *Hub, data []byte) {
	t := h.topics["ch"]
	t.mu.Lock()
	h.broadcastLocked(t, data)
	t.mu.Unlock()
}

// Frames broadcast back to back, while the same clients' clock probes are
// answered, reach every client complete and in order, whoever writes them.
func TestHubFanoutKeepsOrder(t *testing.T) {
	const clients, frames = 20, 300
	h := testHub(HubOptions{SendBuffer: frames + 16, Writers: 3}) // no client can fall behind far enough to be dropped
	url := hubServer(t, h)
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dialHub(t, url)
	}
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := uint64(1)
			for next <= frames {
				_, data, err := c.ReadMessage()
				if err != nil {
					errs <- fmt.Errorf("client %d, waiting for frame %d: %v", i, next, err)
					return
				}
				var f Frame
				if err := json.Unmarshal(data, &f); err != nil {
					errs <- fmt.Errorf("client %d: bad frame %q: %v", i, data, err)
					return
				}
				if f.Type == FrameTime {
					continue
				}
				if f.Seq != next {
					errs <- fmt.Errorf("client %d: frame %d after %d", i, f.Seq, next-1)
					return
				}
				next++
			}
		}()
	}
	// Clock probes make the hub write to some clients outside broadcasts.
	// The client's writes are safe next to its reader (one writer here).
	probe := []byte(`{"type":"time","client":1}`)
	for i := 0; i < clients; i += 2 {
		if err := conns[i].WriteMessage(websocket.TextMessage, probe); err != nil {
			t.Fatal(err)
		}
	}
	for seq := uint64(1); seq <= frames; seq++ {
		b, _ := json.Marshal(Frame{Type: FrameStock, Seq: seq, Channel: "ch", Winners: []Winner{{Name: strings.Repeat("w", int(seq)*7%300), Units: 1}}})
		broadcast(h, b)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := h.Stats(); s.SlowDrops != 0 || s.Frames != frames {
		t.Fatalf("stats %+v, want %d frames and no client dropped", s, frames)
	}
}

// A client whose socket is full is dropped once its buffer fills, while
// the others get every frame: the hub never waits for one socket.
func TestHubDropsClientWhoseSocketIsFull(t *testing.T) {
	h := testHub(HubOptions{SendBuffer: 2, WriteTimeout: time.Hour})
	url := hubServer(t, h)

	stuck := dialHub(t, url)
	if err := stuck.NetConn().(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	tp := h.topics["ch"]
	tp.mu.Lock()
	for c := range tp.clients { // the only client so far: shrink its send buffer too
		if err := c.guard.Conn.(*net.TCPConn).SetWriteBuffer(4096); err != nil {
			t.Fatal(err)
		}
	}
	tp.mu.Unlock()
	fast := []*websocket.Conn{dialHub(t, url), dialHub(t, url)}

	big := strings.Repeat("x", 256<<10) // far more than both socket buffers of the stuck client
	for seq := uint64(1); seq <= 6; seq++ {
		b, _ := json.Marshal(Frame{Type: FrameStock, Seq: seq, Channel: "ch", Winners: []Winner{{Name: big}}})
		broadcast(h, b)
		// Lockstep: the fast clients never have more than one frame queued.
		for i, c := range fast {
			f := readFrame(t, c)
			if f.Seq != seq || len(f.Winners) != 1 || len(f.Winners[0].Name) != len(big) {
				t.Fatalf("fast client %d: got seq %d, want %d whole", i, f.Seq, seq)
			}
		}
	}
	// Frame 1 filled the socket, 2 and 3 the buffer: 4 dropped the client.
	if s := h.Stats(); s.SlowDrops != 1 {
		t.Fatalf("slow drops = %d, want 1", s.SlowDrops)
	}
	tp.mu.Lock()
	n := len(tp.clients)
	tp.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d clients subscribed, want the 2 fast ones", n)
	}
	_ = stuck.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := stuck.ReadMessage(); err != nil {
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the stuck client's connection was not closed")
			}
			break
		}
	}
}

// A client that connects while frames go out gets its snapshot first and
// then every frame broadcast after it subscribed, in order.
func TestHubSnapshotPrecedesBroadcasts(t *testing.T) {
	h := testHub(HubOptions{SendBuffer: 512})
	url := hubServer(t, h)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seq := uint64(1); seq <= 200; seq++ {
			h.handle(microdrop.Event{Seq: seq, Kind: microdrop.DropExtended, Channel: "ch", DropID: "d1", At: time.Now(), Drop: view(10, "open")})
		}
	}()
	for i := 0; i < 10; i++ {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		snap := readFrame(t, c)
		if snap.Type != FrameSnapshot {
			t.Fatalf("first frame %+v, want the snapshot", snap)
		}
		last := snap.Seq
		for last < 200 {
			f := readFrame(t, c)
			if f.Seq != last+1 {
				t.Fatalf("client %d: frame %d after %d", i, f.Seq, last)
			}
			last = f.Seq
		}
	}
	<-done
}

// BenchmarkHubFanout broadcasts one frame of a drop's open (with its QR
// code) to N clients on loopback and waits until every client has it;
// ns/delivery is the wall time over N. The clients, in this process too,
// only count frames, reading the socket under gorilla/websocket, so most
// of the CPU left is the hub's and the kernel's. Profile with -cpuprofile:
// write1, drain and the socket writes under them.
func BenchmarkHubFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			h := testHub(HubOptions{MaxClients: n})
			url := hubServer(b, h)
			var got sync.WaitGroup
			for range n {
				c := dialHub(b, url)
				_ = c.SetReadDeadline(time.Time{})
				go countFrames(c.NetConn(), got.Done)
			}
			qr, err := NewQRBits("http://localhost:8080/c/01J0000000000000000000000?code=MOON")
			if err != nil {
				b.Fatal(err)
			}
			v := view(1000, "open")
			frame, _ := json.Marshal(Frame{Type: FrameEvent, Kind: microdrop.DropOpened, Seq: 1, Channel: "ch",
				AtMS: unixMS(time.Now()), ServerMS: unixMS(time.Now()), Drop: v,
				ClaimURL: "http://localhost:8080/c/01J0000000000000000000000?code=MOON", QR: qr})
			b.SetBytes(int64(len(frame)) * int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				got.Add(n)
				broadcast(h, frame)
				got.Wait()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// countFrames calls done for every whole frame the server sends on nc,
// until nc fails. Server frames are unmasked and, from this hub, shorter
// than 64 KiB.
func countFrames(nc net.Conn, done func()) {
	buf := make([]byte, 4<<10)
	have := 0
	for {
		if have == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		n, err := nc.Read(buf[have:])
		if n <= 0 && err != nil {
			return
		}
		have += n
		p := buf[:have]
		for len(p) >= 2 {
			hdr, size := 2, int(p[1]&0x7f)
			if size == 126 {
				if len(p) < 4 {
					break
				}
				hdr, size = 4, int(p[2])<<8|int(p[3])
			}
			if len(p) < hdr+size {
				break
			}
			p = p[hdr+size:]
			done()
		}
		have = copy(buf, p)
	}
}
