package overlay

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rawClient is a WebSocket client that reads the server's bytes itself, so
// a test sees exactly what went over the socket: gorilla's client would
// hide or reject a malformed stream before the test could describe it.
type rawClient struct {
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, wsURL string) *rawClient {
	t.Helper()
	host := strings.TrimPrefix(wsURL, "ws://")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return &rawClient{nc: nc, br: br}
}

// send writes one masked client frame (a zero mask: the payload as is).
func (c *rawClient) send(op byte, payload []byte) error {
	var hdr []byte
	if n := len(payload); n < 126 {
		hdr = []byte{0x80 | op, 0x80 | byte(n), 0, 0, 0, 0}
	} else {
		hdr = []byte{0x80 | op, 0x80 | 126, byte(n >> 8), byte(n), 0, 0, 0, 0}
	}
	_, err := c.nc.Write(append(hdr, payload...))
	return err
}

// errInFrame is a stream that ends inside a frame.
var errInFrame = errors.New("stream ends inside a frame")

// rawFrame is one server frame as it arrived.
type rawFrame struct {
	op      byte
	payload []byte
}

// next reads one whole frame and checks it is one a server may send: final,
// no reserved bits, unmasked, a known opcode. io.EOF only on a frame
// boundary; a stream that ends inside a frame is an error.
func (c *rawClient) next() (rawFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:1]); err != nil {
		return rawFrame{}, err // EOF here is between frames
	}
	if _, err := io.ReadFull(c.br, h[1:]); err != nil {
		return rawFrame{}, fmt.Errorf("%w header: %w", errInFrame, err)
	}
	if h[0]&0x70 != 0 || h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		return rawFrame{}, fmt.Errorf("malformed header %08b %08b", h[0], h[1])
	}
	op := h[0] & 0x0f
	switch op {
	case opText, 0x8, opPing, opPong:
	default:
		return rawFrame{}, fmt.Errorf("opcode %d", op)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return rawFrame{}, fmt.Errorf("%w header: %w", errInFrame, err)
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return rawFrame{}, fmt.Errorf("%w header: %w", errInFrame, err)
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<24 {
		return rawFrame{}, fmt.Errorf("frame of %d bytes: not one of ours", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return rawFrame{}, fmt.Errorf("%w of %d bytes: %w", errInFrame, n, err)
	}
	return rawFrame{op: op, payload: p}, nil
}

// clientRole is what a client of the hammer test does besides reading.
type clientRole int

const (
	reader   clientRole = iota // reads until the server goes away
	pinger                     // also pings: the server's pongs share the queue
	closer                     // closes: gorilla answers with a close frame
	offender                   // sends a message over the read limit: gorilla closes with 1009
)

// result is what one client saw.
type result struct {
	frames    int
	closeCode int // 0: no close frame
	err       error
}

// readAll reads one client's stream to its end, checking every frame: text
// frames are whole JSON frames in sequence order, nothing follows a close
// frame, and the stream ends on a frame boundary.
func readAll(c *rawClient, role clientRole, leaveAfter int) result {
	var r result
	var last uint64
	pings := 0
	for {
		f, err := c.next()
		if err != nil && !errors.Is(err, errInFrame) && (errors.Is(err, io.EOF) || r.closeCode != 0 && errors.Is(err, syscall.ECONNRESET)) {
			return r // on a frame boundary: the end, or a reset after the close
		}
		if err != nil {
			r.err = fmt.Errorf("after %d frames (close code %d): %w", r.frames, r.closeCode, err)
			return r
		}
		if r.closeCode != 0 {
			r.err = fmt.Errorf("opcode %d after the close frame", f.op)
			return r
		}
		switch f.op {
		case 0x8:
			if len(f.payload) < 2 {
				r.err = fmt.Errorf("close frame of %d bytes", len(f.payload))
				return r
			}
			r.closeCode = int(binary.BigEndian.Uint16(f.payload))
			continue
		case opPong:
			if string(f.payload) != "p" {
				r.err = fmt.Errorf("pong %q", f.payload)
				return r
			}
			continue
		case opPing:
			continue
		}
		var fr Frame
		if err := json.Unmarshal(f.payload, &fr); err != nil {
			r.err = fmt.Errorf("frame %d is not JSON (%d bytes): %v", r.frames, len(f.payload), err)
			return r
		}
		if fr.Type != FrameSnapshot {
			if fr.Seq <= last {
				r.err = fmt.Errorf("seq %d after %d", fr.Seq, last)
				return r
			}
			last = fr.Seq
		}
		r.frames++
		switch {
		case role == pinger && r.frames%5 == 0 && pings < 50:
			pings++
			_ = c.send(opPing, []byte("p"))
		case role == closer && r.frames == leaveAfter:
			_ = c.send(0x8, []byte{0x03, 0xe8}) // 1000, normal closure
		case role == offender && r.frames == leaveAfter:
			_ = c.send(opText, []byte(strings.Repeat("x", 600)))
		}
	}
}

// behind is the longest queue of t's clients.
func behind(t *topic) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for c := range t.clients {
		n = max(n, len(c.send))
	}
	return n
}

// Frames of every size are broadcast without pause while some clients
// close their connection, some break the protocol (gorilla writes its own
// close frame on the socket the hub's writers are writing to), some ping
// (the hub's pongs queue with the frames), and then the hub stops in the
// middle of the burst (gorilla writes the going-away close). Small socket
// buffers make most frames partial writes finished by another goroutine.
// Every byte every client receives is a whole frame, text frames are whole
// JSON in order, and nothing follows a close frame.
func TestHubFramesStayWholeUnderCloseAndStop(t *testing.T) {
	for round := range 4 {
		t.Run(fmt.Sprint("round", round), hammerCloseAndStop)
	}
}

func hammerCloseAndStop(t *testing.T) {
	const clients = 16
	h := testHub(HubOptions{SendBuffer: 1 << 12, WriteTimeout: 5 * time.Second})
	url := hubServer(t, h)
	conns := make([]*rawClient, clients)
	for i := range conns {
		conns[i] = dialRaw(t, url)
		if err := conns[i].nc.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
			t.Fatal(err)
		}
	}
	tp := h.topics["ch"]
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		tp.mu.Lock()
		n := len(tp.clients)
		tp.mu.Unlock()
		if n == clients {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d clients subscribed", n, clients)
		}
	}
	tp.mu.Lock()
	for c := range tp.clients {
		if c.raw == nil {
			t.Fatal("a loopback client without the raw writer: this test would not exercise it")
		}
		if err := c.guard.Conn.(*net.TCPConn).SetWriteBuffer(16 << 10); err != nil {
			t.Fatal(err)
		}
	}
	tp.mu.Unlock()

	results := make([]result, clients)
	var leavers, all sync.WaitGroup
	for i, c := range conns {
		role := clientRole(i % 4)
		if role == closer || role == offender {
			leavers.Add(1)
		}
		all.Add(1)
		go func() {
			defer all.Done()
			results[i] = readAll(c, role, 5+i)
			if role == closer || role == offender {
				leavers.Done()
			}
		}()
	}

	stop := make(chan struct{})
	burst := make(chan uint64)
	go func() {
		seq := uint64(0)
		defer func() { burst <- seq }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if behind(tp) > 16 {
				// Let the readers keep up: no client is to be dropped as
				// slow, a different way to leave than those tested here.
				time.Sleep(100 * time.Microsecond)
				continue
			}
			seq++
			name := strings.Repeat("w", int(seq*7919%(24<<10))) // 0 to 24 KiB
			b, _ := json.Marshal(Frame{Type: FrameStock, Seq: seq, Channel: "ch", Winners: []Winner{{Name: name}}})
			broadcast(h, b)
		}
	}()
	leavers.Wait()
	time.Sleep(100 * time.Millisecond) // the burst goes on to the readers alone
	h.stop()                           // in the middle of the burst
	close(stop)
	sent := <-burst
	all.Wait()

	for i, r := range results {
		role := clientRole(i % 4)
		if r.err != nil {
			t.Errorf("client %d (role %d): %v", i, role, r.err)
			continue
		}
		want := map[clientRole]int{reader: 1001, pinger: 1001, closer: 1000, offender: 1009}[role]
		if r.closeCode != want {
			t.Errorf("client %d (role %d): close code %d after %d frames, want %d", i, role, r.closeCode, r.frames, want)
		}
	}
	if s := h.Stats(); s.SlowDrops != 0 {
		t.Fatalf("%d clients dropped as slow: the test meant every client to keep up", s.SlowDrops)
	}
	if h.partial.Load() == 0 {
		t.Fatal("no frame was finished by a waiting goroutine: the test did not exercise partial writes")
	}
	t.Logf("%d frames broadcast, %d finished by a waiting goroutine; readers got %d, %d", sent, h.partial.Load(), results[0].frames, results[1].frames)
}
