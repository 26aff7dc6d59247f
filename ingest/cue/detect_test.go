package cue

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// maxStartError is the bar for start-time accuracy.
const maxStartError = 20 * time.Millisecond

type placed struct {
	code    uint32
	profile Profile
	at      int // sample index of the cue's first sample
}

// withCues returns a copy of programme with each cue mixed in at levelDB.
func withCues(tb testing.TB, programme []float32, cues []placed, levelDB float64) []float32 {
	tb.Helper()
	out := slices.Clone(programme)
	for _, c := range cues {
		x, err := Encode(c.code, c.profile)
		if err != nil {
			tb.Fatal(err)
		}
		Mix(out[c.at:], x, levelDB)
	}
	return out
}

// matchDetections fails unless got holds exactly the placed cues (code, profile, start
// within maxStartError, shifted by delay) and nothing else. It returns the worst start error.
func matchDetections(tb testing.TB, got []Detection, want []placed, rate int, delay time.Duration) time.Duration {
	tb.Helper()
	var worst time.Duration
	if len(got) != len(want) {
		tb.Errorf("got %d detections, want %d:\n got %s\nwant %v", len(got), len(want), fmtDetections(got), want)
	}
	used := make([]bool, len(got))
	for _, w := range want {
		at := time.Duration(w.at)*time.Second/time.Duration(rate) + delay
		found := false
		for i, g := range got {
			if used[i] || g.Code != w.code || g.Profile != w.profile {
				continue
			}
			err := (g.Start - at).Abs()
			if err > maxStartError {
				tb.Errorf("cue %#08x %s: start %v, want %v ± %v", w.code, w.profile, g.Start, at, maxStartError)
			}
			worst = max(worst, err)
			used[i], found = true, true
			break
		}
		if !found {
			tb.Errorf("cue %#08x %s at %v not detected (got %s)", w.code, w.profile, at, fmtDetections(got))
		}
	}
	return worst
}

func fmtDetections(ds []Detection) string {
	s := "["
	for _, d := range ds {
		s += fmt.Sprintf(" {%#08x %s %v %.1fdB}", d.Code, d.Profile, d.Start, d.SNRDB)
	}
	return s + " ]"
}

// spread places n cues of profile p at irregular offsets, at least gap seconds apart.
func spread(rng *rand.Rand, p Profile, n, rate int, first, gap float64) []placed {
	var out []placed
	at := first
	for range n {
		out = append(out, placed{code: rng.Uint32(), profile: p, at: int(at * float64(rate))})
		at += gap + rng.Float64()
	}
	return out
}

func TestDetectClean(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range Profiles() {
		cues := spread(rng, p, 5, SampleRate, 0.3173, 1.1)
		// The special codes ride along: all-zero and all-one nibbles stress the whitening.
		cues[1].code, cues[2].code = 0, 0xFFFFFFFF
		x := withCues(t, noise(3, 10*SampleRate, -70), cues, 0)
		worst := matchDetections(t, DetectAll(x, SampleRate), cues, SampleRate, 0)
		t.Logf("%s: worst start error %v", p, worst)
	}
	// A cue at the very first sample, and one ending at the very last.
	x := withCues(t, make([]float32, 2*cueSamples), []placed{{1, Audible, 0}, {2, Audible, cueSamples}}, -6)
	matchDetections(t, DetectAll(x, SampleRate), []placed{{1, Audible, 0}, {2, Audible, cueSamples}}, SampleRate, 0)
}

func TestDetectBothProfilesAtOnce(t *testing.T) {
	cues := []placed{{0xA1, Audible, 20000}, {0xB2, Ultrasonic, 30000}, {0xC3, Ultrasonic, 100000}, {0xD4, Audible, 95000}}
	x := withCues(t, musicLike(9, 4*SampleRate, SampleRate), cues, -20)
	matchDetections(t, DetectAll(x, SampleRate), cues, SampleRate, 0)

	// A detector asked for one profile hears only that one.
	d := NewDetector(SampleRate, Ultrasonic)
	got := append(d.Write(x), d.Flush()...)
	matchDetections(t, got, []placed{cues[1], cues[2]}, SampleRate, 0)
}

func TestDetectStreamingChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cues := append(spread(rng, Audible, 4, SampleRate, 0.5, 1.3), spread(rng, Ultrasonic, 4, SampleRate, 0.9, 1.3)...)
	x := withCues(t, speechLike(7, 8*SampleRate, SampleRate), cues, -20)
	whole := DetectAll(x, SampleRate)
	matchDetections(t, whole, cues, SampleRate, 0)

	for _, maxChunk := range []int{1, 7, 240, 4096, 100000} {
		d := NewDetector(SampleRate)
		var got []Detection
		for rest := x; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(maxChunk))
			got = append(got, d.Write(rest[:n])...)
			rest = rest[n:]
		}
		got = append(got, d.Flush()...)
		slices.SortFunc(got, func(a, b Detection) int { return int(a.Start - b.Start) })
		want := slices.Clone(whole)
		slices.SortFunc(want, func(a, b Detection) int { return int(a.Start - b.Start) })
		if !slices.Equal(got, want) {
			t.Errorf("chunks ≤ %d: %s, want %s", maxChunk, fmtDetections(got), fmtDetections(want))
		}
	}

	// After Flush the Detector starts over at time zero.
	d := NewDetector(SampleRate)
	d.Write(x[:SampleRate])
	d.Flush()
	again := append(d.Write(x), d.Flush()...)
	if !slices.Equal(again, whole) {
		t.Errorf("after Flush: %s, want %s", fmtDetections(again), fmtDetections(whole))
	}
}

// TestDetectUnderProgramme is the main bar: cues mixed at −20 dB under loud speech-
// and music-like programme are read exactly, and it measures how far below −20 dB they
// still are (the margin).
func TestDetectUnderProgramme(t *testing.T) {
	const seconds = 16
	programmes := []struct {
		name string
		x    []float32
	}{
		{"music", musicLike(11, seconds*SampleRate, SampleRate)},
		{"speech", speechLike(12, seconds*SampleRate, SampleRate)},
		{"noise", noise(13, seconds*SampleRate, -20)},
	}
	for _, prog := range programmes {
		for _, p := range Profiles() {
			rng := rand.New(rand.NewPCG(uint64(len(prog.name)), uint64(len(p))))
			cues := spread(rng, p, 8, SampleRate, 0.2, 1.0)
			t.Run(prog.name+"/"+string(p), func(t *testing.T) {
				x := withCues(t, prog.x, cues, -20)
				matchDetections(t, DetectAll(x, SampleRate), cues, SampleRate, 0)
				cueRMS := rmsDB(withCues(t, make([]float32, cueSamples), []placed{{1, p, 0}}, -20))
				margin := detectionMargin(t, prog.x, cues)
				t.Logf("programme RMS %.1f dBFS peak %.1f dBFS; cue at -20 dB has RMS %.1f dBFS; all %d cues still read at -%.0f dB (margin %.0f dB)",
					rmsDB(prog.x), peakDB(prog.x), cueRMS, len(cues), 20+margin, margin)
				if margin < 6 {
					t.Errorf("margin below the -20 dB level is %.0f dB, want at least 6 dB", margin)
				}
			})
		}
	}
}

// detectionMargin lowers the cue level in 2 dB steps below −20 dB and returns how many dB
// below −20 dB every cue was still read exactly.
func detectionMargin(t *testing.T, programme []float32, cues []placed) float64 {
	margin := 0.0
	for m := 2.0; m <= 30; m += 2 {
		// Only the cues' own profile: the margin is about hearing them, and it halves the cost.
		d := NewDetector(SampleRate, cues[0].profile)
		got := append(d.Write(withCues(t, programme, cues, -20-m)), d.Flush()...)
		if !allFound(got, cues) {
			break
		}
		margin = m
	}
	return margin
}

func allFound(got []Detection, cues []placed) bool {
	if len(got) != len(cues) {
		return false
	}
	for _, c := range cues {
		if !slices.ContainsFunc(got, func(d Detection) bool { return d.Code == c.code && d.Profile == c.profile }) {
			return false
		}
	}
	return true
}

// synthAt renders the SPEC waveform directly at another sample rate, which is what a
// browser playing the 48 kHz AudioBuffer into a 44.1 kHz device produces (minus its
// resampler's ripple).
func synthAt(code uint32, p Profile, rate int) []float32 {
	syms := append(slices.Clone(preamble[:]), FrameSymbols(code)...)
	symDur := 0.06
	n := int(math.Round(float64(len(syms)) * symDur * float64(rate)))
	out := make([]float32, n)
	ramp := 0.005
	for i := range out {
		t := float64(i) / float64(rate)
		j := min(int(t/symDur), len(syms)-1)
		m := t - float64(j)*symDur
		w := 1.0
		if m < ramp {
			w = 0.5 * (1 - math.Cos(math.Pi*m/ramp))
		} else if m > symDur-ramp {
			w = 0.5 * (1 - math.Cos(math.Pi*(symDur-m)/ramp))
		}
		out[i] = float32(peakAmplitude * w * math.Sin(2*math.Pi*ToneHz(p, int(syms[j]))*m))
	}
	return out
}

func TestDetectOtherSampleRates(t *testing.T) {
	for _, tc := range []struct {
		rate     int
		profiles []Profile
	}{
		{44100, []Profile{Audible, Ultrasonic}},
		{96000, []Profile{Audible, Ultrasonic}},
		{32000, []Profile{Audible}},
		{16000, []Profile{Audible}},
	} {
		d := NewDetector(tc.rate)
		if got := d.Profiles(); !slices.Equal(got, tc.profiles) {
			t.Errorf("%d Hz: profiles %v, want %v", tc.rate, got, tc.profiles)
		}
		x := musicLike(21, 6*tc.rate, tc.rate)
		var cues []placed
		for i, p := range tc.profiles {
			c := placed{uint32(tc.rate + i), p, (1 + 2*i) * tc.rate * 11 / 10}
			Mix(x[c.at:], synthAt(c.code, p, tc.rate), -20)
			cues = append(cues, c)
		}
		got := append(d.Write(x), d.Flush()...)
		worst := matchDetections(t, got, cues, tc.rate, 0)
		t.Logf("%d Hz: worst start error %v", tc.rate, worst)
	}
	for _, rate := range []int{0, -48000, 8000} {
		d := NewDetector(rate)
		if len(d.Profiles()) != 0 || d.Write(make([]float32, 10000)) != nil || d.Flush() != nil {
			t.Errorf("rate %d: want a detector with no profiles that hears nothing", rate)
		}
	}
	if got := NewDetector(SampleRate, "bogus", Audible, Audible).Profiles(); !slices.Equal(got, []Profile{Audible}) {
		t.Errorf("unknown and repeated profiles: got %v, want [audible]", got)
	}
}

func TestDetectIgnoresPartialAndDamagedCues(t *testing.T) {
	x, _ := Encode(0x5EED, Audible)
	// Cut short: the tail of the frame is missing, so nothing may be reported.
	if got := DetectAll(x[:len(x)-symbolSamples], SampleRate); len(got) != 0 {
		t.Errorf("truncated cue: got %s", fmtDetections(got))
	}
	// One data symbol replaced by a different tone: the CRC must reject it rather than
	// report a wrong code.
	y := slices.Clone(x)
	other, _ := Encode(0x5EEE, Audible)
	for j := 4; j < 16; j++ {
		a, b := y[j*symbolSamples:(j+1)*symbolSamples], other[j*symbolSamples:(j+1)*symbolSamples]
		if !slices.Equal(a, b) {
			copy(a, b)
			break
		}
	}
	for _, d := range DetectAll(y, SampleRate) {
		t.Errorf("damaged cue reported as %s", fmtDetections([]Detection{d}))
	}
}

// TestNoFalseDetections feeds ten minutes of synthetic music, speech and noise, at levels
// from quiet to clipping, with no cue in it: nothing may be detected.
func TestNoFalseDetections(t *testing.T) {
	const minutes = 10
	d := NewDetector(SampleRate)
	var got []Detection
	for i := range minutes * 2 {
		seg := 30 * SampleRate
		var x []float32
		switch i % 3 {
		case 0:
			x = musicLike(uint64(100+i), seg, SampleRate)
		case 1:
			x = speechLike(uint64(100+i), seg, SampleRate)
			Mix(x, musicLike(uint64(200+i), seg, SampleRate), -6)
		case 2:
			x = noise(uint64(100+i), seg, -30+float64(i))
			Mix(x, musicLike(uint64(300+i), seg, SampleRate), -12)
		}
		got = append(got, d.Write(x)...)
	}
	got = append(got, d.Flush()...)
	if len(got) != 0 {
		t.Errorf("false detections in %d minutes of programme: %s", minutes, fmtDetections(got))
	}
}
