package overlay

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// This file is the hub's transport: one overlay connection, its send
// buffer and the one goroutine that writes to it. The topic state and the
// coalescing that decide what is sent are in hub.go.
//
// Every frame to a client goes through gorilla/websocket's Conn, written
// by that client's writer goroutine alone (gorilla allows one writer at a
// time). The only other writes are gorilla's control frames (WriteControl:
// the close at shutdown, pongs and close replies from the reader), which
// gorilla serializes with the writer under its own lock, so two frames can
// never interleave on one socket.

// outMsg is one message queued for a client: a broadcast frame, prepared
// once for every client of a channel, or a text message for this client
// alone.
type outMsg struct {
	pm   *websocket.PreparedMessage
	data []byte
}

type client struct {
	conn *websocket.Conn
	send chan outMsg
	gone chan struct{}
	once sync.Once
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

var errTooManyClients = errors.New("too many overlay connections")

// serve runs one upgraded connection until it ends.
func (h *Hub) serve(conn *websocket.Conn, t *topic) {
	c := &client{conn: conn, send: make(chan outMsg, h.opts.SendBuffer), gone: make(chan struct{})}
	defer h.clients.Add(-1)

	t.mu.Lock()
	c.send <- outMsg{data: t.frameLocked(FrameSnapshot, "", t.lastSeq, time.Time{}, h.now(), true)}
	t.clients[c] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.clients, c)
		t.mu.Unlock()
		c.kick()
	}()

	go h.write(c)
	h.read(c)
}

// write is the client's only writer of data frames: its queued messages in
// order, and its pings.
func (h *Hub) write(c *client) {
	// The first ping comes at a random point of the second half of the
	// interval: overlays that connected together (after a restart, say)
	// are not all pinged in the same instant.
	ping := time.NewTimer(h.opts.PingInterval/2 + rand.N(h.opts.PingInterval/2+1))
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
			ping.Reset(h.opts.PingInterval)
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
			c.offer(outMsg{data: b}) // a client too slow for its own probe's answer goes without
		}
	}
}

// goAway says goodbye to every client of t at shutdown. The close frames
// of all topics share one deadline, so clients whose sockets are full hold
// up shutdown by that much in all, not each.
func goAway(t *topic, deadline time.Time) {
	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.clients {
		_ = c.conn.WriteControl(websocket.CloseMessage, msg, deadline)
		c.kick()
		delete(t.clients, c)
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
