package highlight

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/ingest"
)

// TestOverlappingMomentsShareOneClip: the open and the sell-out 2.7 s
// apart were two byte-identical files in the bundle; now they are one clip
// covering both windows and naming both moments. A moment whose window
// does not overlap gets a clip of its own.
func TestOverlappingMomentsShareOneClip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := OpenSQLite(ctx, filepath.Join(dir, "highlights.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	bus := microdrop.NewMemoryBus()
	srv, err := ingest.New(ingest.Deps{Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCapturer(CaptureDeps{Bus: bus, Streams: srv, Store: store, Config: CaptureConfig{
		Dir: filepath.Join(dir, "clips"), Pre: 2 * time.Second, Post: 3 * time.Second,
		Buffer: RingConfig{MaxDuration: time.Minute, MaxBytes: 64 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	// A session whose publisher has gone, its 30 s still buffered.
	s := newSynth(25, 25, 200)
	b := &pathBuffer{path: "live", ring: NewRing(c.cfg.Buffer), audioCh: 2, gone: s.t0.Add(30 * time.Second),
		session: Session{ID: SessionID("live", s.t0), Path: "live", Channel: "chan1", StartedAt: s.t0}}
	s.feed(b.ring, 30*time.Second)
	c.paths["live"] = b

	open, sold, later := s.t0.Add(10*time.Second), s.t0.Add(12700*time.Millisecond), s.t0.Add(20*time.Second)
	first, err := c.Mark(ctx, "chan1", "d1", ReasonOpen, "", "", open)
	if err != nil {
		t.Fatal(err)
	}
	joined, err := c.Mark(ctx, "chan1", "d1", ReasonSoldOut, "", "", sold)
	if err != nil {
		t.Fatal(err)
	}
	if joined[0].ID != first[0].ID || len(joined[0].Moments) != 2 {
		t.Fatalf("the sell-out 2.7 s after the open started %+v, want it to join %s", joined, first[0].ID)
	}
	if _, err := c.Mark(ctx, "chan1", "", ReasonClip, "later", "mod", later); err != nil {
		t.Fatal(err)
	}
	c.flush(true)
	c.wg.Wait()

	hs, err := store.Highlights(ctx, b.session.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 {
		t.Fatalf("%d highlights, want 2: %+v", len(hs), hs)
	}
	h := hs[0]
	if h.ID != first[0].ID || h.State != HighlightReady || len(h.Moments) != 2 ||
		h.Moments[0].Reason != ReasonOpen || h.Moments[1].Reason != ReasonSoldOut || !h.Moments[1].At.Equal(sold) {
		t.Fatalf("the drop's clip: %+v", h)
	}
	// From the keyframe at or before open-2s to sold+3s.
	if h.Asked != 7700*time.Millisecond || h.Start != 8*time.Second || h.Start+h.Duration < 15660*time.Millisecond {
		t.Errorf("the drop's clip asks %s and holds [%s, %s), want [8s, 15.7s)", h.Asked, h.Start, h.Start+h.Duration)
	}
	if o := hs[1]; o.Reason != ReasonClip || len(o.Moments) != 1 || o.Moments[0].Label != "later" || o.SHA256 == h.SHA256 {
		t.Errorf("the later clip: %+v", o)
	}
}
