package cue

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

// The vectors in SPEC.md section 7: if these change, the overlay's JavaScript no longer
// matches and every deployed overlay emits cues microdrop cannot read.
func TestFrameVectorsMatchSpec(t *testing.T) {
	if got := crc16([]byte("123456789")); got != 0x29B1 {
		t.Fatalf("CRC-16/CCITT-FALSE check value = %#04x, want 0x29b1", got)
	}
	for _, tc := range []struct {
		code  uint32
		check uint16
		syms  []byte
	}{
		{0x12345678, 0x30EC, []byte{8, 12, 0, 3, 2, 15, 12, 1, 4, 15, 10, 6}},
		{0x00000000, 0x84C0, []byte{9, 14, 3, 7, 7, 9, 11, 9, 15, 11, 8, 10}},
		{0x00000001, 0x94E1, []byte{9, 14, 3, 7, 7, 9, 11, 8, 14, 11, 10, 11}},
		{0xFFFFFFFF, 0x1D0F, []byte{6, 1, 12, 8, 8, 6, 4, 6, 6, 2, 4, 5}},
	} {
		if got := checkCode(tc.code); got != tc.check {
			t.Errorf("check(%#08x) = %#04x, want %#04x", tc.code, got, tc.check)
		}
		if got := FrameSymbols(tc.code); !slices.Equal(got, tc.syms) {
			t.Errorf("FrameSymbols(%#08x) = %v, want %v", tc.code, got, tc.syms)
		}
		if got, err := DecodeFrame(tc.syms); err != nil || got != tc.code {
			t.Errorf("DecodeFrame(%v) = %#08x, %v; want %#08x", tc.syms, got, err, tc.code)
		}
	}
}

func TestEncodeSampleValuesMatchSpec(t *testing.T) {
	want := map[Profile]map[int]float64{
		Audible:    {10: 0.0036395, 1001: 0.6623285, 3881: -0.3836935, 12521: -0.8863686, 46070: 0.0017206},
		Ultrasonic: {10: 0.0036395, 1001: -0.7718460, 3881: -0.2864833, 12521: 0.7210372, 46070: -0.0008906},
	}
	for p, samples := range want {
		x, err := Encode(0x12345678, p)
		if err != nil {
			t.Fatal(err)
		}
		for n, v := range samples {
			if math.Abs(float64(x[n])-v) > 1e-6 {
				t.Errorf("%s x[%d] = %.7f, want %.7f", p, n, x[n], v)
			}
		}
	}
}

func TestEncodeShape(t *testing.T) {
	for _, p := range Profiles() {
		x, err := Encode(0xCAFEF00D, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(x) != 46080 {
			t.Fatalf("%s: %d samples, want 46080", p, len(x))
		}
		if d := Duration(p); d != 960*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("%s: Duration = %v, want 960ms", p, d)
		}
		var peak float64
		for _, v := range x {
			peak = max(peak, math.Abs(float64(v)))
		}
		if peak > 1 || peak < 0.89 {
			t.Errorf("%s: peak %.4f, want about 0.891 and never above 1", p, peak)
		}
		// No clicks: every symbol boundary is near silence, and no sample-to-sample jump
		// exceeds what the highest tone itself produces.
		maxStep := 2 * math.Pi * ToneHz(p, 15) / SampleRate * peakAmplitude
		for i := 1; i < len(x); i++ {
			if d := math.Abs(float64(x[i] - x[i-1])); d > maxStep*1.01 {
				t.Fatalf("%s: step of %.4f at sample %d exceeds tone slope %.4f", p, d, i, maxStep)
			}
		}
		for j := 0; j <= 16; j++ {
			for _, n := range []int{j*symbolSamples - 1, j * symbolSamples} {
				if n >= 0 && n < len(x) && math.Abs(float64(x[n])) > 0.003 {
					t.Errorf("%s: sample %d at a symbol edge is %.4f, want ≈0", p, n, x[n])
				}
			}
		}
		// Each symbol's strongest tone (by DFT) is the one the SPEC says.
		want := append(append([]byte{}, preamble[:]...), FrameSymbols(0xCAFEF00D)...)
		for j, s := range want {
			seg := x[j*symbolSamples : (j+1)*symbolSamples]
			best, bestE := -1, 0.0
			for k := range numTones {
				if e := toneEnergy(seg, ToneHz(p, k), SampleRate); e > bestE {
					best, bestE = k, e
				}
			}
			if best != int(s) {
				t.Errorf("%s symbol %d: strongest tone %d, want %d", p, j, best, s)
			}
		}
		// The profile's band is respected: energy outside it is negligible.
		lo, hi := ToneHz(p, 0)-500, ToneHz(p, 15)+500
		for _, f := range []float64{lo - 500, lo - 1000, hi + 500, hi + 1000} {
			in := toneEnergy(x[:symbolSamples], ToneHz(p, 0), SampleRate)
			if out := toneEnergy(x[:symbolSamples], f, SampleRate); out > in*1e-4 {
				t.Errorf("%s: energy at %.0f Hz is %.1f dB below the tone, want < -40 dB", p, f, 10*math.Log10(out/in))
			}
		}
	}
	if _, err := Encode(1, "loud"); !errors.Is(err, ErrProfile) {
		t.Errorf("Encode with unknown profile: err = %v, want ErrProfile", err)
	}
}

func toneEnergy(x []float32, hz float64, rate int) float64 {
	var re, im float64
	for n, v := range x {
		a := 2 * math.Pi * hz * float64(n) / float64(rate)
		re += float64(v) * math.Cos(a)
		im -= float64(v) * math.Sin(a)
	}
	return re*re + im*im
}

func TestDecodeFrameRejects(t *testing.T) {
	good := FrameSymbols(0xDEADBEEF)
	if code, err := DecodeFrame(good); err != nil || code != 0xDEADBEEF {
		t.Fatalf("DecodeFrame(good) = %#x, %v", code, err)
	}
	// Every single-symbol error is caught by the CRC (a 4-bit burst is within its
	// guaranteed burst-detection length of 16).
	for i := range good {
		for v := range byte(16) {
			if v == good[i] {
				continue
			}
			bad := slices.Clone(good)
			bad[i] = v
			if _, err := DecodeFrame(bad); !errors.Is(err, ErrCheck) {
				t.Fatalf("symbol %d changed to %d: err = %v, want ErrCheck", i, v, err)
			}
		}
	}
	if _, err := DecodeFrame(good[:11]); !errors.Is(err, ErrFrameLength) {
		t.Errorf("short frame: err = %v, want ErrFrameLength", err)
	}
	if _, err := DecodeFrame(append(slices.Clone(good), 0)); !errors.Is(err, ErrFrameLength) {
		t.Errorf("long frame: err = %v, want ErrFrameLength", err)
	}
	bad := slices.Clone(good)
	bad[3] = 16
	if _, err := DecodeFrame(bad); !errors.Is(err, ErrSymbol) {
		t.Errorf("symbol 16: err = %v, want ErrSymbol", err)
	}
}

func TestMix(t *testing.T) {
	cue, _ := Encode(7, Audible)

	// At −20 dB into silence the result is exactly the scaled cue.
	dst := make([]float32, len(cue)+100)
	Mix(dst, cue, -20)
	for i, v := range cue {
		if math.Abs(float64(dst[i]-0.1*v)) > 1e-6 {
			t.Fatalf("sample %d = %f, want %f", i, dst[i], 0.1*v)
		}
	}
	for _, v := range dst[len(cue):] {
		if v != 0 {
			t.Fatal("Mix wrote past the cue")
		}
	}

	// A short dst takes as much as fits and nothing panics.
	short := make([]float32, 1000)
	Mix(short, cue, 0)
	if short[500] != softClip(cue[500]) {
		t.Errorf("short dst: sample 500 = %f, want %f", short[500], cue[500])
	}
	Mix(nil, cue, 0)
	Mix(short, nil, 0)

	// Mixed at +6 dB onto a full-scale square wave, nothing exceeds ±1 and the result stays
	// monotonic in the input, so clipping bends peaks instead of folding them.
	loud := make([]float32, len(cue))
	for i := range loud {
		loud[i] = 0.95
		if i/100%2 == 0 {
			loud[i] = -0.95
		}
	}
	Mix(loud, cue, 6)
	for i, v := range loud {
		if v > 1 || v < -1 || v != v {
			t.Fatalf("sample %d = %f out of range", i, v)
		}
	}
	for x := float32(-3); x < 3; x += 0.01 {
		if softClip(x+0.01) < softClip(x) {
			t.Fatalf("softClip not monotonic at %f", x)
		}
	}

	// Silly levels are harmless.
	q := make([]float32, 10)
	Mix(q, cue, math.Inf(-1))
	Mix(q, cue, math.NaN())
	for _, v := range q {
		if v != 0 {
			t.Fatalf("−Inf or NaN level changed dst: %v", q)
		}
	}
}
