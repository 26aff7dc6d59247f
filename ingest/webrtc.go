package ingest

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

const (
	maxOfferBytes   = 256 << 10
	gatherTimeout   = 10 * time.Second
	whipVideoPT     = 96
	whipAudioPT     = 111
	contentTypeSDP  = "application/sdp"
	sessionIDLength = 12
)

// webrtcEdge serves WHIP ingest and WHEP playback.
type webrtcEdge struct {
	s   *Server
	api *webrtc.API
	err error

	mu       sync.Mutex
	sessions map[string]*rtcSession
	closed   bool
}

// rtcSession is one WHIP publisher or WHEP reader.
type rtcSession struct {
	id     string
	path   string
	whip   bool
	pc     *webrtc.PeerConnection
	stream *Stream
	reader *Reader
	once   sync.Once
}

func newWebRTCEdge(s *Server) *webrtcEdge {
	e := &webrtcEdge{s: s, sessions: make(map[string]*rtcSession)}
	e.api, e.err = newWebRTCAPI(s.cfg.WebRTCLoopbackOnly)
	return e
}

func newWebRTCAPI(loopbackOnly bool) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}},
		},
		PayloadType: whipVideoPT,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("register h264: %w", err)
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: whipAudioPT,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("register opus: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if loopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

func (e *webrtcEdge) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip/{path...}", e.serveWHIP)
	mux.HandleFunc("DELETE /whip/{path...}", e.serveDelete)
	mux.HandleFunc("POST /whep/{path...}", e.serveWHEP)
	mux.HandleFunc("DELETE /whep/{path...}", e.serveDelete)
	mux.HandleFunc("OPTIONS /{kind}/{path...}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Accept-Post", contentTypeSDP)
		w.Header().Set("Allow", "OPTIONS, POST, DELETE")
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// httpError writes a plain-text error; internal details stay in the log.
func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

func (e *webrtcEdge) authorized(r *http.Request) bool {
	tok := e.s.cfg.WHIPToken
	if tok == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(h[len(prefix):])), []byte(tok)) == 1
}

// offer holds what the HTTP edge learned from an SDP offer.
type offer struct {
	sdp   string
	video bool // has an H.264 video section
	audio bool // has an Opus audio section
}

// readOffer validates the request body as an SDP offer.
func readOffer(r *http.Request) (offer, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != contentTypeSDP {
			return offer{}, fmt.Errorf("%w: content type must be %s", ErrBadSDP, contentTypeSDP)
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOfferBytes+1))
	if err != nil {
		return offer{}, fmt.Errorf("%w: reading body: %w", ErrBadSDP, err)
	}
	if len(body) > maxOfferBytes {
		return offer{}, fmt.Errorf("%w: larger than %d bytes", ErrBadSDP, maxOfferBytes)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(string(body)); err != nil {
		return offer{}, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return offer{}, fmt.Errorf("%w: no media sections", ErrBadSDP)
	}
	o := offer{sdp: string(body)}
	for _, md := range sd.MediaDescriptions {
		for _, a := range md.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			v := strings.ToLower(a.Value)
			switch {
			case md.MediaName.Media == "video" && strings.Contains(v, " h264/"):
				o.video = true
			case md.MediaName.Media == "audio" && strings.Contains(v, " opus/"):
				o.audio = true
			}
		}
	}
	return o, nil
}

func newSessionID() string {
	var b [sessionIDLength]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (e *webrtcEdge) serveWHIP(w http.ResponseWriter, r *http.Request) {
	if !e.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="microdrop whip"`)
		httpError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	path := r.PathValue("path")
	if err := checkPath(path); err != nil {
		httpError(w, http.StatusBadRequest, "invalid stream path")
		return
	}
	if e.err != nil {
		e.s.log.Error("webrtc unavailable", "err", e.err)
		httpError(w, http.StatusServiceUnavailable, "WebRTC is unavailable on this server")
		return
	}
	off, err := readOffer(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !off.video && !off.audio {
		httpError(w, http.StatusBadRequest, ErrBadSDP.Error()+": offer carries neither H.264 video nor Opus audio")
		return
	}
	if _, err := e.s.Stream(path); err == nil {
		httpError(w, http.StatusConflict, "stream path already has a publisher")
		return
	}

	pc, err := e.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		e.s.log.Error("whip peer connection", "err", err)
		httpError(w, http.StatusInternalServerError, "could not create a peer connection")
		return
	}
	desc := &description.Session{}
	kinds := map[webrtc.RTPCodecType]int{}
	if off.video {
		kinds[webrtc.RTPCodecTypeVideo] = len(desc.Medias)
		desc.Medias = append(desc.Medias, &description.Media{Type: description.MediaTypeVideo,
			Formats: []format.Format{&format.H264{PayloadTyp: whipVideoPT, PacketizationMode: 1}}})
	}
	if off.audio {
		kinds[webrtc.RTPCodecTypeAudio] = len(desc.Medias)
		desc.Medias = append(desc.Medias, &description.Media{Type: description.MediaTypeAudio,
			Formats: []format.Format{&format.Opus{PayloadTyp: whipAudioPT, ChannelCount: 2}}})
	}
	for _, m := range desc.Medias {
		kind := webrtc.RTPCodecTypeAudio
		if m.Type == description.MediaTypeVideo {
			kind = webrtc.RTPCodecTypeVideo
		}
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			_ = pc.Close()
			httpError(w, http.StatusInternalServerError, "could not add a transceiver")
			return
		}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: off.sdp}); err != nil {
		_ = pc.Close()
		httpError(w, http.StatusBadRequest, fmt.Sprintf("%s: %v", ErrBadSDP, err))
		return
	}
	st, err := e.s.newStream(path, "whip", desc)
	if err != nil {
		_ = pc.Close()
		if errors.Is(err, ErrPathBusy) {
			httpError(w, http.StatusConflict, "stream path already has a publisher")
			return
		}
		httpError(w, http.StatusServiceUnavailable, "could not create the stream")
		return
	}
	sess := &rtcSession{id: newSessionID(), path: path, whip: true, pc: pc, stream: st}

	var videoSSRC atomic.Uint32
	kf := func() {
		if ssrc := videoSSRC.Load(); ssrc != 0 {
			_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
		}
	}
	st.keyframe.Store(&kf)
	pc.OnTrack(func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		idx, ok := kinds[track.Kind()]
		if !ok {
			return
		}
		pt := desc.Medias[idx].Formats[0].PayloadType()
		if track.Kind() == webrtc.RTPCodecTypeVideo {
			videoSSRC.Store(uint32(track.SSRC()))
			kf()
		}
		go func() {
			for {
				if _, _, err := recv.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		for {
			pkt, _, err := track.ReadRTP()
			if err != nil {
				return
			}
			pkt.Header.Extension = false
			pkt.Header.Extensions = nil
			pkt.PayloadType = pt
			st.writePacket(idx, pkt, e.s.now())
		}
	})
	e.finish(w, r, sess, off)
}

func (e *webrtcEdge) serveWHEP(w http.ResponseWriter, r *http.Request) {
	path := r.PathValue("path")
	if e.err != nil {
		httpError(w, http.StatusServiceUnavailable, "WebRTC is unavailable on this server")
		return
	}
	off, err := readOffer(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, err := e.s.Stream(path)
	if err != nil {
		httpError(w, http.StatusNotFound, "no stream on this path")
		return
	}
	pc, err := e.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		httpError(w, http.StatusInternalServerError, "could not create a peer connection")
		return
	}
	tracks := make(map[int]*webrtc.TrackLocalStaticRTP)
	for i, m := range st.desc.Medias {
		var cp webrtc.RTPCodecCapability
		switch m.Formats[0].(type) {
		case *format.H264:
			if !off.video {
				continue
			}
			cp = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}
		case *format.Opus:
			if !off.audio {
				continue
			}
			cp = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
		default:
			continue
		}
		tr, err := webrtc.NewTrackLocalStaticRTP(cp, string(m.Type), "microdrop-"+path)
		if err != nil {
			continue
		}
		sender, err := pc.AddTrack(tr)
		if err != nil {
			continue
		}
		tracks[i] = tr
		go func() {
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					switch p.(type) {
					case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
						st.requestKeyframe()
					}
				}
			}
		}()
	}
	if len(tracks) == 0 {
		_ = pc.Close()
		httpError(w, http.StatusBadRequest, "nothing to play over WebRTC: the stream carries no H.264 or Opus media the offer accepts")
		return
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: off.sdp}); err != nil {
		_ = pc.Close()
		httpError(w, http.StatusBadRequest, fmt.Sprintf("%s: %v", ErrBadSDP, err))
		return
	}
	sess := &rtcSession{id: newSessionID(), path: path, pc: pc}
	rd, err := st.AddReader("whep:"+sess.id, 0, func(p *Packet) {
		if tr := tracks[p.Media]; tr != nil {
			_ = tr.WriteRTP(p.RTP)
		}
	})
	if err != nil {
		_ = pc.Close()
		httpError(w, http.StatusNotFound, "no stream on this path")
		return
	}
	sess.reader = rd
	e.finish(w, r, sess, off)
}

// finish answers the offer, registers the session and writes 201.
func (e *webrtcEdge) finish(w http.ResponseWriter, r *http.Request, sess *rtcSession, _ offer) {
	pc := sess.pc
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		e.close(sess)
		httpError(w, http.StatusBadRequest, fmt.Sprintf("%s: %v", ErrBadSDP, err))
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		e.close(sess)
		httpError(w, http.StatusBadRequest, fmt.Sprintf("%s: %v", ErrBadSDP, err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), gatherTimeout)
	defer cancel()
	select {
	case <-gathered:
	case <-ctx.Done():
		e.close(sess)
		httpError(w, http.StatusGatewayTimeout, "ICE gathering timed out")
		return
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		e.close(sess)
		httpError(w, http.StatusServiceUnavailable, "server is shutting down")
		return
	}
	e.sessions[sess.id] = sess
	e.mu.Unlock()

	connected := make(chan struct{})
	var connectedOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			connectedOnce.Do(func() { close(connected) })
		}
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			go e.close(sess)
		}
	})
	if sess.whip {
		// An offer whose peer never connects would hold the path until ICE
		// gives up (~30 s), long enough to squat it again and again.
		go func() {
			t := time.NewTimer(e.s.cfg.WHIPConnectTimeout)
			defer t.Stop()
			select {
			case <-connected:
			case <-t.C:
				e.s.log.Warn("whip publisher never connected; path freed", "stream", sess.path, "session", sess.id,
					"after", e.s.cfg.WHIPConnectTimeout)
				e.close(sess)
			}
		}()
	}
	var done <-chan struct{}
	if sess.stream != nil {
		done = sess.stream.Done()
	} else {
		done = sess.reader.Done()
	}
	go func() {
		<-done
		e.close(sess)
	}()

	kind := "whep"
	if sess.whip {
		kind = "whip"
	}
	e.s.log.Info(kind+" session", "stream", sess.path, "session", sess.id)
	w.Header().Set("Content-Type", contentTypeSDP)
	w.Header().Set("Location", strings.TrimSuffix(r.URL.Path, "/")+"/"+sess.id)
	w.Header().Set("ETag", `"`+sess.id+`"`)
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, pc.LocalDescription().SDP)
}

func (e *webrtcEdge) serveDelete(w http.ResponseWriter, r *http.Request) {
	whip := strings.HasPrefix(strings.TrimPrefix(r.URL.Path, "/"), "whip/")
	if whip && !e.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="microdrop whip"`)
		httpError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	full := r.PathValue("path")
	i := strings.LastIndexByte(full, '/')
	if i < 0 {
		httpError(w, http.StatusNotFound, "no such session")
		return
	}
	path, id := full[:i], full[i+1:]
	e.mu.Lock()
	sess := e.sessions[id]
	e.mu.Unlock()
	if sess == nil || sess.path != path || sess.whip != whip {
		httpError(w, http.StatusNotFound, "no such session")
		return
	}
	e.close(sess)
	w.WriteHeader(http.StatusOK)
}

func (e *webrtcEdge) close(sess *rtcSession) {
	sess.once.Do(func() {
		e.mu.Lock()
		delete(e.sessions, sess.id)
		e.mu.Unlock()
		if sess.reader != nil {
			sess.reader.Close()
		}
		if sess.stream != nil {
			sess.stream.Close()
		}
		_ = sess.pc.Close()
	})
}

func (e *webrtcEdge) closeAll() {
	e.mu.Lock()
	e.closed = true
	all := make([]*rtcSession, 0, len(e.sessions))
	for _, s := range e.sessions {
		all = append(all, s)
	}
	e.mu.Unlock()
	for _, s := range all {
		e.close(s)
	}
}
