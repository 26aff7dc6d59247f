package highlight

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/pmp4"
)

// Clips are progressive MP4 (moov before mdat), so a browser's <video> can
// start playing and seek with Range requests before the whole file arrives.

const (
	videoTimescale = 90000
	audioTimescale = 48000
)

func ticks(d time.Duration, scale int64) int64 {
	return int64(d) * scale / int64(time.Second)
}

func fromTicks(t int64, scale uint32) time.Duration {
	return time.Duration(t * int64(time.Second) / int64(scale))
}

// clipInfo describes a written clip.
type clipInfo struct {
	// start is the first video frame on the session timeline (a keyframe).
	start time.Duration
	// duration is the video's length.
	duration time.Duration
	frames   int
}

// writeClipMP4 writes units (starting with a video keyframe) as an MP4. It
// stops early where the stream changed its SPS/PPS, since one MP4 track has
// one set. audioChannels is 0 when the stream has no Opus audio.
func writeClipMP4(w io.Writer, units []accessUnit, audioChannels int) (clipInfo, error) {
	if len(units) == 0 || units[0].track != trackVideo || !units[0].key {
		return clipInfo{}, errors.New("clip must start with a video keyframe")
	}
	params := units[0].params
	if params == nil || len(params.sps) == 0 || len(params.pps) == 0 {
		return clipInfo{}, errors.New("clip has no H.264 parameter sets")
	}
	var video, audio []accessUnit
	for _, u := range units {
		switch u.track {
		case trackVideo:
			if !u.params.equal(params) {
				goto done
			}
			video = append(video, u)
		case trackAudio:
			if audioChannels > 0 {
				audio = append(audio, u)
			}
		}
	}
done:
	t0 := video[0].dts
	vt := &pmp4.Track{ID: 1, TimeScale: videoTimescale, Codec: &mp4.CodecH264{SPS: params.sps, PPS: params.pps}}
	var lastDur int64 = videoTimescale / 30
	for i, u := range video {
		dur := lastDur
		if i+1 < len(video) {
			dur = ticks(video[i+1].dts-t0, videoTimescale) - ticks(u.dts-t0, videoTimescale)
			if dur <= 0 {
				dur = 1
			}
			lastDur = dur
		}
		vt.Samples = append(vt.Samples, memSample(u.data, uint32(dur), int32(ticks(u.pts-u.dts, videoTimescale)), !u.key))
	}
	end := video[len(video)-1].dts + fromTicks(lastDur, videoTimescale)
	p := &pmp4.Presentation{Tracks: []*pmp4.Track{vt}}

	if len(audio) > 0 {
		at := &pmp4.Track{ID: 2, TimeScale: audioTimescale, Codec: &mp4.CodecOpus{ChannelCount: audioChannels}}
		first := true
		for _, u := range audio {
			if u.pts < t0 || u.pts >= end {
				continue
			}
			if first {
				at.TimeOffset = int32(ticks(u.pts-t0, audioTimescale))
				first = false
			}
			d := opus.PacketDuration2(u.data)
			if d <= 0 {
				d = 960
			}
			at.Samples = append(at.Samples, memSample(u.data, uint32(d), 0, false))
		}
		if len(at.Samples) > 0 {
			p.Tracks = append(p.Tracks, at)
		}
	}
	if err := p.Marshal(w); err != nil {
		return clipInfo{}, fmt.Errorf("write mp4: %w", err)
	}
	return clipInfo{start: t0, duration: end - t0, frames: len(video)}, nil
}

func memSample(b []byte, dur uint32, ptsOffset int32, nonSync bool) *pmp4.Sample {
	return &pmp4.Sample{
		Duration: dur, PTSOffset: ptsOffset, IsNonSyncSample: nonSync,
		PayloadSize: uint32(len(b)),
		GetPayload:  func() ([]byte, error) { return b, nil },
	}
}

// MP4Info is what the editor and export need to know of a clip file.
type MP4Info struct {
	Duration time.Duration
	// Keyframes are the offsets of the video's sync samples.
	Keyframes []time.Duration
}

type trackTimes struct {
	track  *pmp4.Track
	starts []int64 // sample start in track ticks, TimeOffset included
	end    int64
}

func timesOf(t *pmp4.Track) trackTimes {
	tt := trackTimes{track: t, starts: make([]int64, len(t.Samples))}
	cur := int64(t.TimeOffset)
	for i, s := range t.Samples {
		tt.starts[i] = cur
		cur += int64(s.Duration)
	}
	tt.end = cur
	return tt
}

// ProbeMP4 reads a clip's duration and keyframe offsets.
func ProbeMP4(src io.ReadSeeker) (MP4Info, error) {
	_, vt, err := readMP4(src)
	if err != nil {
		return MP4Info{}, err
	}
	tt := timesOf(vt)
	info := MP4Info{Duration: fromTicks(tt.end, vt.TimeScale)}
	for i, s := range vt.Samples {
		if !s.IsNonSyncSample {
			info.Keyframes = append(info.Keyframes, fromTicks(tt.starts[i], vt.TimeScale))
		}
	}
	return info, nil
}

// TrimMP4 remuxes the part [in, out) of the clip in src to dst, never
// re-encoding: it starts at the last keyframe at or before in, so the
// result may begin up to one keyframe interval early. It refuses trim
// points outside the clip or out of order (ErrBadTrim) before writing a
// byte, and returns where the written part starts in the source clip and
// how long it is.
func TrimMP4(dst io.Writer, src io.ReadSeeker, in, out time.Duration) (start, duration time.Duration, err error) {
	p, vt, err := readMP4(src)
	if err != nil {
		return 0, 0, err
	}
	vtt := timesOf(vt)
	total := fromTicks(vtt.end, vt.TimeScale)
	if in < 0 || out <= in || out > total+time.Millisecond {
		return 0, 0, fmt.Errorf("%w: [%s, %s) is not within the clip's %s", ErrBadTrim, in, out, total)
	}
	inT, outT := ticks(in, int64(vt.TimeScale)), ticks(out, int64(vt.TimeScale))
	first := -1
	last := 0
	for i, s := range vt.Samples {
		if !s.IsNonSyncSample && vtt.starts[i] <= inT {
			first = i
		}
		if vtt.starts[i] < outT {
			last = i + 1
		}
	}
	if first < 0 {
		first = 0
	}
	if last <= first {
		return 0, 0, fmt.Errorf("%w: no frame in [%s, %s)", ErrBadTrim, in, out)
	}
	nvt := &pmp4.Track{ID: 1, TimeScale: vt.TimeScale, Codec: vt.Codec, Samples: vt.Samples[first:last]}
	startT := vtt.starts[first]
	endT := vtt.starts[last-1] + int64(vt.Samples[last-1].Duration)
	np := &pmp4.Presentation{Tracks: []*pmp4.Track{nvt}}
	start = fromTicks(startT, vt.TimeScale)
	end := fromTicks(endT, vt.TimeScale)
	for _, t := range p.Tracks {
		if t == vt || t.Codec == nil || t.Codec.IsVideo() {
			continue
		}
		tt := timesOf(t)
		at := &pmp4.Track{ID: len(np.Tracks) + 1, TimeScale: t.TimeScale, Codec: t.Codec}
		for i, s := range t.Samples {
			st := fromTicks(tt.starts[i], t.TimeScale)
			if st < start || st >= end {
				continue
			}
			if len(at.Samples) == 0 {
				at.TimeOffset = int32(ticks(st-start, int64(t.TimeScale)))
			}
			at.Samples = append(at.Samples, s)
		}
		if len(at.Samples) > 0 {
			np.Tracks = append(np.Tracks, at)
		}
	}
	if err := np.Marshal(dst); err != nil {
		return 0, 0, fmt.Errorf("write trimmed mp4: %w", err)
	}
	return start, end - start, nil
}
