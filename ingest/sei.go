package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pion/rtp"
)

// MarkerUUID identifies microdrop's SEI user_data_unregistered messages:
// the ASCII bytes "microdrop-cue-v1".
var MarkerUUID = [16]byte{'m', 'i', 'c', 'r', 'o', 'd', 'r', 'o', 'p', '-', 'c', 'u', 'e', '-', 'v', '1'}

// Errors from ParseSEI.
var (
	ErrNotSEI    = errors.New("not an H.264 SEI NAL unit")
	ErrBadSEI    = errors.New("malformed SEI")
	ErrNoMarker  = errors.New("SEI carries no microdrop marker")
	errSEITooBig = errors.New("marker too large")
)

// Marker is what microdrop writes into the video at a drop's open.
type Marker struct {
	DropID string `json:"drop"`
	Cue    uint32 `json:"cue"`
	UnixMS int64  `json:"unix_ms"`
}

const (
	naluTypeSEI   = 6
	seiUserDataUn = 5
	maxMarkerJSON = 1024
)

// BuildSEI returns an H.264 SEI NAL unit (no start code) carrying m as
// user_data_unregistered, with emulation prevention applied.
func BuildSEI(m Marker) ([]byte, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marker json: %w", err)
	}
	if len(js) > maxMarkerJSON {
		return nil, errSEITooBig
	}
	size := 16 + len(js)
	rbsp := make([]byte, 0, size+8)
	rbsp = append(rbsp, seiUserDataUn)
	for n := size; ; n -= 255 {
		if n >= 255 {
			rbsp = append(rbsp, 0xff)
			continue
		}
		rbsp = append(rbsp, byte(n))
		break
	}
	rbsp = append(rbsp, MarkerUUID[:]...)
	rbsp = append(rbsp, js...)
	rbsp = append(rbsp, 0x80) // rbsp_trailing_bits
	return append([]byte{naluTypeSEI}, addEmulationPrevention(rbsp)...), nil
}

// ParseSEI reads a microdrop Marker from an H.264 SEI NAL unit (no start
// code). It returns ErrNotSEI for other NAL types, ErrNoMarker when no
// message is microdrop's, and ErrBadSEI when the syntax is broken.
func ParseSEI(nalu []byte) (Marker, error) {
	if len(nalu) < 2 || nalu[0]&0x80 != 0 || nalu[0]&0x1f != naluTypeSEI {
		return Marker{}, ErrNotSEI
	}
	b := removeEmulationPrevention(nalu[1:])
	for len(b) > 0 {
		if len(b) == 1 && b[0] == 0x80 {
			break // trailing bits
		}
		var typ, size int
		var ok bool
		if typ, b, ok = seiNumber(b); !ok {
			return Marker{}, fmt.Errorf("%w: truncated payload type", ErrBadSEI)
		}
		if size, b, ok = seiNumber(b); !ok {
			return Marker{}, fmt.Errorf("%w: truncated payload size", ErrBadSEI)
		}
		if size > len(b) {
			return Marker{}, fmt.Errorf("%w: payload size %d exceeds %d bytes left", ErrBadSEI, size, len(b))
		}
		payload := b[:size]
		b = b[size:]
		if typ != seiUserDataUn || size < 16 || !bytes.Equal(payload[:16], MarkerUUID[:]) {
			continue
		}
		var m Marker
		dec := json.NewDecoder(bytes.NewReader(payload[16:]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			return Marker{}, fmt.Errorf("%w: marker json: %w", ErrBadSEI, err)
		}
		return m, nil
	}
	return Marker{}, ErrNoMarker
}

// seiNumber reads an ff-coded SEI payload type or size.
func seiNumber(b []byte) (int, []byte, bool) {
	n := 0
	for {
		if len(b) == 0 {
			return 0, nil, false
		}
		c := b[0]
		b = b[1:]
		n += int(c)
		if c != 0xff {
			return n, b, true
		}
		if n > 1<<20 {
			return 0, nil, false
		}
	}
}

// addEmulationPrevention inserts 0x03 after any two zero bytes followed by
// a byte <= 3, as H.264 7.4.1 requires.
func addEmulationPrevention(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/64+2)
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// removeEmulationPrevention drops each 0x03 that follows two zero bytes.
func removeEmulationPrevention(b []byte) []byte {
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// h264Marker inserts the drop's SEI before the first VCL NAL unit of the
// first access unit that starts after the open. Because it adds a packet,
// it renumbers the sequence of every later video packet.
type h264Marker struct {
	st        *Stream
	lastArm   uint64
	pending   *cueArm
	seqOffset uint16
	lastTS    uint32
	haveTS    bool
	prevMark  bool
	auFresh   bool
	out       [2]*rtp.Packet
}

func (h *h264Marker) process(pkt *rtp.Packet, arm *cueArm) []*rtp.Packet {
	if arm != nil && arm.id != h.lastArm {
		h.lastArm = arm.id
		h.pending = arm
	}
	newAU := !h.haveTS || pkt.Timestamp != h.lastTS || h.prevMark
	if newAU {
		h.auFresh = true
	}
	h.haveTS, h.lastTS, h.prevMark = true, pkt.Timestamp, pkt.Marker

	var sei *rtp.Packet
	if h.pending != nil && h.auFresh && startsVCL(pkt.Payload) {
		if nalu, err := BuildSEI(Marker{DropID: h.pending.dropID, Cue: h.pending.code, UnixMS: h.pending.openedAt.UnixMilli()}); err == nil {
			sei = &rtp.Packet{Header: pkt.Header, Payload: nalu}
			sei.Header.Marker = false
			sei.Header.SequenceNumber = pkt.SequenceNumber + h.seqOffset
			h.seqOffset++
			h.st.log.Info("video marked", "drop", h.pending.dropID, "cue", h.pending.code)
		}
		h.pending = nil
	}
	if startsVCL(pkt.Payload) {
		h.auFresh = false
	}
	if h.seqOffset != 0 {
		// The publisher's packet is this callback's alone (every edge
		// decodes a fresh one and is done with it once writePacket
		// returns), so it is renumbered in place: no copy per packet for
		// the rest of the stream.
		pkt.SequenceNumber += h.seqOffset
	}
	if sei != nil {
		return []*rtp.Packet{sei, pkt}
	}
	h.out[0] = pkt
	return h.out[:1]
}

// startsVCL reports whether an H.264 RTP payload begins a coded slice.
func startsVCL(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	isVCL := func(t byte) bool { return t >= 1 && t <= 5 }
	switch t := p[0] & 0x1f; {
	case isVCL(t):
		return true
	case t == 24: // STAP-A
		b := p[1:]
		for len(b) >= 3 {
			n := int(b[0])<<8 | int(b[1])
			if n == 0 || 2+n > len(b) {
				return false
			}
			if isVCL(b[2] & 0x1f) {
				return true
			}
			b = b[2+n:]
		}
	case t == 28: // FU-A
		return len(p) >= 2 && p[1]&0x80 != 0 && isVCL(p[1]&0x1f)
	}
	return false
}
