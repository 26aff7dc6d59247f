package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
)

func (s *Server) startRTSP() error {
	h := &rtspHandler{s: s, publishers: make(map[*gortsplib.ServerSession]*Stream)}
	srv := &gortsplib.Server{
		Handler:        h,
		RTSPAddress:    s.cfg.RTSPAddress,
		UDPRTPAddress:  s.cfg.UDPRTPAddress,
		UDPRTCPAddress: s.cfg.UDPRTCPAddress,
		WriteQueueSize: nextPow2(s.cfg.MaxReaderQueue),
		Listen: func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			s.rtspLn = ln
			return relayListener{ln}, nil
		},
	}
	s.rtsp = srv
	s.rtspH = h
	if err := srv.Start(); err != nil {
		s.rtsp = nil
		return fmt.Errorf("rtsp listen %s: %w", s.cfg.RTSPAddress, err)
	}
	s.log.Info("rtsp listening", "addr", s.rtspLn.Addr().String(), "udp", s.cfg.UDPRTPAddress != "")
	return nil
}

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// rtspHandler routes gortsplib callbacks to the stream registry.
type rtspHandler struct {
	s          *Server
	mu         sync.Mutex
	publishers map[*gortsplib.ServerSession]*Stream
	plays      atomic.Int64 // PLAY requests served, for tests and metrics
}

func rtspPath(p string) string { return strings.Trim(p, "/") }

func rtspStatus(err error) base.StatusCode {
	switch {
	case errors.Is(err, ErrNoStream):
		return base.StatusNotFound
	case errors.Is(err, ErrPathBusy):
		return base.StatusBadRequest
	case errors.Is(err, ErrBadPath):
		return base.StatusBadRequest
	}
	return base.StatusInternalServerError
}

func (h *rtspHandler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	h.mu.Lock()
	st := h.publishers[ctx.Session]
	delete(h.publishers, ctx.Session)
	h.mu.Unlock()
	if st != nil {
		st.Close()
	}
}

func (h *rtspHandler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if res, err := h.checkRead(ctx.Conn, ctx.Request, ctx.Path); res != nil {
		return res, nil, err
	}
	st, err := h.s.Stream(rtspPath(ctx.Path))
	if err != nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, st.rtsp, nil
}

func (h *rtspHandler) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	path := rtspPath(ctx.Path)
	if res, err := h.checkPublish(ctx.Conn, ctx.Request, path); res != nil {
		return res, err
	}
	st, err := h.s.newStream(path, "rtsp", ctx.Description)
	if err != nil {
		h.s.log.Warn("rtsp publish refused", "path", path, "err", err)
		res := &base.Response{StatusCode: rtspStatus(err)}
		if errors.Is(err, ErrPathBusy) {
			res.StatusMessage = "Stream Path Already Has A Publisher"
		}
		return res, err
	}
	h.mu.Lock()
	h.publishers[ctx.Session] = st
	h.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (h *rtspHandler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	if res, err := h.checkRead(ctx.Conn, ctx.Request, ctx.Path); res != nil {
		return res, nil, err
	}
	st, err := h.s.Stream(rtspPath(ctx.Path))
	if err != nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, st.rtsp, nil
}

func (h *rtspHandler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	if st, err := h.s.Stream(rtspPath(ctx.Path)); err == nil {
		h.plays.Add(1)
		st.requestKeyframe()
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (h *rtspHandler) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	h.mu.Lock()
	st := h.publishers[ctx.Session]
	h.mu.Unlock()
	if st == nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, fmt.Errorf("%w: record without announce", ErrNoStream)
	}
	index := mediaIndex(st.desc)
	// Over TCP the packets arrive on our connection's reader goroutine,
	// which runs this callback: they reached the server when the read(2)
	// that brought them returned. Over UDP, or with an injected clock,
	// read the clock per packet.
	rc, _ := ctx.Conn.NetConn().(*relayConn)
	if rc == nil || h.s.clockInjected || ctx.Session.SetuppedTransport() == nil || *ctx.Session.SetuppedTransport() != gortsplib.TransportTCP {
		ctx.Session.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
			st.writePacket(index[m], pkt, h.s.now())
		})
	} else {
		ctx.Session.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
			st.writePacket(index[m], pkt, rc.readAt)
		})
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnStreamWriteError counts packets gortsplib could not queue for a slow
// RTSP reader; the reader skips them and the publisher carries on.
func (h *rtspHandler) OnStreamWriteError(ctx *gortsplib.ServerHandlerOnStreamWriteErrorCtx) {
	h.s.dropped.Add(1)
}

// OnPacketsLost is told when a publisher's packets went missing upstream.
func (h *rtspHandler) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	h.s.log.Debug("rtsp publisher lost packets", "lost", ctx.Lost)
}

// OnDecodeError keeps gortsplib from writing to the standard logger.
func (h *rtspHandler) OnDecodeError(ctx *gortsplib.ServerHandlerOnDecodeErrorCtx) {
	h.s.log.Debug("rtsp decode error", "err", ctx.Error)
}

func mediaIndex(desc *description.Session) map[*description.Media]int {
	m := make(map[*description.Media]int, len(desc.Medias))
	for i, x := range desc.Medias {
		m[x] = i
	}
	return m
}

// puller reads a remote RTSP source and republishes it on path.
type puller struct {
	s    *Server
	path string
	url  string
}

const (
	pullMinBackoff = 500 * time.Millisecond
	pullMaxBackoff = 30 * time.Second
)

func (p *puller) run(ctx context.Context) {
	log := p.s.log.With("stream", p.path, "source", "pull")
	backoff := pullMinBackoff
	for ctx.Err() == nil {
		began := time.Now()
		err := p.once(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > 10*pullMaxBackoff/3 {
			backoff = pullMinBackoff // it ran a while: start over
		}
		log.Warn("pull source disconnected; retrying", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, pullMaxBackoff)
	}
}

func (p *puller) once(ctx context.Context) error {
	u, err := base.ParseURL(p.url)
	if err != nil {
		return fmt.Errorf("pull url: %w", err)
	}
	log := p.s.log.With("stream", p.path, "source", "pull")
	c := &gortsplib.Client{
		Scheme: u.Scheme, Host: u.Host, ReadTimeout: 10 * time.Second,
		OnTransportSwitch: func(err error) { log.Info("pull transport switched", "reason", err) },
		OnPacketsLost:     func(n uint64) { log.Debug("pull lost packets", "lost", n) },
		OnDecodeError:     func(err error) { log.Debug("pull decode error", "err", err) },
	}
	if err := c.Start2(); err != nil {
		return fmt.Errorf("pull connect: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()

	desc, _, err := c.Describe(u)
	if err != nil {
		return fmt.Errorf("pull describe: %w", err)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		return fmt.Errorf("pull setup: %w", err)
	}
	st, err := p.s.newStream(p.path, "pull", desc)
	if err != nil {
		return err
	}
	defer st.Close()
	index := mediaIndex(desc)
	c.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
		st.writePacket(index[m], pkt, p.s.now())
	})
	if _, err := c.Play(nil); err != nil {
		return fmt.Errorf("pull play: %w", err)
	}
	return c.Wait()
}
