package cue

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeFrame checks that DecodeFrame never panics, accepts exactly the frames the
// encoder makes, and that whatever it accepts re-encodes to the same symbols.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(FrameSymbols(0x12345678))
	f.Add(FrameSymbols(0))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{15}, 12))
	f.Add(bytes.Repeat([]byte{255}, 13))
	f.Fuzz(func(t *testing.T, syms []byte) {
		code, err := DecodeFrame(syms)
		if err != nil {
			if !errors.Is(err, ErrCheck) && !errors.Is(err, ErrFrameLength) && !errors.Is(err, ErrSymbol) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if again := FrameSymbols(code); !bytes.Equal(again, syms) {
			t.Fatalf("DecodeFrame(%v) = %#x, which encodes to %v", syms, code, again)
		}
	})
}

// FuzzReadWAV checks that ReadWAV never panics or over-allocates on hostile input, fails
// only with ErrWAV, and that what it reads survives a write and a second read.
func FuzzReadWAV(f *testing.F) {
	f.Add(wavFile(1, 1, 48000, 16, 4, nil, []int16{1, -1}))
	f.Add(wavFile(1, 2, 44100, 16, 0xFFFFFFFF, []byte("LIST\x01\x00\x00\x00x\x00"), []int16{1, -1, 3, 4}))
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEfmt \xff\xff\xff\xff"))
	f.Add([]byte("RIFF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, rate, err := ReadWAV(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrWAV) {
				t.Fatalf("error %v is not ErrWAV", err)
			}
			return
		}
		if len(x) > len(b) {
			t.Fatalf("%d samples from %d bytes", len(x), len(b))
		}
		var w bytes.Buffer
		if err := WriteWAV(&w, x, rate); err != nil {
			t.Fatal(err)
		}
		y, rate2, err := ReadWAV(&w)
		if err != nil || rate2 != rate || len(y) != len(x) {
			t.Fatalf("re-read: %d samples at %d Hz, %v; want %d at %d", len(y), rate2, err, len(x), rate)
		}
	})
}

// FuzzDetector feeds arbitrary bytes as PCM in arbitrary chunks: the Detector must not
// panic, and any cue it reports must have a valid profile and a start inside the input.
func FuzzDetector(f *testing.F) {
	cue, _ := Encode(42, Audible)
	f.Add(wavBytes(f, cue, SampleRate)[44:], uint16(960))
	f.Add([]byte{0xff, 0x7f, 0x00, 0x80}, uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint16) {
		x := make([]float32, len(b)/2)
		for i := range x {
			x[i] = float32(int16(uint16(b[2*i])|uint16(b[2*i+1])<<8)) / 32768
		}
		d := NewDetector(SampleRate)
		var got []Detection
		step := int(chunk)%4096 + 1
		for i := 0; i < len(x); i += step {
			got = append(got, d.Write(x[i:min(i+step, len(x))])...)
		}
		got = append(got, d.Flush()...)
		for _, g := range got {
			if !g.Profile.Valid() || g.Start < 0 || g.Start > durationOf(len(x)) {
				t.Fatalf("implausible detection %+v for %d samples", g, len(x))
			}
		}
	})
}
