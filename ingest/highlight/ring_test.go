package highlight

import (
	"bytes"
	"encoding/hex"
	"errors"
	"runtime"
	"testing"
	"time"
)

// A real SPS/PPS (x264, 320x240 constrained baseline): MP4 writing parses
// the SPS for the picture size.
var (
	testSPS, _ = hex.DecodeString("6742c00dda0507ec0440000003004000000ca3c50aa8")
	testPPS, _ = hex.DecodeString("68ce0fc8")
)

// synth makes a synthetic stream: fps video with a keyframe every gop
// frames and 20 ms Opus packets, frameBytes per video access unit.
type synth struct {
	t0         time.Time
	fps, gop   int
	frameBytes int
	params     *h264Params
	frame      int
	audio      int
}

func newSynth(fps, gop, frameBytes int) *synth {
	return &synth{t0: time.Unix(1_700_000_000, 0), fps: fps, gop: gop, frameBytes: frameBytes,
		params: &h264Params{sps: testSPS, pps: testPPS}}
}

// next returns the units of the next video frame and the audio packets
// that precede it.
func (s *synth) next() []accessUnit {
	ft := time.Duration(s.frame) * time.Second / time.Duration(s.fps)
	var out []accessUnit
	for time.Duration(s.audio)*20*time.Millisecond < ft {
		at := time.Duration(s.audio) * 20 * time.Millisecond
		// TOC 0xfc: CELT fullband 20 ms, one frame.
		out = append(out, accessUnit{track: trackAudio, dts: at, pts: at, recv: s.t0.Add(at), data: []byte{0xfc, 0xff, 0xfe}})
		s.audio++
	}
	key := s.frame%s.gop == 0
	nal := byte(0x41)
	if key {
		nal = 0x65
	}
	data := make([]byte, 4+s.frameBytes)
	n := s.frameBytes
	data[0], data[1], data[2], data[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	data[4] = nal
	out = append(out, accessUnit{track: trackVideo, key: key, dts: ft, pts: ft, recv: s.t0.Add(ft), data: data, params: s.params})
	s.frame++
	return out
}

func (s *synth) feed(r *Ring, d time.Duration) {
	for time.Duration(s.frame)*time.Second/time.Duration(s.fps) < d {
		for _, u := range s.next() {
			r.push(u)
		}
	}
}

// TestRingBounds: the ring keeps at least the last MaxDuration, never more
// than one group of pictures beyond it, always starts on a keyframe, and
// the memory bound wins when it is the tighter one.
func TestRingBounds(t *testing.T) {
	t.Run("duration", func(t *testing.T) {
		r := NewRing(RingConfig{MaxDuration: 10 * time.Second, MaxBytes: 1 << 30})
		s := newSynth(25, 25, 1000)
		s.feed(r, 60*time.Second)
		st := r.Stats()
		if st.Span < 10*time.Second-40*time.Millisecond || st.Span > 11*time.Second {
			t.Errorf("span %s, want the last 10 s (plus less than one keyframe interval)", st.Span)
		}
		if st.Evicted == 0 || st.Keyframes < 10 || st.Keyframes > 11 {
			t.Errorf("stats %+v", st)
		}
		if r.units[0].track != trackVideo || !r.units[0].key {
			t.Errorf("ring starts with %+v, not a keyframe", r.units[0])
		}
	})
	t.Run("memory", func(t *testing.T) {
		r := NewRing(RingConfig{MaxDuration: 120 * time.Second, MaxBytes: 1 << 20})
		s := newSynth(25, 25, 10_000)
		s.feed(r, 30*time.Second)
		st := r.Stats()
		if st.Bytes > 1<<20 || st.Bytes < (1<<20)-260_000 {
			t.Errorf("bytes %d, want just under the 1 MiB bound", st.Bytes)
		}
		if !r.units[0].key {
			t.Error("ring does not start on a keyframe")
		}
	})
	t.Run("before first keyframe", func(t *testing.T) {
		r := NewRing(RingConfig{})
		r.push(accessUnit{track: trackAudio, data: []byte{1}})
		r.push(accessUnit{track: trackVideo, data: []byte{1}})
		if st := r.Stats(); st.Units != 0 || st.Evicted != 2 {
			t.Errorf("units before the first keyframe were kept: %+v", st)
		}
	})
}

// TestRingWindow: a window starts at the last keyframe at or before its
// start and ends at its end.
func TestRingWindow(t *testing.T) {
	r := NewRing(RingConfig{MaxDuration: time.Minute})
	s := newSynth(25, 25, 100)
	s.feed(r, 20*time.Second)
	from, to := 5500*time.Millisecond, 9*time.Second
	w := r.window(from, to)
	if len(w) == 0 || !w[0].key || w[0].dts != 5*time.Second {
		t.Fatalf("window starts at %v (key %v), want the keyframe at 5 s", w[0].dts, w[0].key)
	}
	if last := w[len(w)-1].dts; last > to || to-last > 40*time.Millisecond {
		t.Errorf("window ends at %v, want 9 s", last)
	}
	if w := r.window(-time.Hour, -time.Minute); w != nil {
		t.Errorf("a window before the buffer returned %d units", len(w))
	}
}

// TestRingWindowByTimeline: when units arrive ahead of their timeline (a
// publisher's first packet came late, the rest in a catch-up burst), the
// window still starts at a keyframe at or before its start on the
// timeline, so the clip holds the whole pre-roll.
func TestRingWindowByTimeline(t *testing.T) {
	r := NewRing(RingConfig{MaxDuration: time.Minute})
	s := newSynth(25, 25, 100)
	for range 25 * 5 {
		for _, u := range s.next() {
			u.recv = u.recv.Add(-90 * time.Millisecond)
			r.push(u)
		}
	}
	w := r.window(1950*time.Millisecond, 4*time.Second)
	if len(w) == 0 || !w[0].key || w[0].dts > 1950*time.Millisecond {
		t.Fatalf("window for [1.95 s, 4 s) starts at %v on the timeline, after its start", w[0].dts)
	}
}

// TestClipMP4RoundTrip writes a clip, reads it back, trims it by remuxing,
// and refuses bad trims without writing.
func TestClipMP4RoundTrip(t *testing.T) {
	r := NewRing(RingConfig{MaxDuration: time.Minute})
	s := newSynth(25, 25, 500)
	s.feed(r, 12*time.Second)
	units := r.window(2*time.Second, 8*time.Second)
	var clip bytes.Buffer
	info, err := writeClipMP4(&clip, units, 2)
	if err != nil {
		t.Fatal(err)
	}
	if info.start != 2*time.Second || info.duration != 6*time.Second+40*time.Millisecond {
		t.Errorf("clip start %s duration %s, want 2s and 6.04s", info.start, info.duration)
	}
	pi, err := ProbeMP4(bytes.NewReader(clip.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if pi.Duration != info.duration || len(pi.Keyframes) != 7 || pi.Keyframes[1] != time.Second {
		t.Errorf("probe %+v", pi)
	}
	for _, bad := range [][2]time.Duration{{0, 7 * time.Second}, {3 * time.Second, 2 * time.Second}, {-time.Second, time.Second}} {
		var out bytes.Buffer
		if _, _, err := TrimMP4(&out, bytes.NewReader(clip.Bytes()), bad[0], bad[1]); !errors.Is(err, ErrBadTrim) || out.Len() != 0 {
			t.Errorf("trim %v: %v, wrote %d bytes; want ErrBadTrim and nothing", bad, err, out.Len())
		}
	}
	var trimmed bytes.Buffer
	start, dur, err := TrimMP4(&trimmed, bytes.NewReader(clip.Bytes()), 2500*time.Millisecond, 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if start != 2*time.Second || dur != 2*time.Second {
		t.Errorf("trim [2.5s,4s) gave start %s duration %s, want the keyframe at 2s and 2s", start, dur)
	}
	ti, err := ProbeMP4(bytes.NewReader(trimmed.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if ti.Duration != dur || len(ti.Keyframes) != 2 || ti.Keyframes[0] != 0 {
		t.Errorf("trimmed probe %+v", ti)
	}
	if _, err := ProbeMP4(bytes.NewReader([]byte("not an mp4 at all"))); !errors.Is(err, ErrBadMP4) {
		t.Errorf("garbage: %v, want ErrBadMP4", err)
	}
}

func TestIDChecks(t *testing.T) {
	id := SessionID("studio/main", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if id != "studio_main-20260102T030405Z" || CheckSessionID(id) != nil {
		t.Errorf("session id %q", id)
	}
	for _, bad := range []string{"", ".", "..", "../x", "a/b", "a\\b", "x\x00"} {
		if !errors.Is(CheckSessionID(bad), ErrBadID) {
			t.Errorf("session id %q accepted", bad)
		}
	}
	for _, bad := range []string{"h123", "../h0123456789abcdef", "H0123456789ABCDEF"} {
		if !errors.Is(CheckHighlightID(bad), ErrBadID) {
			t.Errorf("highlight id %q accepted", bad)
		}
	}
}

// BenchmarkRing6Mbps fills a ring with 120 s of a 6 Mbit/s, 30 fps stream
// (keyframe every 2 s, Opus every 20 ms) and reports the ring's accounted
// bytes and the Go heap it holds.
func BenchmarkRing6Mbps(b *testing.B) {
	const fps, bitrate = 30, 6_000_000
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		r := NewRing(RingConfig{MaxDuration: 120 * time.Second, MaxBytes: 1 << 30})
		s := newSynth(fps, 2*fps, bitrate/8/fps)
		s.feed(r, 130*time.Second)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		st := r.Stats()
		b.ReportMetric(float64(st.Bytes), "ring-bytes")
		b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "heap-bytes")
		b.ReportMetric(float64(st.Units), "units")
		runtime.KeepAlive(r)
	}
}

// BenchmarkWriteClip60s writes a 60 s clip of a 6 Mbit/s stream to a file.
func BenchmarkWriteClip60s(b *testing.B) {
	const fps = 30
	r := NewRing(RingConfig{MaxDuration: 120 * time.Second, MaxBytes: 1 << 30})
	s := newSynth(fps, 2*fps, 6_000_000/8/fps)
	s.feed(r, 70*time.Second)
	units := r.window(4*time.Second, 64*time.Second)
	dir := b.TempDir()
	c := &Capturer{cfg: CaptureConfig{Dir: dir}}
	b.ResetTimer()
	for b.Loop() {
		h := Highlight{ID: newHighlightID(), SessionID: "bench-20260101T000000Z"}
		if err := c.writeFile(&h, units, 2); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(h.Bytes)
	}
}

// TestBudgetBoundsRingsTogether: rings sharing a Budget stay within its
// total (past it by at most one group of pictures per ring, which each
// keeps), the oldest groups go first whichever ring holds them, every ring
// still starts on a keyframe, and a window is still cut from what is left.
func TestBudgetBoundsRingsTogether(t *testing.T) {
	const total = 2 << 20
	b := NewBudget(total)
	cfg := RingConfig{MaxDuration: 120 * time.Second, MaxBytes: 64 << 20}
	early, late := newRingIn(cfg, b), newRingIn(cfg, b)
	se, sl := newSynth(25, 25, 10_000), newSynth(25, 25, 10_000)
	// The early stream runs alone for 20 s, then both for 40 s.
	se.feed(early, 20*time.Second)
	sl.t0 = se.t0.Add(20 * time.Second)
	for step := 1; step <= 40; step++ {
		se.feed(early, time.Duration(20+step)*time.Second)
		sl.feed(late, time.Duration(step)*time.Second)
		if st := b.Stats(); st.Bytes > total+2*260_000 {
			t.Fatalf("after %d s together the rings hold %d bytes, over the %d total by more than a group each", step, st.Bytes, total)
		}
	}
	st := b.Stats()
	es, ls := early.Stats(), late.Stats()
	if st.Rings != 2 || st.Evicted == 0 || st.Bytes != es.Bytes+ls.Bytes {
		t.Fatalf("budget %+v, rings %+v and %+v", st, es, ls)
	}
	if st.Bytes < total-2*260_000 {
		t.Errorf("the rings hold %d bytes, far under the %d total: evicted too much", st.Bytes, total)
	}
	// Both streams hold about the same recent seconds: the early one gave
	// up its old groups, not the late one its new ones.
	if d := es.Span - ls.Span; d > 1100*time.Millisecond || d < -1100*time.Millisecond {
		t.Errorf("spans %s and %s: the oldest groups were not the ones evicted", es.Span, ls.Span)
	}
	for _, r := range []*Ring{early, late} {
		if !r.units[0].key {
			t.Error("a ring does not start on a keyframe")
		}
	}
	// The late stream's last 3 s are cut whole, from the keyframe before.
	end := 40 * time.Second
	w := late.window(end-3*time.Second, end)
	if len(w) == 0 || !w[0].key || w[0].dts != end-3*time.Second || w[len(w)-1].dts > end {
		t.Fatalf("window of %d units from %v", len(w), w[0].dts)
	}
	for _, u := range w {
		if u.track == trackVideo && (len(u.data) != 4+10_000 || int(u.data[0])<<24|int(u.data[1])<<16|int(u.data[2])<<8|int(u.data[3]) != 10_000) {
			t.Fatalf("a unit's payload came back as %d bytes, header % x", len(u.data), u.data[:4])
		}
	}
	late.release()
	if st := b.Stats(); st.Rings != 1 || st.Bytes != es.Bytes {
		t.Errorf("after releasing one ring the budget is %+v, want the other's %d bytes", st, es.Bytes)
	}
}

// TestRingStoresPayloadsInChunks: payloads are packed into shared chunks
// (no allocation per packet), each kept apart from the next (appending to
// one cannot overwrite another), and a payload too big to pack gets a
// block of its own.
func TestRingStoresPayloadsInChunks(t *testing.T) {
	r := NewRing(RingConfig{MaxDuration: time.Minute, MaxBytes: 64 << 20})
	s := newSynth(25, 25, 1000)
	s.feed(r, 2*time.Second)
	a := r.units[1].data
	if cap(a) != len(a) {
		t.Errorf("a payload has room beyond it: len %d cap %d", len(a), cap(a))
	}
	next := append([]byte(nil), r.units[2].data...)
	_ = append(a, 0xAA) // must reallocate, never write into the next payload
	if !bytes.Equal(r.units[2].data, next) {
		t.Error("appending to a payload changed the next one")
	}
	pkt := []byte{0xfc, 1, 2}
	allocs := testing.AllocsPerRun(200, func() { r.push(accessUnit{track: trackAudio, data: pkt}) })
	if allocs > 0.1 {
		t.Errorf("%.2f allocations per small packet, want them packed into chunks", allocs)
	}
	big := make([]byte, chunkSize)
	big[0] = 0x65
	r.push(accessUnit{track: trackVideo, key: true, dts: 3 * time.Second, data: big})
	got := r.units[len(r.units)-1].data
	if len(got) != chunkSize || cap(got) != chunkSize || got[0] != 0x65 {
		t.Errorf("a big payload came back as len %d cap %d", len(got), cap(got))
	}
}
