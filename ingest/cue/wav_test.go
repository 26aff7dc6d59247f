package cue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"testing"
	"time"
)

func TestWAVRoundTrip(t *testing.T) {
	x, _ := Encode(0x0BADCAFE, Ultrasonic)
	var b bytes.Buffer
	if err := WriteWAV(&b, x, SampleRate); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 44+2*len(x) {
		t.Fatalf("WAV is %d bytes, want %d", b.Len(), 44+2*len(x))
	}
	y, rate, err := ReadWAV(bytes.NewReader(b.Bytes()))
	if err != nil || rate != SampleRate || len(y) != len(x) {
		t.Fatalf("ReadWAV = %d samples, %d Hz, %v", len(y), rate, err)
	}
	for i := range x {
		if math.Abs(float64(x[i]-y[i])) > 2.0/32768 { // write scales by 32767, read by 32768
			t.Fatalf("sample %d: %f became %f", i, x[i], y[i])
		}
	}
	got := DetectAll(y, rate)
	if len(got) != 1 || got[0].Code != 0x0BADCAFE {
		t.Errorf("cue after WAV round trip: %s", fmtDetections(got))
	}

	// Out-of-range and NaN samples are clamped, not wrapped.
	b.Reset()
	if err := WriteWAV(&b, []float32{2, -2, float32(math.NaN()), 1, -1}, 8000); err != nil {
		t.Fatal(err)
	}
	pcm := b.Bytes()[44:]
	want := []int16{32767, -32768, 0, 32767, -32767}
	for i, w := range want {
		if v := int16(binary.LittleEndian.Uint16(pcm[2*i:])); v != w {
			t.Errorf("sample %d written as %d, want %d", i, v, w)
		}
	}
	if err := WriteWAV(io.Discard, x, 0); !errors.Is(err, ErrWAV) {
		t.Errorf("rate 0: err = %v, want ErrWAV", err)
	}
}

// wavFile builds a WAV with the given header fields, extra chunks and PCM frames.
func wavFile(format, channels uint16, rate uint32, bits uint16, dataSize uint32, extra []byte, pcm []int16) []byte {
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(0))
	b.WriteString("WAVEfmt ")
	binary.Write(&b, binary.LittleEndian, uint32(16))
	binary.Write(&b, binary.LittleEndian, format)
	binary.Write(&b, binary.LittleEndian, channels)
	binary.Write(&b, binary.LittleEndian, rate)
	binary.Write(&b, binary.LittleEndian, rate*uint32(channels)*uint32(bits/8))
	binary.Write(&b, binary.LittleEndian, channels*bits/8)
	binary.Write(&b, binary.LittleEndian, bits)
	b.Write(extra)
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, dataSize)
	binary.Write(&b, binary.LittleEndian, pcm)
	return b.Bytes()
}

func TestReadWAV(t *testing.T) {
	list := append([]byte("LIST"), 5, 0, 0, 0, 'a', 'b', 'c', 'd', 'e', 0) // odd size: padded
	stereo := wavFile(1, 2, 44100, 16, 8, list, []int16{16384, -16384, 32767, 32767})
	x, rate, err := ReadWAV(bytes.NewReader(stereo))
	if err != nil || rate != 44100 || len(x) != 2 || x[0] != 0 || math.Abs(float64(x[1])-32767.0/32768) > 1e-6 {
		t.Errorf("stereo: %v, %d, %v; want [0 0.99997], 44100", x, rate, err)
	}
	// ffmpeg writing to a pipe leaves the data size unknown; read to the end. A torn last
	// frame is dropped.
	piped := append(wavFile(1, 1, 48000, 16, 0xFFFFFFFF, nil, []int16{1, 2, 3}), 7)
	if x, _, err := ReadWAV(bytes.NewReader(piped)); err != nil || len(x) != 3 {
		t.Errorf("streamed WAV: %d samples, %v; want 3", len(x), err)
	}
	// A data size larger than the file is a truncated file: read what is there.
	if x, _, err := ReadWAV(bytes.NewReader(wavFile(1, 1, 48000, 16, 1000, nil, []int16{1, 2}))); err != nil || len(x) != 2 {
		t.Errorf("truncated WAV: %d samples, %v; want 2", len(x), err)
	}
	for name, b := range map[string][]byte{
		"empty":        nil,
		"not RIFF":     []byte("RIFX\x00\x00\x00\x00WAVEfmt "),
		"float":        wavFile(3, 1, 48000, 32, 4, nil, []int16{0, 0}),
		"8-bit":        wavFile(1, 1, 48000, 8, 2, nil, []int16{0}),
		"6 channels":   wavFile(1, 6, 48000, 16, 12, nil, make([]int16, 6)),
		"rate 0":       wavFile(1, 1, 0, 16, 2, nil, []int16{0}),
		"no data":      wavFile(1, 1, 48000, 16, 0, nil, nil)[:36],
		"data first":   append([]byte("RIFF\x00\x00\x00\x00WAVEdata\x02\x00\x00\x00"), 0, 0),
		"huge fmt":     []byte("RIFF\x00\x00\x00\x00WAVEfmt \xff\xff\xff\xff"),
		"short chunk":  []byte("RIFF\x00\x00\x00\x00WAVEjunk\x10\x00\x00\x00abc"),
		"tiny fmt":     []byte("RIFF\x00\x00\x00\x00WAVEfmt \x02\x00\x00\x00\x01\x00"),
		"header alone": []byte("RIFF\x00\x00\x00\x00WAVE"),
	} {
		if _, _, err := ReadWAV(bytes.NewReader(b)); !errors.Is(err, ErrWAV) {
			t.Errorf("%s: err = %v, want ErrWAV", name, err)
		}
	}
}

func durationOf(samples int) time.Duration { return time.Duration(samples) * time.Second / SampleRate }
