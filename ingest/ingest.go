package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"

	"github.com/microdrop/microdrop"
)

// Sentinel errors. Callers match them with errors.Is; the HTTP and RTSP
// edges map them to status codes.
var (
	// ErrPathBusy means a stream path already has a publisher.
	ErrPathBusy = errors.New("stream path already has a publisher")
	// ErrNoStream means nobody publishes on the path.
	ErrNoStream = errors.New("no stream on this path")
	// ErrBadPath means a stream path is empty or malformed.
	ErrBadPath = errors.New("invalid stream path")
	// ErrBadSDP means an SDP offer could not be used.
	ErrBadSDP = errors.New("invalid SDP offer")
	// ErrUnauthorized means a missing or wrong bearer token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrClosed means the server or stream is closed.
	ErrClosed = errors.New("closed")
	// ErrInvalidConfig means Config failed validation.
	ErrInvalidConfig = errors.New("invalid ingest config")
)

// Config is the ingest part of microdrop's configuration.
type Config struct {
	// RTSPAddress is where the RTSP server listens (":8554"); "" turns RTSP off.
	RTSPAddress string
	// UDPRTPAddress and UDPRTCPAddress enable RTSP over UDP (":8000", ":8001");
	// both "" means TCP only. The RTP port must be even and RTCP = RTP+1.
	UDPRTPAddress, UDPRTCPAddress string
	// WHIPToken, when set, is the bearer token WHIP publishers must present.
	WHIPToken string
	// Paths binds stream paths to chat channels. A path with no entry binds to
	// the channel named like the path.
	Paths map[string]string
	// Pull maps a stream path to an rtsp:// source that the server reads and
	// republishes, reconnecting with backoff.
	Pull map[string]string
	// PlaybackURL maps a stream path to the URL viewers watch (an HLS or RTMP
	// playback of the program); when set, ffmpeg reads it and the cue detector
	// confirms cues there too.
	PlaybackURL map[string]string
	// CueProfile is "audible" (default) or "ultrasonic".
	CueProfile string
	// CueLevelDB scales the cue relative to cue.Encode's output, which peaks
	// at -1 dBFS; 0 means the default, -12.
	CueLevelDB float64
	// MaxReaderQueue bounds each reader's queue in packets (default 512).
	// A reader that falls this far behind loses packets, never the publisher.
	MaxReaderQueue int
	// WebRTCLoopbackOnly restricts WebRTC ICE candidates to loopback; for
	// tests and single-machine setups.
	WebRTCLoopbackOnly bool
	// RTSPPublishUser and RTSPPublishPass are the credentials ANNOUNCE must
	// carry (rtsp://user:pass@host:8554/path). When empty and WHIPToken is
	// set, the publisher's password is the WHIP token (any user name). With
	// neither, RTSP publishing is open: serve always sets one.
	RTSPPublishUser, RTSPPublishPass string
	// RTSPReadUser and RTSPReadPass, when set, protect DESCRIBE/PLAY; the
	// publish credentials read too.
	RTSPReadUser, RTSPReadPass string
	// WHIPConnectTimeout frees the path of a WHIP offer whose peer never
	// connects (5 s when zero): an unanswered offer cannot squat a path.
	WHIPConnectTimeout time.Duration
}

// withDefaults fills zero values.
func (c Config) withDefaults() Config {
	if c.CueProfile == "" {
		c.CueProfile = "audible"
	}
	if c.CueLevelDB == 0 {
		c.CueLevelDB = -12
	}
	if c.WHIPConnectTimeout <= 0 {
		c.WHIPConnectTimeout = 5 * time.Second
	}
	if c.MaxReaderQueue <= 0 {
		c.MaxReaderQueue = 512
	}
	return c
}

// Validate reports the first problem in c.
func (c Config) Validate() error {
	if (c.UDPRTPAddress == "") != (c.UDPRTCPAddress == "") {
		return fmt.Errorf("%w: UDP RTP and RTCP addresses must be set together", ErrInvalidConfig)
	}
	if c.UDPRTPAddress != "" && c.RTSPAddress == "" {
		return fmt.Errorf("%w: UDP addresses need an RTSP address", ErrInvalidConfig)
	}
	if _, err := cueProfile(c.CueProfile); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.CueLevelDB > 0 {
		return fmt.Errorf("%w: cue level %.1f dB would amplify the cue past full scale", ErrInvalidConfig, c.CueLevelDB)
	}
	for p, u := range c.Pull {
		if err := checkPath(p); err != nil {
			return fmt.Errorf("%w: pull path %q: %w", ErrInvalidConfig, p, err)
		}
		if len(u) < 7 || (u[:7] != "rtsp://" && (len(u) < 8 || u[:8] != "rtsps://")) {
			return fmt.Errorf("%w: pull source for %q must be an rtsp:// URL", ErrInvalidConfig, p)
		}
	}
	return nil
}

// Deps is what the ingest server needs from its caller.
type Deps struct {
	Logger *slog.Logger
	Bus    microdrop.Bus
	Now    func() time.Time
	Config Config
}

// Server owns the stream registry and every protocol edge of the media path.
type Server struct {
	log *slog.Logger
	bus microdrop.Bus
	now func() time.Time
	// clockInjected is set when Deps.Now replaces time.Now: packets are
	// then stamped with it rather than with their socket read time.
	clockInjected bool
	cfg           Config

	rtsp     *gortsplib.Server
	rtspLn   net.Listener
	rtspH    *rtspHandler
	webrtc   *webrtcEdge
	cues     *cueBook
	confirms *confirmer

	mu      sync.Mutex
	streams map[string]*Stream
	closed  bool

	// hookMu orders hook calls: it is held from a registry change to the
	// end of the calls that report it, so every hook sees one stream's
	// publish before its unpublish, and a hook added while streams come
	// and go misses none of them.
	hookMu sync.Mutex
	hooks  []*hookEntry

	dropped atomic.Uint64 // packets dropped for readers gortsplib serves

	started atomic.Bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New checks the config and builds a server; Start brings it up.
func New(deps Deps) (*Server, error) {
	cfg := deps.Config.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Bus == nil {
		return nil, fmt.Errorf("%w: a bus is required", ErrInvalidConfig)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	prof, _ := cueProfile(cfg.CueProfile)
	s := &Server{
		log:           log.With("component", "ingest"),
		bus:           deps.Bus,
		now:           now,
		clockInjected: deps.Now != nil,
		cfg:           cfg,
		streams:       make(map[string]*Stream),
	}
	s.cues = newCueBook(prof, cfg.CueLevelDB)
	s.confirms = newConfirmer(s, prof)
	s.webrtc = newWebRTCEdge(s)
	return s, nil
}

// Start brings up RTSP, pull clients and the bus subscription. It returns
// once listeners are bound; the work continues until ctx ends or Close.
func (s *Server) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return fmt.Errorf("ingest: already started")
	}
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel

	if s.cfg.RTSPAddress != "" {
		if err := s.startRTSP(); err != nil {
			cancel()
			return err
		}
	}

	// Only opens and a listen drop's cue steps, which the bus never drops:
	// every drop gets its cue, and every step its code.
	sub := s.bus.Subscribe(256, microdrop.DropOpened, microdrop.CueStep)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer sub.Close()
		s.runBus(ctx, sub)
	}()

	paths := make([]string, 0, len(s.cfg.Pull))
	for p := range s.cfg.Pull {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		pc := &puller{s: s, path: p, url: s.cfg.Pull[p]}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			pc.run(ctx)
		}()
	}
	s.confirms.startPlayback(ctx, &s.wg)

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		s.shutdown()
	}()
	return nil
}

// Close stops everything Start began and waits for it. Safe to call twice.
func (s *Server) Close() error {
	if s.cancel != nil {
		s.cancel()
	} else {
		s.shutdown()
	}
	s.wg.Wait()
	return nil
}

func (s *Server) shutdown() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	streams := make([]*Stream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()

	s.webrtc.closeAll()
	for _, st := range streams {
		st.Close()
	}
	if s.rtsp != nil {
		s.rtsp.Close()
	}
}

// RTSPAddr is the bound RTSP address (useful with port 0); nil when RTSP is off.
func (s *Server) RTSPAddr() net.Addr {
	if s.rtspLn == nil {
		return nil
	}
	return s.rtspLn.Addr()
}

// Handler serves WHIP (POST /whip/{path}, DELETE of the returned resource)
// and WHEP (POST /whep/{path}, DELETE of the resource).
func (s *Server) Handler() http.Handler { return s.webrtc.handler() }

// Streams returns the live streams, sorted by path.
func (s *Server) Streams() []*Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Stream, 0, len(s.streams))
	for _, st := range s.streams {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// Stream returns the live stream on path.
func (s *Server) Stream(path string) (*Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[path]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoStream, path)
	}
	return st, nil
}

// Stats is a snapshot for /metrics and loadgen.
type Stats struct {
	Streams        int
	Readers        int
	DroppedPackets uint64
}

// Stats sums over live streams plus what closed ones and RTSP sessions dropped.
func (s *Server) Stats() Stats {
	st := Stats{DroppedPackets: s.dropped.Load()}
	for _, x := range s.Streams() {
		st.Streams++
		st.Readers += x.ReaderCount()
		st.DroppedPackets += x.Dropped()
	}
	return st
}

// channelFor binds a path to its chat channel.
func (s *Server) channelFor(path string) string {
	if ch, ok := s.cfg.Paths[path]; ok && ch != "" {
		return ch
	}
	return path
}

// StreamHook is told about streams as they come and go, so a consumer
// such as highlight capture follows every stream without polling the
// registry. Packets reach it through Stream.AddReader, which
// StreamPublished may call.
//
// Both methods run on the goroutine that changed the registry (usually a
// publisher's), one call at a time across all hooks: they must return
// quickly, hand anything slow (disk, database) to their own goroutine, and
// never close a stream or add or remove a hook.
type StreamHook interface {
	// StreamPublished reports a stream that now owns its path, before its
	// first packet is relayed.
	StreamPublished(st *Stream)
	// StreamUnpublished reports a stream that left its path. Its readers
	// end on their own; the stream is already closed, or about to be.
	StreamUnpublished(st *Stream)
}

type hookEntry struct{ h StreamHook }

// Hook registers h: StreamPublished is called at once for every live
// stream, then h hears of every stream published or unpublished until the
// returned function is called (which waits for a call in progress).
func (s *Server) Hook(h StreamHook) (remove func()) {
	e := &hookEntry{h: h}
	s.hookMu.Lock()
	live := s.Streams()
	s.hooks = append(s.hooks, e)
	for _, st := range live {
		h.StreamPublished(st)
	}
	s.hookMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.hookMu.Lock()
			defer s.hookMu.Unlock()
			kept := s.hooks[:0:0]
			for _, x := range s.hooks {
				if x != e {
					kept = append(kept, x)
				}
			}
			s.hooks = kept
		})
	}
}

// register adds a stream under its path (the path must be free) and tells
// the hooks.
func (s *Server) register(st *Stream) error {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if _, ok := s.streams[st.path]; ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrPathBusy, st.path)
	}
	s.streams[st.path] = st
	s.mu.Unlock()
	for _, e := range s.hooks {
		e.h.StreamPublished(st)
	}
	return nil
}

// unregister removes st if it still owns its path and tells the hooks;
// closed streams' drop counts survive in the server total.
func (s *Server) unregister(st *Stream) {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	s.mu.Lock()
	owned := s.streams[st.path] == st
	if owned {
		delete(s.streams, st.path)
		s.dropped.Add(st.Dropped())
	}
	s.mu.Unlock()
	if !owned {
		return
	}
	for _, e := range s.hooks {
		e.h.StreamUnpublished(st)
	}
}

func checkPath(p string) error {
	if p == "" || len(p) > 200 {
		return ErrBadPath
	}
	for _, r := range p {
		ok := r == '-' || r == '_' || r == '.' || r == '/' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return ErrBadPath
		}
	}
	if p[0] == '/' || p[len(p)-1] == '/' {
		return ErrBadPath
	}
	return nil
}
