package highlight_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/ingest"
	"github.com/microdrop/microdrop/ingest/highlight"
)

// A constrained-baseline SPS (pic_order_cnt_type 2, so every DTS is its
// PTS) and its PPS, as the load generator publishes.
var (
	boundSPS = []byte{0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20}
	boundPPS = []byte{0x68, 0xcb, 0x83, 0xcb, 0x20}
)

// publishFrames publishes frames H.264 frames of size bytes over RTSP/TCP
// to url at fps, a keyframe every gop frames, through gortsplib's own
// packetizer.
func publishFrames(t *testing.T, url string, frames, fps, gop, size int) {
	t.Helper()
	f := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: boundSPS, PPS: boundPPS}
	m := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{f}}
	tcp := gortsplib.TransportTCP
	c := &gortsplib.Client{Transport: &tcp, WriteQueueSize: 8192}
	if err := c.StartRecording(url, &description.Session{Medias: []*description.Media{m}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	enc, err := f.CreateEncoder()
	if err != nil {
		t.Fatal(err)
	}
	for i := range frames {
		nalu := make([]byte, size)
		nalu[0] = 0x41 // non-IDR slice
		if i%gop == 0 {
			nalu[0] = 0x65 // IDR slice
		}
		for k := 1; k < size; k++ {
			nalu[k] = byte(i + k)
		}
		pkts, err := enc.Encode([][]byte{nalu})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			p.Timestamp = uint32(i * 90000 / fps)
			if err := c.WritePacketRTP(m, p); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second / time.Duration(fps))
	}
}

// Only streams bound to a channel the capturer buffers for get a buffer:
// a stream bound to no such channel is relayed without one, a moment on
// its channel is not buffered, and the bound stream's buffer counts
// against the shared total.
func TestCaptureBuffersOnlyBoundStreams(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	bus := microdrop.NewMemoryBus()
	srv, err := ingest.New(ingest.Deps{Logger: testLogger(t), Bus: bus, Config: ingest.Config{
		RTSPAddress: "127.0.0.1:0", Paths: map[string]string{"live": "chan1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	store, err := highlight.OpenSQLite(ctx, filepath.Join(dir, "highlights.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	capt, err := highlight.NewCapturer(highlight.CaptureDeps{Logger: testLogger(t), Bus: bus, Streams: srv, Store: store,
		Config: highlight.CaptureConfig{Dir: filepath.Join(dir, "clips"), Channels: []string{"chan1"}, BufferTotal: 8 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if err := capt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer capt.Close()

	done := make(chan struct{})
	go func() {
		defer close(done)
		publishFrames(t, fmt.Sprintf("rtsp://%s/other", srv.RTSPAddr()), 50, 25, 25, 3000)
	}()
	publishFrames(t, fmt.Sprintf("rtsp://%s/live", srv.RTSPAddr()), 50, 25, 25, 3000)
	<-done
	waitFor(t, 10*time.Second, "the bound stream's buffer", func() bool {
		st, ok := capt.RingStats("live")
		return ok && st.Units >= 40
	})
	if st, ok := capt.RingStats("other"); ok {
		t.Fatalf("the stream bound to no channel of the capturer has a buffer: %+v", st)
	}
	live, _ := capt.RingStats("live")
	bs := capt.BufferStats()
	if bs.Rings != 1 || bs.Bytes != live.Bytes || bs.Max != 8<<20 {
		t.Errorf("buffers %+v, want the bound stream's %d bytes alone against the 8 MiB total", bs, live.Bytes)
	}
	if _, err := capt.Mark(ctx, "other", "", highlight.ReasonClip, "", "", time.Now()); !errors.Is(err, highlight.ErrNotBuffered) {
		t.Errorf("a moment on the unbound stream's channel: %v, want ErrNotBuffered", err)
	}
	if hs, err := capt.Mark(ctx, "chan1", "", highlight.ReasonClip, "", "", time.Now()); err != nil || len(hs) != 1 || hs[0].Path != "live" {
		t.Errorf("a moment on the bound channel: %+v, %v", hs, err)
	}
}
