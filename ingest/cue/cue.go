package cue

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Profile names a tone table. Both profiles share everything else in SPEC.md.
type Profile string

const (
	// Audible is the "sting" profile, 1600–4600 Hz, that survives every codec we target,
	// including Opus at 32 kbit/s.
	Audible Profile = "audible"
	// Ultrasonic is the near-ultrasonic profile, 16000–17500 Hz, for streams whose audio
	// codec keeps that band (AAC ≥ 128 kbit/s, Opus ≥ 64 kbit/s).
	Ultrasonic Profile = "ultrasonic"
)

// SampleRate is the rate, in Hz, of the PCM that Encode returns.
const SampleRate = 48000

// Signal constants from SPEC.md sections 1–4.
const (
	numTones        = 16
	symbolSamples   = 2880 // 60 ms at 48 kHz
	rampSamples     = 240  // 5 ms raised-cosine edges
	preambleSymbols = 4
	dataSymbols     = 12
	frameSymbols    = preambleSymbols + dataSymbols
	cueSamples      = frameSymbols * symbolSamples
	peakAmplitude   = 0.891251 // −1 dBFS: headroom for codec overshoot at the tone edges
	whitening       = 0x9E3779B97F4A
)

// preamble is the fixed tone sequence that opens every cue; its tones jump across the band
// so that a one-symbol shift never matches itself.
var preamble = [preambleSymbols]byte{0, 15, 5, 10}

// Errors returned by the codec. They are sentinels so callers can use errors.Is.
var (
	ErrProfile     = errors.New("cue: unknown profile")
	ErrCheck       = errors.New("cue: check code mismatch")
	ErrFrameLength = errors.New("cue: frame must be 12 data symbols")
	ErrSymbol      = errors.New("cue: symbol value out of range 0..15")
	ErrWAV         = errors.New("cue: unsupported or malformed WAV")
)

// Profiles lists every profile in a stable order.
func Profiles() []Profile { return []Profile{Audible, Ultrasonic} }

// Valid reports whether p is a known profile.
func (p Profile) Valid() bool { return p == Audible || p == Ultrasonic }

// ParseProfile turns a profile name into a Profile.
func ParseProfile(s string) (Profile, error) {
	p := Profile(s)
	if !p.Valid() {
		return "", fmt.Errorf("%w %q (want %q or %q)", ErrProfile, s, Audible, Ultrasonic)
	}
	return p, nil
}

// ToneHz returns the frequency of tone k (0..15) in profile p, or 0 if either is unknown.
func ToneHz(p Profile, k int) float64 {
	if k < 0 || k >= numTones {
		return 0
	}
	switch p {
	case Audible:
		return 1600 + 200*float64(k)
	case Ultrasonic:
		return 16000 + 100*float64(k)
	}
	return 0
}

// Duration is the length of one cue. It is the same for every profile; the argument keeps
// callers honest should a future profile differ.
func Duration(p Profile) time.Duration {
	_ = p
	return time.Duration(cueSamples) * time.Second / SampleRate
}

// crc16 is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR).
func crc16(data []byte) uint16 {
	c := uint16(0xFFFF)
	for _, b := range data {
		c ^= uint16(b) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
	}
	return c
}

func checkCode(code uint32) uint16 {
	return crc16([]byte{byte(code >> 24), byte(code >> 16), byte(code >> 8), byte(code)})
}

// FrameSymbols returns the 12 data symbol values (tone indices) that carry code, as in
// SPEC.md section 2. The full cue is the preamble 0, 15, 5, 10 followed by these.
func FrameSymbols(code uint32) []byte {
	w := (uint64(code)<<16 | uint64(checkCode(code))) ^ whitening
	out := make([]byte, dataSymbols)
	for i := range out {
		out[i] = byte(w>>(44-4*i)) & 0xF
	}
	return out
}

// DecodeFrame turns the 12 data symbol values heard after a preamble back into the cue
// code, and rejects the frame unless its CRC-16 matches: the check code is what keeps
// programme audio that happens to resemble a preamble from becoming a false cue.
func DecodeFrame(symbols []byte) (uint32, error) {
	if len(symbols) != dataSymbols {
		return 0, fmt.Errorf("%w, got %d", ErrFrameLength, len(symbols))
	}
	var w uint64
	for i, s := range symbols {
		if s >= numTones {
			return 0, fmt.Errorf("%w: symbol %d is %d", ErrSymbol, i, s)
		}
		w = w<<4 | uint64(s)
	}
	w ^= whitening
	code := uint32(w >> 16)
	if uint16(w) != checkCode(code) {
		return 0, ErrCheck
	}
	return code, nil
}

// envelope returns the raised-cosine symbol envelope w(m) of SPEC.md section 4.
func envelope() []float64 {
	w := make([]float64, symbolSamples)
	for m := range w {
		switch {
		case m < rampSamples:
			w[m] = 0.5 * (1 - math.Cos(math.Pi*(float64(m)+0.5)/rampSamples))
		case m >= symbolSamples-rampSamples:
			w[m] = 0.5 * (1 - math.Cos(math.Pi*(float64(symbolSamples-m)-0.5)/rampSamples))
		default:
			w[m] = 1
		}
	}
	return w
}

// Encode renders the cue for code in profile p as mono PCM at SampleRate, peak −1 dBFS.
func Encode(code uint32, p Profile) ([]float32, error) {
	if !p.Valid() {
		return nil, fmt.Errorf("%w %q", ErrProfile, p)
	}
	syms := make([]byte, 0, frameSymbols)
	syms = append(syms, preamble[:]...)
	syms = append(syms, FrameSymbols(code)...)
	env := envelope()
	out := make([]float32, cueSamples)
	for j, s := range syms {
		step := 2 * math.Pi * ToneHz(p, int(s)) / SampleRate
		seg := out[j*symbolSamples : (j+1)*symbolSamples]
		for m := range seg {
			seg[m] = float32(peakAmplitude * env[m] * math.Sin(step*float64(m)))
		}
	}
	return out, nil
}

// Mix adds cue, scaled by levelDB (0 dB = as encoded), into dst from dst[0] on, as far as
// dst reaches. Sums are soft-clipped above 0.9 so a cue landing on loud programme bends the
// peaks instead of wrapping or hard-clipping them into clicks; samples below that knee are
// plain sums, so a cue mixed into quiet audio is bit-for-bit the scaled cue plus the audio.
func Mix(dst []float32, cue []float32, levelDB float64) {
	g := float32(math.Pow(10, levelDB/20))
	if math.IsNaN(levelDB) || g == 0 {
		return
	}
	n := min(len(dst), len(cue))
	for i := range n {
		dst[i] = softClip(dst[i] + g*cue[i])
	}
}

// softClip is the identity up to the knee and approaches ±1 smoothly (tanh) above it.
func softClip(x float32) float32 {
	const knee = 0.9
	switch {
	case x > knee:
		return knee + (1-knee)*float32(math.Tanh(float64((x-knee)/(1-knee))))
	case x < -knee:
		return -knee - (1-knee)*float32(math.Tanh(float64((-x-knee)/(1-knee))))
	case x != x: // NaN in the programme must not poison the output
		return 0
	}
	return x
}
