package highlight

import (
	"fmt"
	"io"

	amp4 "github.com/abema/go-mp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/pmp4"
)

// readMP4 reads a progressive MP4's H.264 and Opus tracks as a
// pmp4.Presentation whose samples read their payload from src on demand.
// It uses go-mp4's probe for the sample tables (pmp4's reader mishandles
// sample-to-chunk tables with runs of different lengths, which every
// interleaved file has).
func readMP4(src io.ReadSeeker) (*pmp4.Presentation, *pmp4.Track, error) {
	info, err := amp4.Probe(src)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadMP4, err)
	}
	traks, err := amp4.ExtractBox(src, nil, amp4.BoxPath{amp4.BoxTypeMoov(), amp4.BoxTypeTrak()})
	if err != nil || len(traks) != len(info.Tracks) {
		return nil, nil, fmt.Errorf("%w: track boxes: %v", ErrBadMP4, err)
	}
	p := &pmp4.Presentation{}
	var video *pmp4.Track
	for i, pt := range info.Tracks {
		stbl := amp4.BoxPath{amp4.BoxTypeMdia(), amp4.BoxTypeMinf(), amp4.BoxTypeStbl()}
		codec, err := trackCodec(src, traks[i], stbl)
		if err != nil {
			return nil, nil, err
		}
		if codec == nil || pt.Timescale == 0 {
			continue // a codec clips never carry
		}
		t := &pmp4.Track{ID: int(pt.TrackID), TimeScale: pt.Timescale, Codec: codec}
		sync := map[uint32]bool{}
		hasStss := false
		if bs, err := amp4.ExtractBoxWithPayload(src, traks[i], append(stbl, amp4.BoxTypeStss())); err == nil && len(bs) > 0 {
			hasStss = true
			for _, n := range bs[0].Payload.(*amp4.Stss).SampleNumber {
				sync[n] = true
			}
		}
		n := 0
		for _, ch := range pt.Chunks {
			off := ch.DataOffset
			for range ch.SamplesPerChunk {
				if n >= len(pt.Samples) {
					return nil, nil, fmt.Errorf("%w: chunk table longer than sample table", ErrBadMP4)
				}
				s := pt.Samples[n]
				n++
				at, size := int64(off), s.Size
				t.Samples = append(t.Samples, &pmp4.Sample{
					Duration: s.TimeDelta, PTSOffset: int32(s.CompositionTimeOffset),
					IsNonSyncSample: hasStss && !sync[uint32(n)], PayloadSize: size,
					GetPayload: func() ([]byte, error) {
						if _, err := src.Seek(at, io.SeekStart); err != nil {
							return nil, err
						}
						b := make([]byte, size)
						_, err := io.ReadFull(src, b)
						return b, err
					},
				})
				off += uint64(size)
			}
		}
		if n != len(pt.Samples) {
			return nil, nil, fmt.Errorf("%w: chunk table shorter than sample table", ErrBadMP4)
		}
		for _, e := range pt.EditList {
			switch {
			case e.MediaTime == -1 && info.Timescale > 0:
				t.TimeOffset += int32(e.SegmentDuration * uint64(pt.Timescale) / uint64(info.Timescale))
			case e.MediaTime > 0:
				t.TimeOffset -= int32(e.MediaTime)
			}
		}
		p.Tracks = append(p.Tracks, t)
		if codec.IsVideo() && video == nil && len(t.Samples) > 0 {
			video = t
		}
	}
	if video == nil {
		return nil, nil, fmt.Errorf("%w: no H.264 video track", ErrBadMP4)
	}
	return p, video, nil
}

// trackCodec reads the H.264 or Opus sample description of a track; nil
// for other codecs.
func trackCodec(src io.ReadSeeker, trak *amp4.BoxInfo, stbl amp4.BoxPath) (mp4.Codec, error) {
	stsd := append(append(amp4.BoxPath{}, stbl...), amp4.BoxTypeStsd())
	if bs, err := amp4.ExtractBoxWithPayload(src, trak, append(append(amp4.BoxPath{}, stsd...), amp4.BoxTypeAvc1(), amp4.BoxTypeAvcC())); err == nil && len(bs) > 0 {
		c := bs[0].Payload.(*amp4.AVCDecoderConfiguration)
		if len(c.SequenceParameterSets) == 0 || len(c.PictureParameterSets) == 0 {
			return nil, fmt.Errorf("%w: H.264 track without SPS/PPS", ErrBadMP4)
		}
		return &mp4.CodecH264{SPS: c.SequenceParameterSets[0].NALUnit, PPS: c.PictureParameterSets[0].NALUnit}, nil
	}
	if bs, err := amp4.ExtractBoxWithPayload(src, trak, append(append(amp4.BoxPath{}, stsd...), amp4.BoxTypeOpus(), amp4.BoxTypeDOps())); err == nil && len(bs) > 0 {
		return &mp4.CodecOpus{ChannelCount: int(bs[0].Payload.(*amp4.DOps).OutputChannelCount)}, nil
	}
	return nil, nil
}
