package ingest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// recordingHook notes every call and attaches a reader on publish, as
// highlight capture does.
type recordingHook struct {
	mu      sync.Mutex
	calls   []string
	packets atomic.Int64
}

func (h *recordingHook) StreamPublished(st *Stream) {
	h.mu.Lock()
	h.calls = append(h.calls, "published "+st.Path())
	h.mu.Unlock()
	if _, err := st.AddReader("hook", 1024, func(*Packet) { h.packets.Add(1) }); err != nil {
		panic(err)
	}
}

func (h *recordingHook) StreamUnpublished(st *Stream) {
	h.mu.Lock()
	h.calls = append(h.calls, "unpublished "+st.Path())
	h.mu.Unlock()
}

func (h *recordingHook) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

// TestStreamHook: a hook hears of streams already live when it is added,
// of new ones before their first packet (its reader gets every packet),
// and of each one leaving, in order; once removed it hears nothing.
func TestStreamHook(t *testing.T) {
	ts := mustStartServer(t, Config{})
	first, _ := startSyntheticPublisher(t, ts.rtspURL("one"))
	waitFor(t, 5*time.Second, "stream one", func() bool { _, err := ts.Stream("one"); return err == nil })

	h := &recordingHook{}
	remove := ts.Hook(h)
	if got := h.seen(); len(got) != 1 || got[0] != "published one" {
		t.Fatalf("on Hook: %v, want the live stream reported", got)
	}

	pub, m := startSyntheticPublisher(t, ts.rtspURL("two"))
	const total = 200
	payload := []byte{0x41, 1, 2, 3}
	for i := range total {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i * 3600), Marker: true}, Payload: payload}
		if err := pub.WritePacketRTP(m, pkt); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the hook's reader to get every packet of stream two", func() bool { return h.packets.Load() == total })

	pub.Close()
	waitFor(t, 5*time.Second, "stream two to be unpublished", func() bool { return len(h.seen()) == 3 })
	if got := h.seen(); got[1] != "published two" || got[2] != "unpublished two" {
		t.Fatalf("calls %v", got)
	}

	remove()
	remove() // twice is harmless
	first.Close()
	waitFor(t, 5*time.Second, "stream one to leave", func() bool { _, err := ts.Stream("one"); return err != nil })
	startSyntheticPublisher(t, ts.rtspURL("three"))
	waitFor(t, 5*time.Second, "stream three", func() bool { _, err := ts.Stream("three"); return err == nil })
	if got := h.seen(); len(got) != 3 {
		t.Fatalf("a removed hook was called: %v", got)
	}
}
