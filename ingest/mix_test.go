package ingest

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
	"github.com/thesyncim/gopus"

	"github.com/microdrop/microdrop/ingest/cue"
)

// opusPackets encodes seconds of a two-tone programme as 20 ms Opus RTP packets.
func opusPackets(tb testing.TB, seconds float64) []*rtp.Packet {
	tb.Helper()
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: 48000, Channels: 2, Application: gopus.ApplicationAudio})
	if err != nil {
		tb.Fatal(err)
	}
	_ = enc.SetBitrate(96000)
	n := int(seconds * 50)
	pcm := make([]float32, 960*2)
	buf := make([]byte, 4000)
	var out []*rtp.Packet
	for i := range n {
		for k := range 960 {
			x := float64(i*960 + k)
			v := float32(0.25*math.Sin(2*math.Pi*220*x/48000) + 0.1*math.Sin(2*math.Pi*700*x/48000))
			pcm[2*k], pcm[2*k+1] = v, v
		}
		nb, err := enc.Encode(pcm, buf)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(1000 + i), Timestamp: uint32(5000 + 960*i), SSRC: 7},
			Payload: append([]byte(nil), buf[:nb]...),
		})
	}
	return out
}

func decodeOpus(tb testing.TB, pkts []*rtp.Packet) []float32 {
	tb.Helper()
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(48000, 2))
	if err != nil {
		tb.Fatal(err)
	}
	pcm := make([]float32, 5760*2)
	var mono []float32
	for _, p := range pkts {
		n, err := dec.Decode(p.Payload, pcm)
		if err != nil {
			tb.Fatal(err)
		}
		mono = downmix(mono, pcm[:n*2], 2)
	}
	return mono
}

func mustArm(tb testing.TB, code uint32) *cueArm {
	tb.Helper()
	b := newCueBook(cue.Audible, -12)
	a, err := b.arm("d", code, time.Unix(0, 0))
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// TestOpusMixTouchesOnlyCoveredPackets: packets before and after the cue
// are relayed byte for byte, every RTP header is unchanged, and the cue is
// heard where it was mixed.
func TestOpusMixTouchesOnlyCoveredPackets(t *testing.T) {
	in := opusPackets(t, 3)
	arm := mustArm(t, 0xBEEF01)
	o := &opusMixer{st: &Stream{log: testLogger(t)}}
	const at = 50 // the open lands at 1 s
	covered := (len(arm.samples) + 959) / 960
	var out []*rtp.Packet
	for i, p := range in {
		var a *cueArm
		if i >= at {
			a = arm
		}
		res := o.process(p, a)
		if len(res) != 1 {
			t.Fatalf("packet %d became %d packets", i, len(res))
		}
		q := res[0]
		if q.Header.SequenceNumber != p.SequenceNumber || q.Timestamp != p.Timestamp || q.SSRC != p.SSRC || q.PayloadType != p.PayloadType || q.Marker != p.Marker {
			t.Fatalf("packet %d header changed: %+v -> %+v", i, p.Header, q.Header)
		}
		inCue := i >= at && i < at+covered
		if same := bytes.Equal(q.Payload, p.Payload); same == inCue {
			t.Fatalf("packet %d: payload unchanged=%v, but covered by the cue=%v", i, same, inCue)
		}
		out = append(out, q)
	}
	dets := cue.DetectAll(decodeOpus(t, out), 48000)
	if len(dets) != 1 || dets[0].Code != 0xBEEF01 {
		t.Fatalf("detections %+v, want one of code BEEF01", dets)
	}
	if d := dets[0].Start - time.Second; d < -10*time.Millisecond || d > 20*time.Millisecond {
		t.Fatalf("cue starts at %v in the audio, want 1s", dets[0].Start)
	}
}

// TestLPCMMix mixes into 16-bit stereo LPCM at 44.1 kHz (resampling the cue).
func TestLPCMMix(t *testing.T) {
	f := &format.LPCM{PayloadTyp: 97, BitDepth: 16, SampleRate: 44100, ChannelCount: 2}
	ts := &testServer{Server: &Server{log: testLogger(t)}}
	st := &Stream{log: testLogger(t)}
	proc := ts.newProc(st, &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{f}})
	arm := mustArm(t, 0x123456)
	const frames = 441 // 10 ms
	var mono []float32
	for i := range 300 {
		p := &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(i * frames)}, Payload: make([]byte, frames*4)}
		var a *cueArm
		if i >= 50 {
			a = arm
		}
		q := proc.process(p, a)[0]
		if q.Timestamp != p.Timestamp || len(q.Payload) != len(p.Payload) {
			t.Fatal("header or size changed")
		}
		for k := 0; k < frames; k++ {
			l := float32(int16(uint16(q.Payload[k*4])<<8|uint16(q.Payload[k*4+1]))) / 32768
			mono = append(mono, l)
		}
	}
	// Resample 44.1 -> 48 kHz for the detector by linear interpolation.
	res := make([]float32, len(mono)*48000/44100)
	for i := range res {
		pos := float64(i) * 44100 / 48000
		k := int(pos)
		if k+1 < len(mono) {
			fr := float32(pos - float64(k))
			res[i] = mono[k]*(1-fr) + mono[k+1]*fr
		}
	}
	dets := cue.DetectAll(res, 48000)
	if len(dets) != 1 || dets[0].Code != 0x123456 {
		t.Fatalf("detections %+v", dets)
	}
}

func TestG711RoundTrip(t *testing.T) {
	for _, v := range []int16{0, 1, -1, 100, -100, 1000, -1000, 12345, -12345, 32000, -32000} {
		for name, c := range map[string][2]func(int16) int16{
			"ulaw": {func(x int16) int16 { return ulawDecode(ulawEncode(x)) }},
			"alaw": {func(x int16) int16 { return alawDecode(alawEncode(x)) }},
		} {
			got := c[0](v)
			tol := math.Abs(float64(v))/16 + 16
			if math.Abs(float64(got)-float64(v)) > tol {
				t.Errorf("%s(%d) round trip = %d", name, v, got)
			}
		}
	}
}

// TestAACPassesThrough: AAC cannot be mixed; packets go through as they are.
func TestAACPassesThrough(t *testing.T) {
	ts := &testServer{Server: &Server{log: testLogger(t)}}
	st := &Stream{log: testLogger(t)}
	proc := ts.newProc(st, &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{&format.MPEG4Audio{PayloadTyp: 97}}})
	p := &rtp.Packet{Header: rtp.Header{SequenceNumber: 3}, Payload: []byte{1, 2, 3}}
	if q := proc.process(p, mustArm(t, 1)); len(q) != 1 || q[0] != p {
		t.Fatalf("AAC packet changed: %+v", q)
	}
}

// BenchmarkCueMix is the cost of one cue mixed into Opus: decode, mix and
// re-encode the packets it covers (about 0.96 s of 20 ms stereo packets).
func BenchmarkCueMix(b *testing.B) {
	in := opusPackets(b, 1.2)
	arm := mustArm(b, 0xABCDEF)
	st := &Stream{log: testLogger(b)}
	b.ResetTimer()
	for range b.N {
		o := &opusMixer{st: st}
		for _, p := range in[:3] {
			o.process(p, nil)
		}
		for _, p := range in[3:] {
			o.process(p, arm)
		}
	}
}
