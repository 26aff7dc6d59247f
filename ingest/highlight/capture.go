package highlight

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/ingest"
)

// CaptureConfig tunes the rolling buffers and highlight capture.
type CaptureConfig struct {
	// Dir is where clips go: Dir/<session>/<highlight>.mp4.
	Dir string
	// Buffer bounds each stream's ring (defaults 120 s, 256 MB).
	Buffer RingConfig
	// BufferTotal bounds every stream's ring together, in bytes (default
	// 512 MB): past it the oldest group of pictures of any stream goes
	// first.
	BufferTotal int64
	// Channels, when set, are the channels whose streams are buffered: a
	// stream bound to no channel listed here gets no buffer (and no
	// highlights). Nil buffers every stream.
	Channels []string
	// Pre and Post are the window around a moment (defaults 20 s and 40 s).
	// Pre+Post must fit in Buffer.MaxDuration.
	Pre, Post time.Duration
	// SurgePerSec marks a surge when a drop's claims in one second exceed
	// it (default 20; negative turns surges off).
	SurgePerSec float64
	// Stall is how long past a window's end capture waits for a publisher
	// that went quiet before writing what it has (default 2 s).
	Stall time.Duration
	// Recheck is how soon capture looks again at a window whose end has
	// passed but whose last frames have not arrived yet (default 200 ms).
	// Streams themselves are followed through ingest's StreamHook, and
	// capture sleeps while no window is pending.
	Recheck time.Duration
	// ClipPoll and ClipTimeout pace ClipMaker polling. Twitch documents
	// that a clip not listed by Get Clips 15 s after Create Clip failed.
	ClipPoll, ClipTimeout time.Duration
}

func (c CaptureConfig) withDefaults() CaptureConfig {
	if c.Buffer.MaxDuration <= 0 {
		c.Buffer.MaxDuration = 120 * time.Second
	}
	if c.Buffer.MaxBytes <= 0 {
		c.Buffer.MaxBytes = 256 << 20
	}
	if c.BufferTotal <= 0 {
		c.BufferTotal = 512 << 20
	}
	if c.Pre == 0 {
		c.Pre = 20 * time.Second
	}
	if c.Post == 0 {
		c.Post = 40 * time.Second
	}
	if c.SurgePerSec == 0 {
		c.SurgePerSec = 20
	}
	if c.Stall <= 0 {
		c.Stall = 2 * time.Second
	}
	if c.Recheck <= 0 {
		c.Recheck = 200 * time.Millisecond
	}
	if c.ClipPoll <= 0 {
		c.ClipPoll = time.Second
	}
	if c.ClipTimeout <= 0 {
		c.ClipTimeout = 15 * time.Second
	}
	return c
}

// Validate reports the first problem in c (after defaults).
func (c CaptureConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: highlights need a directory", ErrInvalidConfig)
	case c.Pre < 0 || c.Post <= 0:
		return fmt.Errorf("%w: highlight pre must be >= 0 and post > 0", ErrInvalidConfig)
	case c.Pre+c.Post > c.Buffer.MaxDuration:
		return fmt.Errorf("%w: highlight pre+post (%s) must fit in the %s buffer", ErrInvalidConfig, c.Pre+c.Post, c.Buffer.MaxDuration)
	}
	return nil
}

// streamSource is what capture needs of the ingest server: to be told
// about streams as they are published and unpublished.
type streamSource interface {
	Hook(h ingest.StreamHook) (remove func())
}

// CaptureDeps is what a Capturer needs from its caller.
type CaptureDeps struct {
	Logger  *slog.Logger
	Bus     microdrop.Bus
	Streams streamSource // usually the *Server
	Store   CaptureStore
	// Clips, when set, also makes a platform clip of each moment.
	Clips ClipMaker
	// Stills decodes each drop's evidence still into a JPEG (the
	// Verticalizer, when ffmpeg is there); nil keeps the keyframe as a
	// one-frame MP4.
	Stills stillDecoder
	Now    func() time.Time
	Config CaptureConfig
}

// Capturer keeps a rolling buffer per stream path and, on drop moments
// from the bus, writes the window around each as an MP4 highlight.
type Capturer struct {
	log    *slog.Logger
	bus    microdrop.Bus
	src    streamSource
	store  CaptureStore
	clips  ClipMaker
	stills stillDecoder
	now    func() time.Time
	cfg    CaptureConfig

	budget *Budget // every ring's, together
	bound  map[string]bool

	mu      sync.Mutex
	paths   map[string]*pathBuffer
	pending []*pendingClip
	// waiting are drop opens whose still waits for the first keyframe
	// after the open.
	waiting []pendingStill
	// saves are session changes the hook saw, stored in order by the run
	// goroutine: the hook runs on a publisher's goroutine and must not
	// wait for the database.
	saves []Session
	// wake tells the run goroutine that saves or pending changed.
	wake chan struct{}

	surges map[string]*surge

	unhook  func()
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
}

// pathBuffer is one path's ring and session, which outlive a publisher
// that drops and comes back.
type pathBuffer struct {
	path    string
	session Session
	ring    *Ring
	stream  *ingest.Stream
	reader  *ingest.Reader
	audioCh int
	gone    time.Time // when the last publisher left; zero while live
}

type pendingClip struct {
	h        Highlight
	buf      *pathBuffer
	from, to time.Time
}

type surge struct {
	times []time.Time // recent claim times, oldest first
	last  time.Time
}

// NewCapturer checks the config; Start begins capturing.
func NewCapturer(d CaptureDeps) (*Capturer, error) {
	cfg := d.Config.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Bus == nil || d.Streams == nil || d.Store == nil {
		return nil, fmt.Errorf("%w: capture needs a bus, a stream source and a store", ErrInvalidConfig)
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	var bound map[string]bool
	if cfg.Channels != nil {
		bound = make(map[string]bool, len(cfg.Channels))
		for _, ch := range cfg.Channels {
			bound[ch] = true
		}
	}
	return &Capturer{
		log: d.Logger.With("component", "highlights"), bus: d.Bus, src: d.Streams, store: d.Store,
		clips: d.Clips, stills: d.Stills, now: d.Now, cfg: cfg, budget: NewBudget(cfg.BufferTotal), bound: bound,
		paths: make(map[string]*pathBuffer), surges: make(map[string]*surge), wake: make(chan struct{}, 1),
	}, nil
}

// Start subscribes to the bus and begins following streams.
func (c *Capturer) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("highlights: already started")
	}
	c.started = true
	c.mu.Unlock()
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("highlights dir: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	// Opens, sell-outs, closes, marks and aired cues are never dropped;
	// claims (for surges) may be shed in a burst, missing a surge at worst.
	sub := c.bus.Subscribe(4096, microdrop.DropOpened, microdrop.SoldOut, microdrop.DropClosed, microdrop.HighlightMarked, microdrop.CueAired, microdrop.Claimed)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer sub.Close()
		c.run(ctx, sub)
	}()
	// Hook reports the live streams at once, through the hook, which
	// takes c.mu: so not under it.
	unhook := c.src.Hook(streamHook{c})
	c.mu.Lock()
	c.cancel, c.unhook = cancel, unhook
	c.mu.Unlock()
	return nil
}

// Close stops following streams and waits for clips being written. Clips
// whose window has not ended are written with what is buffered.
func (c *Capturer) Close() error {
	c.mu.Lock()
	unhook, cancel := c.unhook, c.cancel
	c.mu.Unlock()
	if unhook != nil {
		unhook()
	}
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.paths {
		if b.reader != nil {
			b.reader.Close()
			b.reader = nil
		}
	}
	return nil
}

// Sessions lists the sessions capture currently buffers.
func (c *Capturer) Sessions() []Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Session, 0, len(c.paths))
	for _, b := range c.paths {
		out = append(out, b.session)
	}
	return out
}

// BufferStats reports every stream's ring together.
func (c *Capturer) BufferStats() BudgetStats { return c.budget.Stats() }

// RingStats reports the ring of a path.
func (c *Capturer) RingStats(path string) (RingStats, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.paths[path]
	if !ok {
		return RingStats{}, false
	}
	return b.ring.Stats(), true
}

func (c *Capturer) run(ctx context.Context, sub *microdrop.Subscription) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			c.saveSessions(context.Background())
			c.flush(true)
			return
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			c.onEvent(ctx, e)
		case <-c.wake:
		case <-timer.C:
		}
		c.saveSessions(ctx)
		next := c.flush(false)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

func (c *Capturer) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// streamHook is how ingest tells capture about streams; its methods run on
// the publisher's goroutine and only touch memory.
type streamHook struct{ c *Capturer }

var _ ingest.StreamHook = streamHook{}

// StreamPublished starts a session for the path, or resumes the one whose
// publisher dropped while its buffer still holds data, and feeds the
// stream into the path's ring.
func (h streamHook) StreamPublished(st *ingest.Stream) {
	c := h.c
	if c.bound != nil && !c.bound[st.Channel()] {
		// Nothing opens drops on it: no buffer, no highlights.
		c.log.Info("stream bound to no channel of this server: no highlight buffer (bind it under channels.<name>.streams)",
			"path", st.Path(), "channel", st.Channel())
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.signal()
	b := c.paths[st.Path()]
	if b != nil && b.stream == st {
		return
	}
	if b != nil && b.reader != nil {
		// A new publisher replaced one whose leaving was not reported.
		b.reader.Close()
		b.stream, b.reader = nil, nil
	}
	if b == nil || (!b.gone.IsZero() && now.Sub(b.ring.Newest()) > c.cfg.Buffer.MaxDuration) {
		if b != nil {
			b.ring.release() // the old session's buffer, too old to resume
		}
		b = &pathBuffer{path: st.Path(), ring: newRingIn(c.cfg.Buffer, c.budget),
			session: Session{ID: SessionID(st.Path(), now), Path: st.Path(), Channel: st.Channel(), StartedAt: now}}
		c.paths[st.Path()] = b
		c.log.Info("highlight session started", "session", b.session.ID, "channel", b.session.Channel)
	} else {
		c.log.Info("publisher back, session resumes", "session", b.session.ID)
	}
	feed := newRingFeed(st, b.ring, b.session.StartedAt, c.log.With("session", b.session.ID))
	if feed == nil {
		c.log.Warn("stream has no H.264 video; no highlights for it", "path", st.Path())
		b.stream = st
		b.gone = time.Time{}
		return
	}
	r, err := st.AddReader("highlights", 4096, feed.onPacket)
	if err != nil {
		return // already closed: its unpublish follows
	}
	b.stream, b.reader, b.audioCh, b.gone = st, r, feed.audioChannels, time.Time{}
	b.session.EndedAt = time.Time{}
	c.saves = append(c.saves, b.session)
}

// StreamUnpublished ends the path's session; its buffer is kept for a
// publisher that comes back, and freed by flush once it is too old.
func (h streamHook) StreamUnpublished(st *ingest.Stream) {
	c := h.c
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.signal()
	b := c.paths[st.Path()]
	if b == nil || b.stream != st {
		return
	}
	if b.reader != nil {
		b.reader.Close()
	}
	b.stream, b.reader, b.gone = nil, nil, now
	b.session.EndedAt = now
	c.saves = append(c.saves, b.session)
}

// saveSessions stores the session changes the hook queued, in order.
func (c *Capturer) saveSessions(ctx context.Context) {
	c.mu.Lock()
	saves := c.saves
	c.saves = nil
	c.mu.Unlock()
	for _, s := range saves {
		if err := c.store.SaveSession(ctx, s); err != nil {
			c.log.Warn("save session", "session", s.ID, "err", err)
		}
	}
}

func (c *Capturer) awaitsStill(b *pathBuffer) bool {
	for _, p := range c.waiting {
		if p.buf == b {
			return true
		}
	}
	return false
}

func (c *Capturer) hasPending(b *pathBuffer) bool {
	for _, p := range c.pending {
		if p.buf == b {
			return true
		}
	}
	return false
}

func (c *Capturer) onEvent(ctx context.Context, e microdrop.Event) {
	var reason, label, by string
	switch e.Kind {
	case microdrop.DropOpened:
		reason = ReasonOpen
		c.awaitStill(e)
	case microdrop.SoldOut:
		reason = ReasonSoldOut
		c.forgetSurge(e.DropID)
	case microdrop.DropClosed:
		reason = ReasonClose
		c.forgetSurge(e.DropID)
	case microdrop.HighlightMarked:
		reason = ReasonClip
		if e.Highlight != nil {
			if e.Highlight.Reason != "" {
				reason = e.Highlight.Reason
			}
			label, by = e.Highlight.Label, e.Highlight.By
		}
	case microdrop.Claimed:
		if !c.surgeAt(e) {
			return
		}
		reason = ReasonSurge
	case microdrop.CueAired:
		if e.Cue == nil {
			return
		}
		err := c.store.SaveCue(ctx, CueRecord{Channel: e.Channel, DropID: e.DropID, Stream: e.Cue.Stream, Code: e.Cue.Code,
			DelayMS: e.Cue.DelayMS, SNRDB: e.Cue.SNRDB, HeardAt: time.UnixMilli(e.Cue.HeardAtMS), At: e.At})
		if err != nil {
			c.log.Warn("save aired cue", "drop", e.DropID, "err", err)
		}
		return
	default:
		return
	}
	at := e.At
	if at.IsZero() {
		at = c.now()
	}
	if _, err := c.Mark(ctx, e.Channel, e.DropID, reason, label, by, at); err != nil {
		c.log.Info("highlight not captured", "channel", e.Channel, "reason", reason, "err", err)
	}
}

// awaitStill asks for the still of a drop's open on every stream of its
// channel.
func (c *Capturer) awaitStill(e microdrop.Event) {
	if e.DropID == "" {
		return
	}
	at := e.At
	if at.IsZero() {
		at = c.now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.paths {
		if b.session.Channel == e.Channel && b.stream != nil {
			c.waiting = append(c.waiting, pendingStill{dropID: e.DropID, buf: b, at: at})
		}
	}
}

// surgeAt counts a claim and reports whether its drop's claims in the last
// second now exceed the threshold, at most once per post-roll.
func (c *Capturer) surgeAt(e microdrop.Event) bool {
	if c.cfg.SurgePerSec < 0 || e.DropID == "" {
		return false
	}
	s := c.surges[e.DropID]
	if s == nil {
		if len(c.surges) >= 1024 {
			return false
		}
		s = &surge{}
		c.surges[e.DropID] = s
	}
	keep := int(math.Floor(c.cfg.SurgePerSec)) + 1
	s.times = append(s.times, e.At)
	cut := 0
	for cut < len(s.times) && e.At.Sub(s.times[cut]) >= time.Second {
		cut++
	}
	if over := len(s.times) - cut - keep; over > 0 {
		cut += over
	}
	s.times = append(s.times[:0], s.times[cut:]...)
	if float64(len(s.times)) <= c.cfg.SurgePerSec {
		return false
	}
	if !s.last.IsZero() && e.At.Sub(s.last) < c.cfg.Post {
		return false
	}
	s.last = e.At
	return true
}

func (c *Capturer) forgetSurge(dropID string) { delete(c.surges, dropID) }

// Mark captures [at-Pre, at+Post] of every stream bound to channel. A
// moment whose window overlaps a clip still being captured on that stream
// joins it instead (the clip grows to cover both and lists both in
// Moments), so moments seconds apart never become copies of the same
// seconds. It returns the highlights the moment is in; the clips are
// written once the window has passed (or the publisher stalls).
// ErrNotBuffered when no stream of the channel is buffered.
func (c *Capturer) Mark(ctx context.Context, channel, dropID, reason, label, by string, at time.Time) ([]Highlight, error) {
	m := Moment{Reason: reason, DropID: dropID, Label: label, By: by, At: at}
	c.mu.Lock()
	var started []*pendingClip
	var joined []Highlight
	for _, b := range c.paths {
		if b.session.Channel != channel {
			continue
		}
		if b.stream == nil && at.Sub(b.ring.Newest()) > c.cfg.Pre {
			continue // publisher gone and nothing of the window buffered
		}
		if p := c.overlapping(b, at); p != nil {
			// One clip for both moments rather than two files of mostly
			// the same seconds. The written state saves the moments.
			p.to = maxTime(p.to, at.Add(c.cfg.Post))
			p.h.Asked = p.to.Sub(p.from)
			p.h.Moments = append(p.h.Moments, m)
			h := p.h
			h.Moments = append([]Moment(nil), p.h.Moments...)
			joined = append(joined, h)
			c.log.Info("moment joins a highlight being captured", "highlight", h.ID, "reason", reason, "drop", dropID)
			continue
		}
		p := &pendingClip{buf: b, from: at.Add(-c.cfg.Pre), to: at.Add(c.cfg.Post), h: Highlight{
			ID: newHighlightID(), SessionID: b.session.ID, Channel: channel, Path: b.path,
			DropID: dropID, Reason: reason, Label: label, By: by, State: HighlightCapturing,
			At: at, StreamTime: at.Sub(b.session.StartedAt), Asked: c.cfg.Pre + c.cfg.Post, CreatedAt: c.now(),
			Moments: []Moment{m},
		}}
		started = append(started, p)
	}
	c.mu.Unlock()
	if len(started) == 0 && len(joined) == 0 {
		return nil, fmt.Errorf("%w: no stream of channel %q", ErrNotBuffered, channel)
	}
	out := make([]Highlight, 0, len(started)+len(joined))
	out = append(out, joined...)
	for _, p := range started {
		// Recorded as capturing before it can be written, so the written
		// state is never overwritten by this one.
		if err := c.store.SaveHighlight(ctx, p.h); err != nil {
			c.log.Warn("save highlight", "highlight", p.h.ID, "err", err)
		}
		c.mu.Lock()
		c.pending = append(c.pending, p)
		c.mu.Unlock()
		c.signal()
		c.log.Info("highlight marked", "highlight", p.h.ID, "session", p.h.SessionID, "reason", reason, "drop", dropID)
		out = append(out, p.h)
		if c.clips != nil {
			c.wg.Add(1)
			go func(id string) {
				defer c.wg.Done()
				c.platformClip(id, channel)
			}(p.h.ID)
		}
	}
	return out, nil
}

// overlapping returns the clip still being captured on b whose window the
// moment at would overlap, when one clip can hold both within the buffer.
func (c *Capturer) overlapping(b *pathBuffer, at time.Time) *pendingClip {
	for _, p := range c.pending {
		if p.buf != b || !at.Add(-c.cfg.Pre).Before(p.to) || at.Before(p.from) {
			continue
		}
		if maxTime(p.to, at.Add(c.cfg.Post)).Sub(p.from) > c.cfg.Buffer.MaxDuration {
			continue
		}
		return p
	}
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// idle is how long capture sleeps with nothing pending; anything that
// changes that wakes it sooner.
const idle = time.Hour

// flush writes the clips whose window has passed (all of them when final),
// frees the buffers of sessions that ended long enough ago, and says when
// to look again.
func (c *Capturer) flush(final bool) time.Duration {
	now := c.now()
	next := idle
	soon := func(d time.Duration) {
		next = min(next, max(d, 10*time.Millisecond))
	}
	c.mu.Lock()
	var due []*pendingClip
	rest := c.pending[:0]
	for _, p := range c.pending {
		switch {
		case final || p.buf.ring.reached(p.to.Sub(p.buf.session.StartedAt)) || now.Sub(p.to) >= c.cfg.Stall:
			due = append(due, p)
		case now.Before(p.to):
			rest = append(rest, p)
			soon(p.to.Sub(now))
		default:
			rest = append(rest, p)
			soon(min(c.cfg.Recheck, p.to.Add(c.cfg.Stall).Sub(now)))
		}
	}
	for i := len(rest); i < len(c.pending); i++ {
		c.pending[i] = nil
	}
	c.pending = rest
	type dueStill struct {
		p pendingStill
		u accessUnit
	}
	var stills []dueStill
	wait := c.waiting[:0]
	for _, p := range c.waiting {
		u, ok := p.buf.ring.keyframeAt(p.at.Sub(p.buf.session.StartedAt))
		switch {
		case ok:
			stills = append(stills, dueStill{p, u})
		case final || now.Sub(p.at) >= c.cfg.Stall:
			c.log.Warn("no keyframe after the drop's open; no still", "drop", p.dropID, "path", p.buf.path)
		default:
			wait = append(wait, p)
			soon(c.cfg.Recheck)
		}
	}
	for i := len(wait); i < len(c.waiting); i++ {
		c.waiting[i] = pendingStill{}
	}
	c.waiting = wait
	for path, b := range c.paths {
		if b.stream != nil || b.gone.IsZero() {
			continue
		}
		if c.hasPending(b) || c.awaitsStill(b) {
			continue // its clip wakes us, and then frees it
		}
		if left := c.cfg.Buffer.MaxDuration - now.Sub(b.gone); left > 0 {
			soon(left)
			continue
		}
		delete(c.paths, path)
		b.ring.release()
	}
	c.mu.Unlock()
	for _, s := range stills {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := c.writeStill(context.Background(), s.p, s.u); err != nil {
				c.log.Warn("drop still not written", "drop", s.p.dropID, "err", err)
				return
			}
			c.log.Info("drop still written", "drop", s.p.dropID, "path", s.p.buf.path, "stream_time", s.u.dts)
		}()
	}
	for _, p := range due {
		start := p.buf.session.StartedAt
		units := p.buf.ring.window(p.from.Sub(start), p.to.Sub(start))
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.write(p, units)
		}()
	}
	return next
}

// write turns a window into an MP4 file and records it.
func (c *Capturer) write(p *pendingClip, units []accessUnit) {
	ctx := context.Background()
	h := p.h
	if err := c.writeFile(&h, units, p.buf.audioCh); err != nil {
		h.State, h.Error = HighlightFailed, err.Error()
		c.log.Warn("highlight not written", "highlight", h.ID, "err", err)
	} else {
		h.State = HighlightReady
		c.log.Info("highlight written", "highlight", h.ID, "file", h.File, "duration", h.Duration)
	}
	if err := c.store.SaveHighlight(ctx, h); err != nil {
		c.log.Warn("save highlight", "highlight", h.ID, "err", err)
	}
}

func (c *Capturer) writeFile(h *Highlight, units []accessUnit, audioCh int) error {
	if len(units) == 0 {
		return ErrNotBuffered
	}
	if err := CheckSessionID(h.SessionID); err != nil {
		return err
	}
	dir := filepath.Join(c.cfg.Dir, h.SessionID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, h.ID+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	sum := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, sum)}
	info, err := writeClipMP4(cw, units, audioCh)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	name := h.ID + ".mp4"
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	h.File = h.SessionID + "/" + name
	h.Bytes = cw.n
	h.SHA256 = hex.EncodeToString(sum.Sum(nil))
	h.Start, h.Duration = info.start, info.duration
	return nil
}

// platformClip asks the ClipMaker for a clip and polls until it is listed
// or ClipTimeout passes (Twitch: assume failure after 15 s).
func (c *Capturer) platformClip(highlightID, channel string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ClipTimeout+10*time.Second)
	defer cancel()
	id, err := c.clips.CreateClip(ctx, channel)
	if err != nil {
		c.log.Info("platform clip not created", "highlight", highlightID, "err", err)
		return
	}
	deadline := time.NewTimer(c.cfg.ClipTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(c.cfg.ClipPoll)
	defer poll.Stop()
	for {
		select {
		case <-deadline.C:
			c.log.Info("platform clip not listed in time; assuming it failed", "highlight", highlightID, "clip", id)
			return
		case <-poll.C:
			url, found, err := c.clips.ClipURL(ctx, id)
			if err != nil {
				c.log.Debug("platform clip poll", "clip", id, "err", err)
				continue
			}
			if !found {
				continue
			}
			if err := c.store.SetTwitchClip(ctx, highlightID, id, url); err != nil {
				c.log.Warn("save platform clip", "highlight", highlightID, "err", err)
			}
			return
		}
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (w *countWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, err
}

func newHighlightID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "h" + hex.EncodeToString(b[:])
}
