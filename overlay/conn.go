package overlay

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// This file is the hub's transport: connections, their send buffers, and
// how one frame reaches thousands of sockets. What is sent, and when, is
// decided in hub.go.
//
// Who writes to a socket. A frame is only ever written whole by one
// writer at a time, and every writer holds the connection's frame lock
// (guardedConn) from the frame's first byte to its last:
//
//   - the hub's own frames (broadcasts, snapshots, clock answers, pings,
//     pongs) go through the client's queue; whoever takes pending from 0 to
//     1 owns the writing until it is back at 0, writing with non-blocking
//     write(2) calls, and a frame the socket does not take whole is
//     finished by a goroutine that still holds the frame lock;
//   - gorilla/websocket writes its own control frames (the close at
//     shutdown, a close reply, the close after a protocol error) through
//     the same lock: the hub hands gorilla a guardedConn at the upgrade, so
//     gorilla's every write to the socket waits for the frame in progress.
//     gorilla writes a control frame in one Write call, and the hub never
//     asks it for a data frame on such a connection.
//
// A connection that is not a plain socket (TLS, or upgraded without the
// hub's guard) has a writer goroutine instead, and gorilla alone writes to
// it.

// WebSocket opcodes the hub writes itself (RFC 6455, section 5.2).
const (
	opText byte = 0x1
	opPing byte = 0x9
	opPong byte = 0xA
)

// encodeFrame encodes payload as one final, unmasked (server-to-client),
// uncompressed WebSocket frame: the bytes a websocket.PreparedMessage
// writes to a connection without compression.
func encodeFrame(op byte, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n <= 0xFFFF:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x80 | op
	return append(b, payload...)
}

// rawWriter writes to a connection's socket without ever waiting for it.
type rawWriter interface {
	// tryWrite writes what the socket takes at once: n < len(b) with a nil
	// error means the socket is full.
	tryWrite(b []byte) (n int, err error)
}

// guardedConn is the socket as gorilla/websocket sees it: its writes take
// the frame lock, which the hub's raw writers hold for each frame.
type guardedConn struct {
	net.Conn
	// The frame lock: held (1) while someone writes a frame. Taking a
	// free lock is one compare-and-swap, what a fan-out pays per client.
	// A writer that must wait for it (gorilla's control frames, a frame
	// finished by a goroutine) counts itself in waiters, and an unlock
	// hands the lock over to it through wake without letting it go, so
	// nobody takes it from under a waiter (a close frame waits for the
	// frame in progress, not for every later one). A token in wake is the
	// lock itself.
	held     atomic.Int32
	waiters  atomic.Int32
	wake     chan struct{}
	deadline atomic.Int64 // gorilla's write deadline, Unix ns; 0 for none
	// closeSent is set once gorilla has written a close frame: the hub's
	// writers write nothing after it.
	closeSent atomic.Bool
}

func newGuardedConn(c net.Conn) *guardedConn {
	return &guardedConn{Conn: c, wake: make(chan struct{}, 1)}
}

func (g *guardedConn) tryLock() bool { return g.held.CompareAndSwap(0, 1) }

// lock waits for the frame lock until deadline (zero: no limit).
func (g *guardedConn) lock(deadline time.Time) bool {
	if g.tryLock() {
		return true
	}
	g.waiters.Add(1)
	if g.tryLock() { // let go of since the first try
		g.waiters.Add(-1)
		return true
	}
	var expire <-chan time.Time
	if !deadline.IsZero() {
		tm := time.NewTimer(time.Until(deadline))
		defer tm.Stop()
		expire = tm.C
	}
	select {
	case <-g.wake:
		g.waiters.Add(-1)
		return true // handed over
	case <-expire:
		g.waiters.Add(-1)
		select {
		case <-g.wake:
			return true // handed over as time ran out
		default:
			return false
		}
	}
}

func (g *guardedConn) unlock() {
	if g.waiters.Load() > 0 {
		g.wake <- struct{}{} // hand over: the lock stays held (wake is empty while it is)
		return
	}
	g.held.Store(0)
	// A waiter that came between the look and the store found the lock
	// held: take it back for it.
	if g.waiters.Load() > 0 && g.tryLock() {
		g.wake <- struct{}{}
	}
}

// Write is gorilla's: one control frame (or the handshake) at a time,
// never into the middle of the hub's.
func (g *guardedConn) Write(b []byte) (int, error) {
	var dl time.Time
	if ns := g.deadline.Load(); ns != 0 {
		dl = time.Unix(0, ns)
	}
	if !g.lock(dl) {
		return 0, os.ErrDeadlineExceeded
	}
	defer g.unlock()
	// Under the lock: the hub's own writes set deadlines of their own.
	if err := g.Conn.SetWriteDeadline(dl); err != nil {
		return 0, err
	}
	n, err := g.Conn.Write(b)
	if len(b) > 0 && b[0] == 0x80|websocket.CloseMessage {
		g.closeSent.Store(true)
	}
	return n, err
}

// lockFrame takes the frame lock for one of the hub's frames, waiting
// until deadline (zero: not at all); false if it is not to be written,
// the lock then not held: busy, or the connection is closing.
func (g *guardedConn) lockFrame(deadline time.Time) (ok, closing bool) {
	if deadline.IsZero() {
		ok = g.tryLock()
	} else {
		ok = g.lock(deadline)
	}
	if ok && g.closeSent.Load() {
		g.unlock()
		return false, true
	}
	return ok, false
}

// SetWriteDeadline is kept for gorilla's next Write, which applies it
// once it holds the frame lock.
func (g *guardedConn) SetWriteDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	g.deadline.Store(ns)
	return nil
}

func (g *guardedConn) SetDeadline(t time.Time) error {
	_ = g.SetWriteDeadline(t)
	return g.Conn.SetReadDeadline(t)
}

// guardedHijack hands gorilla's upgrade a guardedConn.
type guardedHijack struct{ http.ResponseWriter }

func (w guardedHijack) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return newGuardedConn(c), brw, nil
}

// upgrade makes r a WebSocket connection the hub can write to.
func (h *Hub) upgrade(w http.ResponseWriter, r *http.Request, checkOrigin func(r *http.Request) bool) (*websocket.Conn, error) {
	return h.upgrader(checkOrigin).Upgrade(guardedHijack{w}, r, nil)
}

// upgrader returns the hub's upgrader with its origin check.
func (h *Hub) upgrader(checkOrigin func(r *http.Request) bool) *websocket.Upgrader {
	return &websocket.Upgrader{
		ReadBufferSize: 1024, WriteBufferSize: 4096, WriteBufferPool: &h.wpool,
		// No per-message compression: frames are small, and one encoding
		// of a frame serves every client.
		EnableCompression: false,
		HandshakeTimeout:  10 * time.Second,
		CheckOrigin:       checkOrigin,
	}
}

// outMsg is one message queued for a client. For a client the hub's
// writers write (client.raw set), data is the whole encoded WebSocket frame;
// for one with its own writer goroutine, pm is a broadcast frame and data
// otherwise the text message.
type outMsg struct {
	pm   *websocket.PreparedMessage
	data []byte
}

type client struct {
	conn *websocket.Conn
	send chan outMsg
	gone chan struct{}
	once sync.Once

	// raw, when set, is the socket the hub writes frames to without ever
	// blocking, holding guard's frame lock for each: whoever takes pending
	// from 0 to 1 writes until it is back at 0, or hands the rest to a
	// goroutine that waits for the socket. Without raw, a writer
	// goroutine drains send through gorilla.
	raw     rawWriter
	guard   *guardedConn
	pending atomic.Int32
	ping    atomic.Pointer[time.Timer]
}

func (c *client) kick() {
	c.once.Do(func() {
		close(c.gone)
		_ = c.conn.Close()
	})
}

// offer queues m without blocking; a full buffer means the client is too slow.
func (c *client) offer(m outMsg) bool {
	select {
	case c.send <- m:
		return true
	default:
		return false
	}
}

// message is a text message for c alone, in the form c's writer takes.
func (c *client) message(data []byte) outMsg {
	if c.raw != nil {
		return outMsg{data: encodeFrame(opText, data)}
	}
	return outMsg{data: data}
}

// push queues m for c and, if nobody is writing to c, writes it on the
// calling goroutine (never blocking on the socket). False when c's buffer
// is full.
func (h *Hub) push(c *client, m outMsg) bool {
	if !c.offer(m) {
		return false
	}
	if c.raw != nil && c.pending.Add(1) == 1 {
		h.drain(c)
	}
	return true
}

// drain writes c's queued frames while the socket takes them at once. The
// caller must own c's writing (it took pending from 0 to 1); ownership ends
// here, goes to a goroutine that waits for a full socket, or dies with c.
func (h *Hub) drain(c *client) {
	for h.write1(c, (<-c.send).data) { // pending > 0: the frame is there
	}
}

// write1 writes one frame of the owner of c's writing and reports whether
// it still owns it and has another frame queued.
func (h *Hub) write1(c *client, frame []byte) bool {
	if ok, closing := c.guard.lockFrame(time.Time{}); closing {
		c.kick()
		return false
	} else if !ok {
		// gorilla is writing a control frame: wait for it elsewhere.
		go h.finish(c, frame, false)
		return false
	}
	n, err := c.raw.tryWrite(frame)
	if err != nil {
		c.guard.unlock()
		c.kick()
		return false
	}
	if n < len(frame) {
		go h.finish(c, frame[n:], true)
		return false
	}
	c.guard.unlock()
	return c.pending.Add(-1) != 0
}

// finish waits, at most WriteTimeout, for c to take the rest of a frame
// (locked: the frame lock is held for it) or a whole frame (taking the
// lock first), then goes back to writing without waiting. A client that
// does not read meanwhile fills its buffer and is dropped by the next
// broadcast.
func (h *Hub) finish(c *client, rest []byte, locked bool) {
	h.partial.Add(1)
	deadline := time.Now().Add(h.opts.WriteTimeout)
	if !locked {
		if ok, _ := c.guard.lockFrame(deadline); !ok {
			c.kick()
			return
		}
	}
	nc := c.guard.Conn
	_ = nc.SetWriteDeadline(deadline)
	_, err := nc.Write(rest)
	c.guard.unlock()
	if err != nil {
		c.kick()
		return
	}
	if c.pending.Add(-1) != 0 {
		h.drain(c)
	}
}

// broadcastLocked sends one prepared frame to every client of t. A client
// whose buffer is full is dropped, never waited for. The frame is encoded
// once; a few goroutines write it to every client's socket, none of them
// ever waiting for one socket, so there is no wake-up per client.
func (h *Hub) broadcastLocked(t *topic, data []byte) {
	if len(t.clients) == 0 {
		return
	}
	h.frames.Add(1)
	var pm *websocket.PreparedMessage // for clients with a writer goroutine
	var out *fanout                   // for the others
	var direct, queued []*client
	sent := 0 // direct[:sent] are with the writers
	for c := range t.clients {
		var m outMsg
		if c.raw != nil {
			if out == nil {
				out = h.startFanout(encodeFrame(opText, data), len(t.clients))
				direct = make([]*client, 0, len(t.clients))
			}
			if c.pending.CompareAndSwap(0, 1) {
				// Nothing queued and nobody writing: a writer takes the
				// frame straight to the socket, while this loop goes on.
				if direct = append(direct, c); len(direct)-sent == writeBatch {
					out.batches <- writeJob{clients: direct[sent:]}
					sent = len(direct)
				}
				continue
			}
			m.data = out.frame
		} else {
			if pm == nil {
				// A text message, never compressed: this cannot fail.
				pm, _ = websocket.NewPreparedMessage(websocket.TextMessage, data)
			}
			m.pm = pm
		}
		if !c.offer(m) {
			delete(t.clients, c)
			h.slowDrops.Add(1)
			c.kick()
			continue
		}
		if c.raw != nil && c.pending.Add(1) == 1 {
			queued = append(queued, c) // its writer finished meanwhile
		}
	}
	if out != nil {
		if sent < len(direct) {
			out.batches <- writeJob{clients: direct[sent:]}
		}
		if len(queued) > 0 {
			out.batches <- writeJob{clients: queued, queued: true}
		}
		close(out.batches)
	}
}

// writeBatch is how many clients a writer takes at a time.
const writeBatch = 64

// fanout is one frame on its way to the sockets of a topic's clients.
type fanout struct {
	frame   []byte
	batches chan writeJob
}

// writeJob is clients whose writing the writer that receives it owns: to
// write the fanout's frame to, or (queued) to drain their queued frames.
type writeJob struct {
	clients []*client
	queued  bool
}

// startFanout starts the writers of a frame to at most n clients: up to
// Writers goroutines that take batches of clients as the broadcast loop
// hands them out, so a writer slowed down by the scheduler holds back no
// fixed share. The channel holds every batch: the loop never waits.
func (h *Hub) startFanout(frame []byte, n int) *fanout {
	out := &fanout{frame: frame, batches: make(chan writeJob, n/writeBatch+2)}
	for range max(1, min(h.opts.Writers, n/(4*writeBatch))) {
		go out.write(h)
	}
	return out
}

func (out *fanout) write(h *Hub) {
	for job := range out.batches {
		for _, c := range job.clients {
			if job.queued || h.write1(c, out.frame) {
				h.drain(c)
			}
		}
	}
}

var errTooManyClients = errors.New("too many overlay connections")

// serve runs one upgraded connection until it ends.
func (h *Hub) serve(conn *websocket.Conn, t *topic) {
	c := &client{conn: conn, send: make(chan outMsg, h.opts.SendBuffer), gone: make(chan struct{})}
	if g, ok := conn.NetConn().(*guardedConn); ok {
		if raw := newRawWriter(g.Conn); raw != nil {
			c.raw, c.guard = raw, g
		}
	}
	defer h.clients.Add(-1)

	t.mu.Lock()
	snap := c.message(t.frameLocked(FrameSnapshot, "", t.lastSeq, time.Time{}, h.now(), true))
	c.send <- snap
	own := c.raw != nil && c.pending.Add(1) == 1 // always: nobody else knows c yet
	t.clients[c] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.clients, c)
		t.mu.Unlock()
		c.kick()
		if p := c.ping.Load(); p != nil {
			p.Stop()
		}
	}()

	if c.raw == nil {
		go h.write(c)
	} else {
		if own {
			h.drain(c) // the snapshot, and whatever was broadcast since
		}
		// Pings go through the queue, so they never cut into a frame.
		ping := []byte{0x80 | opPing, 0}
		tm := time.AfterFunc(time.Duration(1<<62), func() {
			select {
			case <-c.gone:
				return
			default:
			}
			h.push(c, outMsg{data: ping})
			c.ping.Load().Reset(h.opts.PingInterval)
		})
		c.ping.Store(tm)
		// The first ping comes at a random point of the second half of
		// the interval: overlays that connected together (after a
		// restart, say) are not all pinged in the same instant.
		tm.Reset(h.opts.PingInterval/2 + rand.N(h.opts.PingInterval/2+1))
		c.conn.SetPingHandler(func(data string) error {
			h.push(c, outMsg{data: encodeFrame(opPong, []byte(data))})
			return nil
		})
	}
	h.read(c)
}

// write is the writer goroutine of a client the hub cannot write to
// without waiting (not a plain socket).
func (h *Hub) write(c *client) {
	ping := time.NewTicker(h.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.gone:
			return
		case m := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
			var err error
			if m.pm != nil {
				err = c.conn.WritePreparedMessage(m.pm)
			} else {
				err = c.conn.WriteMessage(websocket.TextMessage, m.data)
			}
			if err != nil {
				c.kick()
				return
			}
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(h.opts.WriteTimeout)); err != nil {
				c.kick()
				return
			}
		}
	}
}

// clientMsg is what a page may send: a clock probe.
type clientMsg struct {
	Type   string  `json:"type"`
	Client float64 `json:"client"`
}

func (h *Hub) read(c *client) {
	wait := h.opts.PingInterval * 5 / 2
	c.conn.SetReadLimit(512)
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(wait)) })
	var last time.Time
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(wait))
		var m clientMsg
		if json.Unmarshal(data, &m) != nil || m.Type != FrameTime {
			continue // pages send nothing else; ignore rather than trust
		}
		if now := time.Now(); now.Sub(last) >= 200*time.Millisecond {
			last = now
			b, _ := json.Marshal(Frame{Type: FrameTime, ServerMS: unixMS(h.now()), Client: m.Client})
			h.push(c, c.message(b))
		}
	}
}

// goAway says goodbye to every client of t at shutdown, through gorilla
// (under the frame lock). Each client's close waits for its frame in
// progress on a goroutine of its own, and all of them share one deadline,
// so clients whose sockets are full hold up shutdown by that much in all,
// and none has less than that for its close.
func goAway(t *topic, deadline time.Time) {
	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
	t.mu.Lock()
	defer t.mu.Unlock()
	var wg sync.WaitGroup
	for c := range t.clients {
		wg.Go(func() {
			_ = c.conn.WriteControl(websocket.CloseMessage, msg, deadline)
			// The closing handshake (RFC 6455 7.1.1): stop sending, then let
			// the read loop take the client's close (or whatever it was
			// still sending) before the socket goes. Closing at once with
			// unread bytes in our receive buffer makes the kernel reset the
			// connection, and a reset throws away what the client had not
			// read yet, the close frame among it.
			halfClose(c.conn.NetConn())
			_ = c.conn.SetReadDeadline(deadline)
			select {
			case <-c.gone: // the read loop ended and kicked
			case <-time.After(time.Until(deadline)):
			}
			c.kick()
		})
		delete(t.clients, c)
	}
	wg.Wait()
}

// halfClose shuts the write side of a TCP connection, under the frame
// guard if there is one.
func halfClose(nc net.Conn) {
	if g, ok := nc.(*guardedConn); ok {
		nc = g.Conn
	}
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// admit reserves a client slot; false when the hub is full.
func (h *Hub) admit() bool {
	if h.clients.Add(1) > int64(h.opts.MaxClients) {
		h.clients.Add(-1)
		return false
	}
	return true
}
