package ingest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/pion/rtp"
)

func TestSEIRoundTrip(t *testing.T) {
	for _, m := range []Marker{
		{DropID: "d1", Cue: 7, UnixMS: 1700000000000},
		{DropID: "", Cue: 0, UnixMS: 0},                  // zero bytes in JSON-free places
		{DropID: strings.Repeat("x", 300), Cue: 1 << 31}, // size > 255: multi-byte size
	} {
		nalu, err := BuildSEI(m)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(nalu[1:], []byte{0, 0, 0}) || bytes.Contains(nalu[1:], []byte{0, 0, 1}) || bytes.Contains(nalu[1:], []byte{0, 0, 2}) {
			t.Fatalf("start code emulation left in %x", nalu)
		}
		got, err := ParseSEI(nalu)
		if err != nil || got != m {
			t.Fatalf("ParseSEI = %+v, %v; want %+v", got, err, m)
		}
	}
}

func TestEmulationPrevention(t *testing.T) {
	in := []byte{0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0}
	esc := addEmulationPrevention(in)
	want := []byte{0, 0, 3, 0, 0, 3, 0, 1, 0, 0, 3, 2, 0, 0, 3, 3, 0, 0, 4, 0, 0}
	if !bytes.Equal(esc, want) {
		t.Fatalf("escaped %x, want %x", esc, want)
	}
	if back := removeEmulationPrevention(esc); !bytes.Equal(back, in) {
		t.Fatalf("unescaped %x, want %x", back, in)
	}
}

func TestParseSEIErrors(t *testing.T) {
	other, _ := BuildSEI(Marker{DropID: "x"})
	other[1+1+1] ^= 0xff // corrupt the UUID
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNotSEI},
		{"idr", []byte{0x65, 0x88}, ErrNotSEI},
		{"forbidden bit", []byte{0x86, 0x05}, ErrNotSEI},
		{"truncated size", []byte{0x06, 0x05}, ErrBadSEI},
		{"size past end", []byte{0x06, 0x05, 0x40, 0x01}, ErrBadSEI},
		{"other uuid", other, ErrNoMarker},
		{"bad json", append(append([]byte{0x06, 0x05, 16 + 3}, MarkerUUID[:]...), '{', 'x', '}', 0x80), ErrBadSEI},
	}
	for _, c := range cases {
		if _, err := ParseSEI(c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

func FuzzParseSEI(f *testing.F) {
	good, _ := BuildSEI(Marker{DropID: "drop-1", Cue: 42, UnixMS: 1})
	f.Add(good)
	f.Add([]byte{0x06, 0x05, 0x00, 0x80})
	f.Add([]byte{0x06, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseSEI(b)
		if err != nil {
			return
		}
		// Whatever parses must survive a rebuild.
		again, err := BuildSEI(m)
		if err != nil {
			return // e.g. a marker too large to rebuild
		}
		m2, err := ParseSEI(again)
		if err != nil || m2 != m {
			t.Fatalf("rebuild of %+v gave %+v, %v", m, m2, err)
		}
	})
}

// TestH264MarkerPlacement: the SEI goes before the first slice of the first
// access unit that starts after the open, never mid-picture, and later
// packets are renumbered so the sequence stays gapless.
func TestH264MarkerPlacement(t *testing.T) {
	st := &Stream{log: testLogger(t)}
	h := &h264Marker{st: st}
	pkt := func(seq uint16, ts uint32, marker bool, payload ...byte) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: payload}
	}
	arm := &cueArm{id: 1, dropID: "d", code: 9}
	var out []*rtp.Packet
	feed := func(p *rtp.Packet, a *cueArm) {
		for _, o := range h.process(p, a) {
			cp := *o
			out = append(out, &cp)
		}
	}
	feed(pkt(1, 100, false, 0x7c, 0x85, 1), nil) // FU-A start of IDR
	feed(pkt(2, 100, false, 0x7c, 0x05, 2), arm) // open arrives mid-picture
	feed(pkt(3, 100, true, 0x7c, 0x45, 3), arm)
	feed(pkt(4, 200, false, 0x67, 1), arm) // SPS of the next AU
	feed(pkt(5, 200, false, 0x68, 1), arm) // PPS
	feed(pkt(6, 200, true, 0x41, 9), arm)  // first slice
	feed(pkt(7, 300, true, 0x41, 9), arm)
	var types []byte
	for i, p := range out {
		if p.SequenceNumber != uint16(i+1) {
			t.Fatalf("packet %d has sequence %d", i, p.SequenceNumber)
		}
		types = append(types, p.Payload[0]&0x1f)
	}
	if want := []byte{28, 28, 28, 7, 8, 6, 1, 1}; !bytes.Equal(types, want) {
		t.Fatalf("NAL types %v, want %v", types, want)
	}
	if m, err := ParseSEI(out[5].Payload); err != nil || m.DropID != "d" || m.Cue != 9 || out[5].Timestamp != 200 {
		t.Fatalf("SEI %+v %v at ts %d", m, err, out[5].Timestamp)
	}
}
