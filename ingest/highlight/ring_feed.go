package highlight

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/microdrop/microdrop/ingest"
)

// ringFeed turns one publisher's relayed RTP into access units on its
// session's timeline and pushes them into the session's ring. A publisher
// that comes back gets a new ringFeed on the same ring: its RTP clocks start
// anew, so each feed anchors them to the wall clock of its first packet.
type ringFeed struct {
	ring  *Ring
	log   *slog.Logger
	start time.Time // session start: timeline zero

	videoMedia, audioMedia int
	audioChannels          int

	dec     *rtph264.Decoder
	dts     *h264.DTSExtractor
	params  *h264Params
	needKey bool
	video   rtpClock
	audio   rtpClock
}

// rtpClock unwraps a 32-bit RTP timestamp onto the session timeline.
type rtpClock struct {
	started bool
	rate    int64
	last    uint32
	ticks   int64         // unwrapped ticks since the first packet
	base    time.Duration // session time of the first packet
}

func (c *rtpClock) at(ts uint32, recv, start time.Time) (int64, time.Duration) {
	if !c.started {
		c.started = true
		c.last = ts
		c.base = recv.Sub(start)
		return 0, c.base
	}
	c.ticks += int64(int32(ts - c.last))
	c.last = ts
	return c.ticks, c.base + time.Duration(c.ticks*int64(time.Second)/c.rate)
}

// newRingFeed picks the stream's H.264 video and Opus audio; it returns nil
// when there is no H.264 video to clip.
func newRingFeed(st *ingest.Stream, ring *Ring, start time.Time, log *slog.Logger) *ringFeed {
	f := &ringFeed{ring: ring, log: log, start: start, videoMedia: -1, audioMedia: -1, needKey: true}
	for i, m := range st.Description().Medias {
		for _, fo := range m.Formats {
			switch fo := fo.(type) {
			case *format.H264:
				if f.videoMedia >= 0 {
					continue
				}
				dec, err := fo.CreateDecoder()
				if err != nil {
					continue
				}
				f.videoMedia, f.dec = i, dec
				f.video.rate = int64(fo.ClockRate())
				if sps, pps := fo.SafeParams(); len(sps) > 0 && len(pps) > 0 {
					f.params = &h264Params{sps: append([]byte(nil), sps...), pps: append([]byte(nil), pps...)}
				}
			case *format.Opus:
				if f.audioMedia >= 0 {
					continue
				}
				f.audioMedia = i
				f.audio.rate = int64(fo.ClockRate())
				f.audioChannels = fo.ChannelCount
				if f.audioChannels == 0 {
					f.audioChannels = 2
				}
			}
		}
	}
	if f.videoMedia < 0 {
		return nil
	}
	f.dts = newDTSExtractor()
	return f
}

func (f *ringFeed) onPacket(p *ingest.Packet) {
	switch p.Media {
	case f.videoMedia:
		f.onVideo(p)
	case f.audioMedia:
		if len(p.RTP.Payload) == 0 {
			return
		}
		_, t := f.audio.at(p.RTP.Timestamp, p.Received, f.start)
		// push copies the payload into the ring's storage.
		f.ring.push(accessUnit{track: trackAudio, dts: t, pts: t, recv: p.Received, data: p.RTP.Payload})
	}
}

func (f *ringFeed) onVideo(p *ingest.Packet) {
	nalus, err := f.dec.Decode(p.RTP)
	if err != nil {
		if !errors.Is(err, rtph264.ErrMorePacketsNeeded) {
			f.log.Debug("h264 depacketize", "err", err)
		}
		return
	}
	ptsTicks, pts := f.video.at(p.RTP.Timestamp, p.Received, f.start)
	au := make([][]byte, 0, len(nalus))
	var sps, pps []byte
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeAccessUnitDelimiter:
			continue
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
		au = append(au, n)
	}
	if len(au) == 0 {
		return
	}
	if sps != nil || pps != nil {
		next := &h264Params{}
		if f.params != nil {
			*next = *f.params
		}
		if sps != nil {
			next.sps = append([]byte(nil), sps...)
		}
		if pps != nil {
			next.pps = append([]byte(nil), pps...)
		}
		if !next.equal(f.params) {
			f.params = next
		}
	}
	key := h264.IsRandomAccess(au)
	if f.needKey {
		if !key || f.params == nil {
			return
		}
		f.dts.Initialize()
		f.needKey = false
	}
	dtsIn := au
	if key && sps == nil {
		// Publishers that send SPS/PPS only in the SDP (ffmpeg, OBS over
		// RTSP): the DTS extractor needs them with the IDR.
		dtsIn = append([][]byte{f.params.sps, f.params.pps}, au...)
	}
	dtsTicks, err := f.dts.Extract(dtsIn, ptsTicks)
	if err != nil {
		f.log.Debug("h264 dts", "err", err)
		f.needKey = true
		f.dts = newDTSExtractor()
		return
	}
	dts := pts - time.Duration((ptsTicks-dtsTicks)*int64(time.Second)/f.video.rate)
	// The access unit as AVCC (each NAL unit after its 4-byte length),
	// written straight into the ring's storage.
	n := 0
	for _, nalu := range au {
		n += 4 + len(nalu)
	}
	f.ring.pushWith(accessUnit{track: trackVideo, key: key, dts: dts, pts: pts, recv: p.Received, params: f.params}, n, func(b []byte) {
		for _, nalu := range au {
			binary.BigEndian.PutUint32(b, uint32(len(nalu)))
			b = b[4+copy(b[4:], nalu):]
		}
	})
}

func newDTSExtractor() *h264.DTSExtractor {
	d := &h264.DTSExtractor{}
	d.Initialize()
	return d
}
