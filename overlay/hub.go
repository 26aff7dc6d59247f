package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

// HubOptions bound the hub. Zero values take the defaults in brackets.
type HubOptions struct {
	// SendBuffer is how many frames may wait for one client before it is
	// dropped as too slow [32].
	SendBuffer int
	// FrameRate is the most coalesced stock frames per second per channel [10].
	FrameRate int
	// PingInterval is how often the server pings each client [20s]; a client
	// that does not answer within 2.5 intervals is dropped.
	PingInterval time.Duration
	// WriteTimeout bounds one frame's write [10s].
	WriteTimeout time.Duration
	// MaxClients caps connections across all channels [15000].
	MaxClients int
	// MaxWinners is how many recent winners the overlay lists [6].
	MaxWinners int
	// BusBuffer is the hub's bus subscription buffer [65536].
	BusBuffer int
	// Writers is how many goroutines at most write one broadcast out to
	// the clients [GOMAXPROCS].
	Writers int
}

func (o *HubOptions) fill() {
	if o.SendBuffer <= 0 {
		o.SendBuffer = 32
	}
	if o.FrameRate <= 0 {
		o.FrameRate = 10
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 20 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxClients <= 0 {
		o.MaxClients = 15000
	}
	if o.MaxWinners <= 0 {
		o.MaxWinners = 6
	}
	if o.BusBuffer <= 0 {
		o.BusBuffer = 1 << 16
	}
	if o.Writers <= 0 {
		o.Writers = runtime.GOMAXPROCS(0)
	}
}

// dropSource is what the hub reads of the claims service.
type dropSource interface {
	Current(ctx context.Context, channel string) (*claims.Drop, error)
	Drop(ctx context.Context, id string) (*claims.Drop, error)
}

// entrySource lists a drop's entries, to rebuild recent winners after a restart.
type entrySource interface {
	Entries(ctx context.Context, dropID string) ([]claims.Entry, error)
}

// Hub fans bus events out to the WebSocket clients of each channel.
type Hub struct {
	opts      HubOptions
	log       *slog.Logger
	now       func() time.Time
	src       dropSource
	entries   entrySource // may be nil
	publicURL string

	topics map[string]*topic // fixed at New: one per channel with a key

	clients   atomic.Int64
	slowDrops atomic.Uint64
	frames    atomic.Uint64

	// wpool shares write buffers between connections: prepared frames are
	// written directly, so few connections ever hold one.
	wpool sync.Pool

	sub      *microdrop.Subscription
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// topic is one channel's state and clients.
type topic struct {
	channel string

	mu       sync.Mutex
	clients  map[*client]struct{}
	drop     *microdrop.DropView
	claimURL string
	qr       *QRBits
	winners  []Winner // newest first
	dirty    bool     // claims arrived since the last frame
	stale    bool     // and their events did not carry the stock
	lastSeq  uint64
	lastAt   time.Time
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
	// blocking: whoever takes pending from 0 to 1 writes until it is back
	// at 0, or hands the rest to a goroutine that waits for the socket.
	// Without raw (not a plain socket), a writer goroutine drains send.
	raw     rawWriter
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
	n, err := c.raw.tryWrite(frame)
	if err != nil {
		c.kick()
		return false
	}
	if n < len(frame) {
		go h.finish(c, frame[n:])
		return false
	}
	return c.pending.Add(-1) != 0
}

// finish waits, at most WriteTimeout, for c to take the rest of a frame,
// then goes back to writing without waiting. A client that does not read
// meanwhile fills its buffer and is dropped by the next broadcast.
func (h *Hub) finish(c *client, rest []byte) {
	nc := c.conn.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
	_, err := nc.Write(rest)
	_ = nc.SetWriteDeadline(time.Time{}) // the next wait sets its own
	if err != nil {
		c.kick()
		return
	}
	if c.pending.Add(-1) != 0 {
		h.drain(c)
	}
}

func newHub(src dropSource, entries entrySource, channels []string, publicURL string, log *slog.Logger, now func() time.Time, opts HubOptions) *Hub {
	opts.fill()
	h := &Hub{
		opts: opts, log: log, now: now, src: src, entries: entries, publicURL: publicURL,
		topics: make(map[string]*topic, len(channels)),
		quit:   make(chan struct{}), done: make(chan struct{}),
	}
	for _, ch := range channels {
		h.topics[ch] = &topic{channel: ch, clients: make(map[*client]struct{})}
	}
	return h
}

// start subscribes to the bus first, then loads every channel's state, so
// no event falls between the two.
func (h *Hub) start(ctx context.Context, bus microdrop.Bus) {
	h.sub = bus.Subscribe(h.opts.BusBuffer)
	for _, t := range h.topics {
		h.reload(ctx, t)
	}
	go h.run()
}

func (h *Hub) stop() {
	h.stopOnce.Do(func() {
		close(h.quit)
		if h.sub != nil {
			<-h.done
			h.sub.Close()
		}
		for _, t := range h.topics {
			t.mu.Lock()
			for c := range t.clients {
				_ = c.conn.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), time.Now().Add(time.Second))
				c.kick()
				delete(t.clients, c)
			}
			t.mu.Unlock()
		}
	})
}

func (h *Hub) run() {
	defer close(h.done)
	tick := time.NewTicker(time.Second / time.Duration(h.opts.FrameRate))
	defer tick.Stop()
	var dropped uint64
	for {
		select {
		case <-h.quit:
			return
		case e, ok := <-h.sub.C():
			if !ok {
				return
			}
			h.handle(e)
		case <-tick.C:
			if d := h.sub.Dropped(); d != dropped {
				// The bus dropped events on us: our state may be stale.
				// Reload every channel and resync every client.
				dropped = d
				h.log.Warn("hub fell behind the bus; resyncing overlays", "dropped", d)
				for _, t := range h.topics {
					h.reload(context.Background(), t)
					t.mu.Lock()
					h.broadcastLocked(t, t.frameLocked(FrameSnapshot, "", 0, time.Time{}, h.now(), true))
					t.mu.Unlock()
				}
			}
			h.flush()
		}
	}
}

// flush sends one stock frame to each channel that had claims since the
// last one: this is the coalescing of claim bursts.
func (h *Hub) flush() {
	for _, t := range h.topics {
		t.mu.Lock()
		if t.dirty && t.stale && t.drop != nil {
			h.refreshLocked(t)
		}
		if t.dirty {
			t.dirty = false
			h.broadcastLocked(t, t.frameLocked(FrameStock, microdrop.Claimed, t.lastSeq, t.lastAt, h.now(), false))
		}
		t.mu.Unlock()
	}
}

// reload reads a channel's current drop and its recent winners from claims.
func (h *Hub) reload(ctx context.Context, t *topic) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d, err := h.src.Current(ctx, t.channel)
	if err != nil {
		if microdrop.ErrorCode(err) != microdrop.ENOTFOUND {
			h.log.Warn("load overlay state", "channel", t.channel, "err", err)
		}
		return
	}
	var winners []Winner
	if h.entries != nil {
		if es, err := h.entries.Entries(ctx, d.ID); err == nil {
			for i := len(es) - 1; i >= 0 && len(winners) < h.opts.MaxWinners; i-- {
				if es[i].Outcome == claims.OutcomeWon {
					winners = append(winners, Winner{Name: displayName(es[i].Login, es[i].UserID), Units: 1})
				}
			}
		}
	}
	url := claims.ClaimURL(h.publicURL, d)
	qr, err := NewQRBits(url)
	if err != nil {
		h.log.Warn("qr", "err", err)
	}
	t.mu.Lock()
	t.drop, t.claimURL, t.qr, t.winners, t.dirty = d.View(), url, qr, winners, false
	t.mu.Unlock()
}

func displayName(login, userID string) string {
	if login != "" {
		return login
	}
	return userID
}

// stateRank orders a drop's states so a stale event cannot move one back.
func stateRank(s string) int {
	switch claims.State(s) {
	case claims.Scheduled:
		return 0
	case claims.Open:
		return 1
	case claims.Grace:
		return 2
	}
	return 3
}

func (h *Hub) handle(e microdrop.Event) {
	t := h.topics[e.Channel]
	if t == nil {
		return
	}
	if e.Kind == microdrop.CueStep {
		h.cueStep(t, e)
		return
	}
	if e.Drop == nil {
		// A claim event without the drop's view: count the winner now and
		// read the stock from the claims service when the frame goes out.
		t.mu.Lock()
		if e.Kind == microdrop.Claimed && t.drop != nil && t.drop.ID == e.DropID {
			t.addWinnerLocked(e.Claim, h.opts.MaxWinners)
			t.lastSeq, t.lastAt = e.Seq, e.At
			t.dirty, t.stale = true, true
		}
		t.mu.Unlock()
		return
	}
	var url string
	var qr *QRBits
	if e.Kind == microdrop.DropOpened || e.Kind == microdrop.DropExtended {
		// The event does not carry the claim code; the claims service
		// answers from memory for a live drop.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		d, err := h.src.Drop(ctx, e.DropID)
		cancel()
		if err == nil {
			url = claims.ClaimURL(h.publicURL, d)
			qr, _ = NewQRBits(url)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	same := t.drop != nil && t.drop.ID == e.DropID
	if !same && e.Kind != microdrop.DropOpened && t.drop != nil && stateRank(t.drop.State) < 3 {
		return // an event of an older drop while another is live
	}
	if e.Kind == microdrop.DropOpened || !same {
		t.winners = nil
		t.claimURL, t.qr = "", nil
	}
	v := *e.Drop
	if same && e.Kind != microdrop.DropExtended && e.Kind != microdrop.DropOpened {
		// Events may arrive after a reload that already saw later state.
		v.Remaining = min(v.Remaining, t.drop.Remaining)
		v.Winners = v.Stock - v.Remaining
		if stateRank(t.drop.State) > stateRank(v.State) {
			v.State = t.drop.State
		}
	}
	t.drop = &v
	if url != "" {
		t.claimURL, t.qr = url, qr
	}
	t.lastSeq, t.lastAt = e.Seq, e.At
	switch e.Kind {
	case microdrop.Claimed:
		t.addWinnerLocked(e.Claim, h.opts.MaxWinners)
		t.dirty = true
	case microdrop.DropOpened, microdrop.DropExtended, microdrop.SoldOut, microdrop.DropClosed:
		t.dirty = false
		h.broadcastLocked(t, t.frameLocked(FrameEvent, e.Kind, e.Seq, e.At, h.now(), true))
	}
}

func (t *topic) addWinnerLocked(c *microdrop.ClaimView, max int) {
	if c == nil || c.Outcome != claims.OutcomeWon {
		return
	}
	t.winners = append([]Winner{{Name: displayName(c.Login, c.UserID), Units: 1}}, t.winners...)
	if len(t.winners) > max {
		t.winners = t.winners[:max]
	}
}

// refreshLocked reads the live drop's stock from the claims service (from
// memory for a live drop), unlocking t meanwhile.
func (h *Hub) refreshLocked(t *topic) {
	id := t.drop.ID
	t.stale = false
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	d, err := h.src.Drop(ctx, id)
	cancel()
	t.mu.Lock()
	if err != nil || t.drop == nil || t.drop.ID != id {
		return
	}
	v := *t.drop
	v.Remaining = min(v.Remaining, d.Remaining)
	v.Winners = v.Stock - v.Remaining
	if s := string(d.State); stateRank(s) > stateRank(v.State) {
		v.State = s
	}
	t.drop = &v
}

// frameLocked builds a frame of the topic's state. full adds the claim URL
// and QR code, which stock frames leave out.
func (t *topic) frameLocked(typ string, kind microdrop.Kind, seq uint64, at, now time.Time, full bool) []byte {
	f := Frame{Type: typ, Kind: kind, Seq: seq, Channel: t.channel, AtMS: unixMS(at), ServerMS: unixMS(now),
		Drop: t.drop, Winners: t.winners}
	if full {
		f.ClaimURL, f.QR = t.claimURL, t.qr
	}
	b, _ := json.Marshal(f) // plain structs: cannot fail
	return b
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

// HubStats is a point-in-time view of the hub for the dashboard and tests.
type HubStats struct {
	Clients   int64  `json:"clients"`
	SlowDrops uint64 `json:"slow_drops"`
	Frames    uint64 `json:"frames"`
}

// Stats reports connected clients, clients dropped as too slow, and frames
// broadcast.
func (h *Hub) Stats() HubStats {
	return HubStats{Clients: h.clients.Load(), SlowDrops: h.slowDrops.Load(), Frames: h.frames.Load()}
}

var errTooManyClients = errors.New("too many overlay connections")

// serve runs one upgraded connection until it ends.
func (h *Hub) serve(conn *websocket.Conn, t *topic) {
	c := &client{conn: conn, send: make(chan outMsg, h.opts.SendBuffer), gone: make(chan struct{}), raw: newRawWriter(conn.NetConn())}
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
