package ingest

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
)

// Packet is one RTP packet as it leaves the relay, after cue mixing and
// marking. Readers share it: treat RTP as read-only (copy the header before
// changing it).
type Packet struct {
	// Media indexes Stream.Description().Medias.
	Media  int
	Format format.Format
	RTP    *rtp.Packet
	// Received is when the publisher's packet reached the server.
	Received time.Time
}

// Stream is one published path: one publisher, any number of readers.
type Stream struct {
	srv     *Server
	log     *slog.Logger
	path    string
	channel string
	source  string
	desc    *description.Session
	rtsp    *gortsplib.ServerStream
	procs   []packetProc
	// scratch holds, per media, the copy of each packet handed to
	// gortsplib (which rewrites its SSRC) while readers share the
	// original; a media's packets come from one goroutine at a time, as
	// its packetProc already requires.
	scratch []rtp.Packet

	readerMu sync.Mutex
	readers  atomic.Pointer[[]*Reader]
	dropped  atomic.Uint64

	arm      atomic.Pointer[cueArm]
	keyframe atomic.Pointer[func()]

	done      chan struct{}
	closeOnce sync.Once
}

// packetProc transforms one media's packets on the publisher's goroutine.
// It returns the packets to relay: usually the input, sometimes more.
type packetProc interface {
	process(pkt *rtp.Packet, arm *cueArm) []*rtp.Packet
}

// newStream builds a stream for desc and registers it on path.
func (s *Server) newStream(path, source string, desc *description.Session) (*Stream, error) {
	if err := checkPath(path); err != nil {
		return nil, fmt.Errorf("%w: %q", err, path)
	}
	st := &Stream{
		srv:     s,
		path:    path,
		channel: s.channelFor(path),
		source:  source,
		desc:    desc,
		done:    make(chan struct{}),
	}
	st.log = s.log.With("stream", path, "source", source)
	st.readers.Store(&[]*Reader{})
	for _, m := range desc.Medias {
		st.procs = append(st.procs, s.newProc(st, m))
	}
	st.scratch = make([]rtp.Packet, len(desc.Medias))
	if err := s.register(st); err != nil {
		return nil, err
	}
	if s.rtsp != nil {
		rs := &gortsplib.ServerStream{Server: s.rtsp, Desc: desc}
		if err := rs.Initialize(); err != nil {
			// Close, not just unregister: hooks may have attached readers.
			st.Close()
			return nil, fmt.Errorf("rtsp stream: %w", err)
		}
		st.rtsp = rs
	}
	st.log.Info("stream published", "medias", mediaSummary(desc), "channel", st.channel)
	return st, nil
}

// Path is the stream's path ("live" in rtsp://host:8554/live).
func (st *Stream) Path() string { return st.path }

// Channel is the chat channel the stream is bound to.
func (st *Stream) Channel() string { return st.channel }

// Source says how the stream arrives: "rtsp", "whip" or "pull".
func (st *Stream) Source() string { return st.source }

// Description lists the stream's medias and formats. Do not modify it.
func (st *Stream) Description() *description.Session { return st.desc }

// Done is closed when the publisher goes away.
func (st *Stream) Done() <-chan struct{} { return st.done }

// Dropped counts packets readers of this stream lost to full queues.
func (st *Stream) Dropped() uint64 { return st.dropped.Load() }

// ReaderCount is the number of readers attached with AddReader (RTSP
// readers are served by gortsplib and not counted here).
func (st *Stream) ReaderCount() int { return len(*st.readers.Load()) }

// Close disconnects every reader and removes the stream.
func (st *Stream) Close() {
	st.closeOnce.Do(func() {
		close(st.done)
		st.srv.unregister(st)
		if st.rtsp != nil {
			st.rtsp.Close()
		}
		st.log.Info("stream closed", "dropped_packets", st.dropped.Load())
	})
}

// requestKeyframe asks the publisher for a keyframe when it can (WHIP).
func (st *Stream) requestKeyframe() {
	if f := st.keyframe.Load(); f != nil {
		(*f)()
	}
}

// writePacket is the publisher's entry: process, then fan out. It never
// blocks on a reader.
func (st *Stream) writePacket(media int, pkt *rtp.Packet, recv time.Time) {
	if media < 0 || media >= len(st.procs) {
		return
	}
	select {
	case <-st.done:
		return
	default:
	}
	arm := st.arm.Load()
	out := st.procs[media].process(pkt, arm)
	m := st.desc.Medias[media]
	forma := m.Formats[0]
	readers := *st.readers.Load()
	for _, p := range out {
		if st.rtsp != nil {
			cp := &st.scratch[media]
			*cp = *p
			if err := st.rtsp.WritePacketRTPWithNTP(m, cp, recv); err != nil {
				st.log.Debug("rtsp write", "err", err)
			}
		}
		if len(readers) == 0 {
			continue
		}
		pk := &Packet{Media: media, Format: forma, RTP: p, Received: recv}
		for _, r := range readers {
			r.offer(pk)
		}
	}
}

// Reader receives a stream's packets through a bounded queue on its own
// goroutine, so a slow reader loses packets instead of stalling anyone.
type Reader struct {
	st      *Stream
	name    string
	ch      chan *Packet
	dropped atomic.Uint64
	stop    chan struct{}
	once    sync.Once
	done    chan struct{}
}

// AddReader attaches fn to the stream's packets. fn runs on one goroutine,
// in order; when it falls queue packets behind, new packets are dropped and
// counted. queue <= 0 uses Config.MaxReaderQueue. The reader ends when the
// stream ends or on Close.
func (st *Stream) AddReader(name string, queue int, fn func(*Packet)) (*Reader, error) {
	if queue <= 0 {
		queue = st.srv.cfg.MaxReaderQueue
	}
	r := &Reader{
		st:   st,
		name: name,
		ch:   make(chan *Packet, queue),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	st.readerMu.Lock()
	select {
	case <-st.done:
		st.readerMu.Unlock()
		return nil, fmt.Errorf("%w: stream %q", ErrClosed, st.path)
	default:
	}
	old := *st.readers.Load()
	next := make([]*Reader, len(old), len(old)+1)
	copy(next, old)
	next = append(next, r)
	st.readers.Store(&next)
	st.readerMu.Unlock()

	go r.run(fn)
	st.requestKeyframe()
	return r, nil
}

func (r *Reader) run(fn func(*Packet)) {
	defer close(r.done)
	defer r.detach()
	for {
		select {
		case <-r.stop:
			return
		case <-r.st.done:
			return
		case p := <-r.ch:
			fn(p)
		}
	}
}

func (r *Reader) offer(p *Packet) {
	select {
	case r.ch <- p:
	default:
		r.dropped.Add(1)
		r.st.dropped.Add(1)
	}
}

func (r *Reader) detach() {
	st := r.st
	st.readerMu.Lock()
	defer st.readerMu.Unlock()
	old := *st.readers.Load()
	next := make([]*Reader, 0, len(old))
	for _, x := range old {
		if x != r {
			next = append(next, x)
		}
	}
	st.readers.Store(&next)
}

// Close detaches the reader and waits for its goroutine, so fn is not
// called after Close returns (do not call Close from fn).
func (r *Reader) Close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

// Done is closed when the reader has stopped.
func (r *Reader) Done() <-chan struct{} { return r.done }

// Dropped counts packets this reader lost because its queue was full.
func (r *Reader) Dropped() uint64 { return r.dropped.Load() }

// Name is what the reader was registered as.
func (r *Reader) Name() string { return r.name }

func mediaSummary(desc *description.Session) []string {
	var out []string
	for _, m := range desc.Medias {
		for _, f := range m.Formats {
			out = append(out, fmt.Sprintf("%s/%s", m.Type, f.Codec()))
		}
	}
	return out
}
