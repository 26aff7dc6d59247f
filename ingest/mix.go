package ingest

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
	"github.com/thesyncim/gopus"

	"github.com/microdrop/microdrop/ingest/cue"
)

// cueRate is the sample rate of cue.Encode's output and of Opus in RTP.
const cueRate = 48000

// cueArm is one drop's open as the media path sees it.
type cueArm struct {
	id       uint64
	dropID   string
	code     uint32
	openedAt time.Time
	samples  []float32 // mono 48 kHz; nil when the cue could not be encoded
	levelDB  float64
}

// cueProfile maps the configured profile name to the codec's profile.
func cueProfile(name string) (cue.Profile, error) {
	if name == "" {
		return cue.Audible, nil
	}
	p, err := cue.ParseProfile(strings.ToLower(name))
	if err != nil {
		return "", fmt.Errorf("cue profile: %w", err)
	}
	return p, nil
}

// cueBook renders cue codes to samples once and remembers a few.
type cueBook struct {
	profile cue.Profile
	levelDB float64
	mu      sync.Mutex
	cache   map[uint32][]float32
	nextID  uint64
}

func newCueBook(p cue.Profile, levelDB float64) *cueBook {
	return &cueBook{profile: p, levelDB: levelDB, cache: make(map[uint32][]float32)}
}

// arm builds the cueArm for a drop; a cue that cannot be encoded still
// marks the video.
func (b *cueBook) arm(dropID string, code uint32, openedAt time.Time) (*cueArm, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	a := &cueArm{id: b.nextID, dropID: dropID, code: code, openedAt: openedAt, levelDB: b.levelDB}
	if s, ok := b.cache[code]; ok {
		a.samples = s
		return a, nil
	}
	s, err := cue.Encode(code, b.profile)
	if err != nil {
		return a, fmt.Errorf("encode cue %d: %w", code, err)
	}
	if len(b.cache) >= 32 {
		clear(b.cache)
	}
	b.cache[code] = s
	a.samples = s
	return a, nil
}

// newProc picks the per-media processing for a stream's media.
func (s *Server) newProc(st *Stream, m *description.Media) packetProc {
	if len(m.Formats) == 0 {
		return passthrough{}
	}
	switch f := m.Formats[0].(type) {
	case *format.H264:
		return &h264Marker{st: st}
	case *format.Opus:
		return &opusMixer{st: st}
	case *format.LPCM:
		if f.BitDepth != 16 && f.BitDepth != 24 {
			st.log.Warn("LPCM audio passes through without the cue: only 16 and 24 bit can be mixed", "bit_depth", f.BitDepth)
			return passthrough{}
		}
		return &pcmMixer{st: st, rate: f.SampleRate, channels: max(f.ChannelCount, 1), codec: pcmLPCM, bytes: f.BitDepth / 8}
	case *format.G711:
		c := pcmALaw
		if f.MULaw {
			c = pcmULaw
		}
		return &pcmMixer{st: st, rate: max(f.SampleRate, 8000), channels: max(f.ChannelCount, 1), codec: c, bytes: 1}
	case *format.MPEG4Audio, *format.MPEG4AudioLATM:
		st.log.Warn("AAC audio passes through unchanged: the cue is not mixed into AAC (publish Opus, LPCM or G.711 to carry the audio cue); the video is still marked")
		return passthrough{}
	}
	return passthrough{}
}

type passthrough struct{}

func (passthrough) process(pkt *rtp.Packet, _ *cueArm) []*rtp.Packet { return []*rtp.Packet{pkt} }

// opusMixer mixes the cue into the Opus packets it covers: only those are
// decoded, mixed and re-encoded; all others, and every RTP header, pass
// through untouched.
type opusMixer struct {
	st      *Stream
	lastArm uint64
	job     *opusJob
	hist    [3][]byte // recent payloads, to warm the decoder up
	histN   int
	one     [1]*rtp.Packet
}

type opusJob struct {
	arm     *cueArm
	startTS uint32
	dec     *gopus.Decoder
	enc     *gopus.Encoder
	frame   int
	pcm     []float32
	ch      []float32
	out     []byte
}

const opusChannels = 2

func (o *opusMixer) process(pkt *rtp.Packet, arm *cueArm) []*rtp.Packet {
	if arm != nil && arm.id != o.lastArm {
		o.lastArm = arm.id
		if arm.samples != nil {
			job, err := newOpusJob(arm, pkt.Timestamp, o.history())
			if err != nil {
				o.st.log.Warn("cue not mixed", "err", err)
			} else {
				o.job = job
			}
		}
	}
	o.hist[o.histN%len(o.hist)] = pkt.Payload
	o.histN++
	if o.job == nil {
		o.one[0] = pkt
		return o.one[:]
	}
	out, done, err := o.job.mix(pkt)
	if err != nil {
		o.st.log.Warn("cue mix stopped", "err", err, "drop", o.job.arm.dropID)
		done = true
	}
	if done {
		o.st.log.Info("audio cue mixed", "drop", o.job.arm.dropID, "cue", o.job.arm.code)
		o.job = nil
	}
	o.one[0] = out
	return o.one[:]
}

func (o *opusMixer) history() [][]byte {
	var h [][]byte
	for i := o.histN - len(o.hist); i < o.histN; i++ {
		if i >= 0 {
			h = append(h, o.hist[i%len(o.hist)])
		}
	}
	return h
}

func newOpusJob(arm *cueArm, startTS uint32, warm [][]byte) (*opusJob, error) {
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(cueRate, opusChannels))
	if err != nil {
		return nil, fmt.Errorf("opus decoder: %w", err)
	}
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: cueRate, Channels: opusChannels, Application: gopus.ApplicationAudio})
	if err != nil {
		return nil, fmt.Errorf("opus encoder: %w", err)
	}
	j := &opusJob{
		arm:     arm,
		startTS: startTS,
		dec:     dec,
		enc:     enc,
		pcm:     make([]float32, 5760*opusChannels),
		out:     make([]byte, 4000),
	}
	bits := 0
	for _, p := range warm {
		bits += len(p) * 8 * 50
	}
	bitrate := 128000
	if len(warm) > 0 {
		bitrate = min(max(2*bits/len(warm), 64000), 256000)
	}
	_ = enc.SetBitrate(bitrate)
	// Warm both codecs on the audio just before the cue so the first
	// re-encoded packet continues the signal instead of starting cold.
	for _, p := range warm {
		n, err := dec.Decode(p, j.pcm)
		if err != nil || n == 0 {
			continue
		}
		if j.setFrame(n) == nil {
			_, _ = enc.Encode(j.pcm[:n*opusChannels], j.out)
		}
	}
	return j, nil
}

func (j *opusJob) setFrame(n int) error {
	if n == j.frame {
		return nil
	}
	if err := j.enc.SetFrameSize(n); err != nil {
		return err
	}
	j.frame = n
	return nil
}

// mix returns the packet to relay and whether the cue has been fully mixed.
func (j *opusJob) mix(pkt *rtp.Packet) (*rtp.Packet, bool, error) {
	off := int(int32(pkt.Timestamp - j.startTS))
	if off < 0 {
		return pkt, false, nil // reordered packet from before the cue
	}
	if off >= len(j.arm.samples) {
		return pkt, true, nil
	}
	n, err := j.dec.Decode(pkt.Payload, j.pcm)
	if err != nil {
		return pkt, true, fmt.Errorf("opus decode: %w", err)
	}
	if n == 0 {
		return pkt, false, nil
	}
	if err := j.setFrame(n); err != nil {
		// 120 ms multi-frame packets cannot be re-encoded as one frame.
		return pkt, false, nil
	}
	pcm := j.pcm[:n*opusChannels]
	mixInterleaved(pcm, opusChannels, j.arm.samples, off, 1, j.arm.levelDB, &j.ch)
	nb, err := j.enc.Encode(pcm, j.out)
	if err != nil {
		return pkt, true, fmt.Errorf("opus encode: %w", err)
	}
	if nb == 0 {
		return pkt, false, nil
	}
	cp := &rtp.Packet{Header: pkt.Header, Payload: append([]byte(nil), j.out[:nb]...)}
	return cp, off+n >= len(j.arm.samples), nil
}

// mixInterleaved mixes samples[off*step...] into each channel of pcm.
// step is how many cue samples (at 48 kHz) one pcm frame spans; for rates
// below 48 kHz the cue is resampled linearly.
func mixInterleaved(pcm []float32, channels int, samples []float32, off int, step float64, levelDB float64, scratch *[]float32) {
	frames := len(pcm) / channels
	if cap(*scratch) < frames {
		*scratch = make([]float32, frames)
	}
	cueBuf := make([]float32, frames)
	start := float64(off) * step
	for i := range frames {
		pos := start + float64(i)*step
		k := int(pos)
		if k+1 < len(samples) {
			fr := float32(pos - float64(k))
			cueBuf[i] = samples[k]*(1-fr) + samples[k+1]*fr
		} else if k < len(samples) {
			cueBuf[i] = samples[k]
		}
	}
	ch := (*scratch)[:frames]
	for c := range channels {
		for i := range frames {
			ch[i] = pcm[i*channels+c]
		}
		cue.Mix(ch, cueBuf, levelDB)
		for i := range frames {
			pcm[i*channels+c] = ch[i]
		}
	}
}

type pcmCodec int

const (
	pcmLPCM pcmCodec = iota
	pcmULaw
	pcmALaw
)

// pcmMixer mixes the cue into LPCM (big-endian 16/24 bit) and G.711.
type pcmMixer struct {
	st       *Stream
	rate     int
	channels int
	codec    pcmCodec
	bytes    int
	lastArm  uint64
	arm      *cueArm
	startTS  uint32
	pcm      []float32
	scratch  []float32
	one      [1]*rtp.Packet
}

func (m *pcmMixer) process(pkt *rtp.Packet, arm *cueArm) []*rtp.Packet {
	m.one[0] = pkt
	if arm != nil && arm.id != m.lastArm {
		m.lastArm = arm.id
		if arm.samples != nil {
			m.arm, m.startTS = arm, pkt.Timestamp
		}
	}
	if m.arm == nil {
		return m.one[:]
	}
	step := float64(cueRate) / float64(m.rate)
	off := int(int32(pkt.Timestamp - m.startTS))
	if off < 0 {
		return m.one[:]
	}
	if float64(off)*step >= float64(len(m.arm.samples)) {
		m.st.log.Info("audio cue mixed", "drop", m.arm.dropID, "cue", m.arm.code)
		m.arm = nil
		return m.one[:]
	}
	frameBytes := m.bytes * m.channels
	n := len(pkt.Payload) / frameBytes * m.channels
	if cap(m.pcm) < n {
		m.pcm = make([]float32, n)
	}
	pcm := m.pcm[:n]
	p := pkt.Payload
	for i := range pcm {
		pcm[i] = m.decode(p[i*m.bytes:])
	}
	mixInterleaved(pcm, m.channels, m.arm.samples, off, step, m.arm.levelDB, &m.scratch)
	out := make([]byte, len(p))
	copy(out, p) // keeps any trailing partial frame
	for i, v := range pcm {
		m.encode(out[i*m.bytes:], v)
	}
	m.one[0] = &rtp.Packet{Header: pkt.Header, Payload: out}
	return m.one[:]
}

func (m *pcmMixer) decode(b []byte) float32 {
	switch m.codec {
	case pcmULaw:
		return float32(ulawDecode(b[0])) / 32768
	case pcmALaw:
		return float32(alawDecode(b[0])) / 32768
	}
	if m.bytes == 3 {
		v := int32(b[0])<<24 | int32(b[1])<<16 | int32(b[2])<<8
		return float32(v) / 2147483648
	}
	return float32(int16(uint16(b[0])<<8|uint16(b[1]))) / 32768
}

func (m *pcmMixer) encode(b []byte, v float32) {
	v = max(-1, min(v, 1))
	switch m.codec {
	case pcmULaw:
		b[0] = ulawEncode(int16(math.Round(float64(v) * 32767)))
		return
	case pcmALaw:
		b[0] = alawEncode(int16(math.Round(float64(v) * 32767)))
		return
	}
	if m.bytes == 3 {
		x := int32(math.Round(float64(v) * 8388607))
		b[0], b[1], b[2] = byte(x>>16), byte(x>>8), byte(x)
		return
	}
	x := int16(math.Round(float64(v) * 32767))
	b[0], b[1] = byte(uint16(x)>>8), byte(x)
}

// G.711 per ITU-T G.711 (the classic Sun reference implementation).

func ulawDecode(u byte) int16 {
	u = ^u
	t := (int32(u&0x0f) << 3) + 0x84
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(0x84 - t)
	}
	return int16(t - 0x84)
}

func ulawEncode(s int16) byte {
	const bias, clip = 0x84, 32635
	x := int32(s)
	sign := byte(0)
	if x < 0 {
		x = -x
		sign = 0x80
	}
	x = min(x, clip) + bias
	exp := byte(7)
	for mask := int32(0x4000); x&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := byte(x>>(exp+3)) & 0x0f
	return ^(sign | exp<<4 | mant)
}

func alawDecode(a byte) int16 {
	a ^= 0x55
	t := int32(a&0x0f) << 4
	seg := (a & 0x70) >> 4
	switch seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}

func alawEncode(s int16) byte {
	x := int32(s)
	mask := byte(0xd5)
	if x < 0 {
		mask = 0x55
		x = -x - 1
	}
	x = min(x, 32767)
	seg := byte(0)
	for end := int32(0xff); seg < 8 && x > end; end = end<<1 | 1 {
		seg++
	}
	if seg >= 8 {
		return 0x7f ^ mask
	}
	aval := seg << 4
	if seg < 2 {
		aval |= byte(x>>4) & 0x0f
	} else {
		aval |= byte(x>>(seg+3)) & 0x0f
	}
	return aval ^ mask
}
