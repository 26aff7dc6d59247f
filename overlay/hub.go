package overlay

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

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

// dropSource is what the hub reads of the claims service: a channel's
// current drop, to build a snapshot at start and after the hub fell
// behind the bus. Events carry everything else the overlay shows.
type dropSource interface {
	Current(ctx context.Context, channel string) (*claims.Drop, error)
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
	partial   atomic.Uint64 // frames a goroutine waited for the socket to take

	// wpool shares write buffers between connections: frames are written
	// without one, so few connections ever hold one.
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
	lastSeq  uint64
	lastAt   time.Time
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
	// Opens, extensions, sell-outs, closes and a listen drop's cue steps
	// are never dropped by the bus; claims may be, in a burst, which run
	// resyncs from a snapshot.
	h.sub = bus.Subscribe(h.opts.BusBuffer, microdrop.DropOpened, microdrop.DropExtended, microdrop.SoldOut, microdrop.DropClosed, microdrop.Claimed, microdrop.CueStep,
		// An unpaid or released hold puts its unit back in play.
		microdrop.HoldExpired, microdrop.HoldReleased)
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
		deadline := time.Now().Add(time.Second)
		for _, t := range h.topics {
			goAway(t, deadline)
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
				// The bus shed claims on us: the stock and winners may be
				// stale. Reload every channel and resync every client.
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
	link := claims.ClaimURL(h.publicURL, d)
	qr, err := NewQRBits(link)
	if err != nil {
		h.log.Warn("qr", "err", err)
	}
	t.mu.Lock()
	t.drop, t.claimURL, t.qr, t.winners, t.dirty = d.View(), link, qr, winners, false
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
	if e.Kind == microdrop.HoldExpired || e.Kind == microdrop.HoldReleased {
		h.backInPlay(t, e)
		return
	}
	if e.Kind == microdrop.CueStep {
		h.cueStep(t, e)
		return
	}
	if e.Drop == nil {
		// A claim event carries the stock after its win, not the drop.
		t.mu.Lock()
		if e.Kind == microdrop.Claimed && t.drop != nil && t.drop.ID == e.DropID {
			if t.addWinnerLocked(e.Claim, h.opts.MaxWinners) && e.Claim.Remaining < t.drop.Remaining {
				t.drop.Remaining = e.Claim.Remaining
				t.drop.Winners = t.drop.Stock - t.drop.Remaining
			}
			t.lastSeq, t.lastAt = e.Seq, e.At
			t.dirty = true
		}
		t.mu.Unlock()
		return
	}
	var link string
	var qr *QRBits
	if e.Kind == microdrop.DropOpened || e.Kind == microdrop.DropExtended {
		// The QR code is built here, outside the topic's lock, from what
		// the event carries (the claim code among it).
		link = claimURL(h.publicURL, e.Drop)
		qr, _ = NewQRBits(link)
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
	if link != "" {
		t.claimURL, t.qr = link, qr
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

// backInPlay tells the stream that an unpaid or released unit of the drop
// on its card passed to the next viewer in line: a short-lived line, sent
// at once like the drop's own events.
func (h *Hub) backInPlay(t *topic, e microdrop.Event) {
	if e.Hold == nil || e.Hold.PassedTo == "" {
		return // nobody was waiting: the unit stays unsold, nothing to tell
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.drop == nil || t.drop.ID != e.DropID {
		return // not the drop on the card
	}
	note := "A unit is back in play: the next viewer in line gets it"
	t.lastSeq, t.lastAt = e.Seq, e.At
	f := Frame{Type: FrameEvent, Kind: e.Kind, Seq: e.Seq, Channel: t.channel, AtMS: unixMS(e.At), ServerMS: unixMS(h.now()),
		Drop: t.drop, Winners: t.winners, ClaimURL: t.claimURL, QR: t.qr, Note: note}
	b, _ := json.Marshal(f) // plain structs: cannot fail
	h.broadcastLocked(t, b)
}

// addWinnerLocked lists c's viewer among the recent winners if c is a
// win, and reports whether it was.
func (t *topic) addWinnerLocked(c *microdrop.ClaimView, max int) bool {
	if c == nil || c.Outcome != claims.OutcomeWon {
		return false
	}
	t.winners = append([]Winner{{Name: displayName(c.Login, c.UserID), Units: 1}}, t.winners...)
	if len(t.winners) > max {
		t.winners = t.winners[:max]
	}
	return true
}

// claimURL is the claim page of v, with its claim code when it has one:
// the same URL as claims.ClaimURL, built from the event alone.
func claimURL(base string, v *microdrop.DropView) string {
	u := base + "/c/" + v.ID
	if v.ClaimCode != "" {
		u += "?code=" + url.QueryEscape(v.ClaimCode)
	}
	return u
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
