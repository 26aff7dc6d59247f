package ingest

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/thesyncim/gopus"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/ingest/cue"
)

// newClientAPI is a pion API like a browser's or OBS's, on loopback.
func newClientAPI(t testing.TB) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// negotiate posts pc's offer and applies the answer, like a WHIP/WHEP client.
func negotiate(t testing.TB, pc *webrtc.PeerConnection, url, token string) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(10 * time.Second):
		t.Fatal("ICE gathering timed out")
	}
	resp := post(t, url, token, pc.LocalDescription().SDP)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s = %d %s", url, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/sdp" {
		t.Fatalf("answer content type %q", ct)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		t.Fatal("no Location header")
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatal(err)
	}
	return loc
}

func post(t testing.TB, url, token, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// synthetic H.264: the relay never decodes video, so well-formed NAL
// headers with filler bodies exercise the same path as a real encoder.
var (
	fakeSPS = []byte{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8, 0x06, 0xd0, 0xa1, 0x35}
	fakePPS = []byte{0x68, 0xce, 0x06, 0xe2}
)

func fakeFrame(i int) []byte {
	start := []byte{0, 0, 0, 1}
	var au []byte
	body := make([]byte, 1500)
	for k := range body {
		body[k] = byte(k*7+i) | 0x10 // no zero runs
	}
	if i%25 == 0 {
		au = append(au, start...)
		au = append(au, fakeSPS...)
		au = append(au, start...)
		au = append(au, fakePPS...)
		au = append(au, start...)
		au = append(au, 0x65, 0x88)
	} else {
		au = append(au, start...)
		au = append(au, 0x41, 0x9a)
	}
	return append(au, body...)
}

// TestWHIPPublishWHEPAndRTSPRead: a pion client publishes H.264 + Opus over
// WHIP (Opus from gopus), a pion WHEP client and a gortsplib RTSP client
// read it; after an open, the WHEP reader hears the cue and sees the SEI
// marker, and the server reports CueAired.
func TestWHIPPublishWHEPAndRTSPRead(t *testing.T) {
	ts := mustStartServer(t, Config{WHIPToken: "s3cret"})
	hs := httptest.NewServer(ts.Handler())
	defer hs.Close()
	sub := ts.bus.Subscribe(64)
	defer sub.Close()
	api := newClientAPI(t)

	// Publisher.
	pub, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	vt, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, "video", "obs")
	at, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "obs")
	for _, tr := range []webrtc.TrackLocal{vt, at} {
		if _, err := pub.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	loc := negotiate(t, pub, hs.URL+"/whip/live", "s3cret")
	if !strings.HasPrefix(loc, "/whip/live/") {
		t.Fatalf("Location %q", loc)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var sendWG sync.WaitGroup
	defer func() { cancel(); sendWG.Wait() }()
	sendWG.Add(1)
	go func() {
		defer sendWG.Done()
		sendMedia(ctx, t, vt, at)
	}()
	waitFor(t, 10*time.Second, "the WHIP stream", func() bool { _, err := ts.Stream("live"); return err == nil })

	// RTSP reader of the WHIP stream.
	var rtspVideo, rtspAudio atomic.Int64
	rc := readRTSP(t, ts.rtspURL("live"), func(m *description.Media) {
		if m.Type == description.MediaTypeVideo {
			rtspVideo.Add(1)
		} else {
			rtspAudio.Add(1)
		}
	})
	defer rc.Close()

	// WHEP reader.
	rd, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := rd.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu        sync.Mutex
		marker    *Marker
		heard     *cue.Detection
		audioPkts atomic.Int64
	)
	rd.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			dec, _ := (&format.H264{PacketizationMode: 1}).CreateDecoder()
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				nalus, err := dec.Decode(pkt)
				if err != nil {
					continue
				}
				for _, n := range nalus {
					if m, err := ParseSEI(n); err == nil {
						mu.Lock()
						marker = &m
						mu.Unlock()
					}
				}
			}
		}
		dec, _ := gopus.NewDecoder(gopus.DefaultDecoderConfig(48000, 2))
		det := cue.NewDetector(48000, cue.Audible)
		pcm := make([]float32, 5760*2)
		var mono []float32
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			audioPkts.Add(1)
			n, err := dec.Decode(pkt.Payload, pcm)
			if err != nil {
				continue
			}
			mono = downmix(mono[:0], pcm[:n*2], 2)
			for _, d := range det.Write(mono) {
				mu.Lock()
				heard = &d
				mu.Unlock()
			}
		}
	})
	negotiate(t, rd, hs.URL+"/whep/live", "")
	waitFor(t, 15*time.Second, "WHEP audio", func() bool { return audioPkts.Load() > 25 })
	waitFor(t, 10*time.Second, "RTSP packets", func() bool { return rtspVideo.Load() > 0 && rtspAudio.Load() > 0 })

	const code = 0xC0FFEE
	openDrop(t, ts.bus, "live", "drop-whip", code)
	e := waitEvent(t, sub, microdrop.CueAired, 15*time.Second)
	if e.Cue.Code != code || e.Cue.Stream != "live" {
		t.Fatalf("CueAired %+v", e.Cue)
	}
	waitFor(t, 15*time.Second, "the WHEP reader to hear the cue and see the marker", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return heard != nil && marker != nil
	})
	mu.Lock()
	if heard.Code != code || marker.Cue != code || marker.DropID != "drop-whip" {
		t.Fatalf("WHEP reader heard %+v and saw marker %+v", heard, marker)
	}
	mu.Unlock()

	// DELETE ends the publication.
	req, _ := http.NewRequest(http.MethodDelete, hs.URL+loc, nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE = %d", resp.StatusCode)
	}
	waitFor(t, 5*time.Second, "the stream to end", func() bool { _, err := ts.Stream("live"); return err != nil })
}

// sendMedia paces 25 fps video and 20 ms Opus until ctx ends.
func sendMedia(ctx context.Context, t testing.TB, vt, at *webrtc.TrackLocalStaticSample) {
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: 48000, Channels: 2, Application: gopus.ApplicationAudio})
	if err != nil {
		t.Error(err)
		return
	}
	pcm := make([]float32, 960*2)
	buf := make([]byte, 4000)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < 3000; i++ { // at most a minute
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for k := range 960 {
			v := float32(0.2 * math.Sin(2*math.Pi*330*float64(i*960+k)/48000))
			pcm[2*k], pcm[2*k+1] = v, v
		}
		n, err := enc.Encode(pcm, buf)
		if err == nil && n > 0 {
			_ = at.WriteSample(media.Sample{Data: append([]byte(nil), buf[:n]...), Duration: 20 * time.Millisecond})
		}
		if i%2 == 0 {
			_ = vt.WriteSample(media.Sample{Data: fakeFrame(i / 2), Duration: 40 * time.Millisecond})
		}
	}
}

// readRTSP plays url with gortsplib over TCP and calls fn per packet.
func readRTSP(t testing.TB, url string, fn func(*description.Media)) *gortsplib.Client {
	t.Helper()
	u, err := base.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.TransportTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &tcp}
	if err := c.Start2(); err != nil {
		t.Fatal(err)
	}
	desc, _, err := c.Describe(u)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		c.Close()
		t.Fatal(err)
	}
	c.OnPacketRTPAny(func(m *description.Media, _ format.Format, _ *rtp.Packet) { fn(m) })
	if _, err := c.Play(nil); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// TestWHIPRejectsBadRequests: bad SDP gets 400 with a clear message, a
// wrong token 401, and neither creates a stream.
func TestWHIPRejectsBadRequests(t *testing.T) {
	ts := mustStartServer(t, Config{WHIPToken: "s3cret"})
	hs := httptest.NewServer(ts.Handler())
	defer hs.Close()

	cases := []struct {
		name, url, token, body string
		status                 int
		msg                    string
	}{
		{"garbage", "/whip/live", "s3cret", "this is not sdp", 400, "invalid SDP offer"},
		{"no media", "/whip/live", "s3cret", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", 400, "no media sections"},
		{"no h264 or opus", "/whip/live", "s3cret", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\n", 400, "neither H.264 video nor Opus"},
		{"wrong token", "/whip/live", "nope", "v=0\r\n", 401, "bearer token"},
		{"no token", "/whip/live", "", "v=0\r\n", 401, "bearer token"},
		{"whep garbage", "/whep/live", "", "\x00\x01", 400, "invalid SDP offer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := post(t, hs.URL+c.url, c.token, c.body)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || !strings.Contains(string(body), c.msg) {
				t.Fatalf("status %d body %q; want %d containing %q", resp.StatusCode, body, c.status, c.msg)
			}
			if n := len(ts.Streams()); n != 0 {
				t.Fatalf("%d streams after a refused request", n)
			}
		})
	}
}
