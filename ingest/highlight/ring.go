package highlight

import (
	"bytes"
	"sync"
	"time"
)

// Track kinds of buffered access units.
const (
	trackVideo uint8 = iota
	trackAudio
)

// unitOverhead is what one buffered unit costs besides its payload: the
// accessUnit struct in the deque and the payload's allocation header. It
// keeps the memory bound honest for streams of many small packets.
const unitOverhead = 96

// h264Params are the SPS and PPS a run of access units decodes with. Units
// share one *h264Params until the stream sends different ones.
type h264Params struct {
	sps, pps []byte
}

func (p *h264Params) equal(q *h264Params) bool {
	if p == q {
		return true
	}
	return p != nil && q != nil && bytes.Equal(p.sps, q.sps) && bytes.Equal(p.pps, q.pps)
}

// accessUnit is one buffered video access unit (AVCC) or audio packet.
// Payloads are never modified once pushed, so a window can hand them to a
// writer without copying while the ring goes on evicting.
type accessUnit struct {
	track uint8
	key   bool
	// dts and pts are on the session timeline (time since session start).
	dts, pts time.Duration
	recv     time.Time
	data     []byte
	params   *h264Params // video only
}

// RingConfig bounds a ring: whichever limit is reached first evicts.
type RingConfig struct {
	MaxDuration time.Duration
	MaxBytes    int64
}

// RingStats is a snapshot of a ring.
type RingStats struct {
	Units     int
	Keyframes int
	Bytes     int64
	// Span is the received-time distance from the oldest to the newest unit.
	Span    time.Duration
	Evicted uint64
}

// Ring is a rolling buffer of one stream's access units with a keyframe
// index. The oldest data leaves first, and always so that the buffer starts
// on a keyframe: everything before the first keyframe is useless to a clip.
// Safe for one writer and any number of readers.
type Ring struct {
	cfg RingConfig

	mu      sync.Mutex
	units   []accessUnit // deque: units[0] is the oldest
	keys    []int        // indexes into units of video keyframes, ascending; shifted on eviction
	dropped int          // units popped since keys was last rebased
	bytes   int64
	evicted uint64
}

// NewRing returns an empty ring.
func NewRing(cfg RingConfig) *Ring {
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = 120 * time.Second
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 256 << 20
	}
	return &Ring{cfg: cfg}
}

// push appends u (the first unit pushed must be a video keyframe or the
// ring drops it) and evicts what the bounds no longer allow.
func (r *Ring) push(u accessUnit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 && !(u.track == trackVideo && u.key) {
		// Nothing decodable precedes the first keyframe.
		r.evicted++
		return
	}
	if u.track == trackVideo && u.key {
		r.keys = append(r.keys, len(r.units)+r.dropped)
	}
	r.units = append(r.units, u)
	r.bytes += int64(len(u.data)) + unitOverhead
	r.evict()
}

// evict drops the oldest group of pictures while the memory bound is
// exceeded, or while the rest would still cover MaxDuration. A group is
// evicted whole, so the ring always starts on a keyframe; the newest group
// stays even when it alone exceeds the bounds.
func (r *Ring) evict() {
	newest := r.units[len(r.units)-1].recv
	for len(r.keys) > 1 {
		next := r.keys[1] - r.dropped
		if r.bytes <= r.cfg.MaxBytes && newest.Sub(r.units[next].recv) < r.cfg.MaxDuration {
			break
		}
		for j := 0; j < next; j++ {
			r.bytes -= int64(len(r.units[j].data)) + unitOverhead
			r.units[j] = accessUnit{} // release the payload now
		}
		r.units = r.units[next:]
		r.keys = r.keys[1:]
		r.dropped += next
		r.evicted += uint64(next)
	}
	// Rebase now and then, so indexes stay small and the backing arrays
	// shrink to the live size.
	if r.dropped > 1<<20 || cap(r.units) > 4*len(r.units)+1024 {
		for i := range r.keys {
			r.keys[i] -= r.dropped
		}
		r.dropped = 0
		r.units = append(make([]accessUnit, 0, len(r.units)+len(r.units)/4), r.units...)
		r.keys = append([]int(nil), r.keys...)
	}
}

// Newest is the received time of the newest unit (zero when empty).
func (r *Ring) Newest() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.units) == 0 {
		return time.Time{}
	}
	return r.units[len(r.units)-1].recv
}

// reached reports whether the ring holds a unit at or past t on the
// session timeline: a window ending at t is then complete.
func (r *Ring) reached(t time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.units) > 0 && r.units[len(r.units)-1].dts >= t
}

// Stats reports the ring's size.
func (r *Ring) Stats() RingStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := RingStats{Units: len(r.units), Keyframes: len(r.keys), Bytes: r.bytes, Evicted: r.evicted}
	if len(r.units) > 0 {
		s.Span = r.units[len(r.units)-1].recv.Sub(r.units[0].recv)
	}
	return s
}

// window returns the units from the last keyframe at or before from on
// the session timeline (the oldest keyframe when from is older than the
// buffer) through the last unit at or before to. It goes by the timeline,
// not by arrival: a publisher's first packets often arrive late and the
// rest in a catch-up burst, which puts the timeline (anchored on the first
// packet) ahead of arrival by that much, and a clip chosen by arrival would
// then start after the pre-roll it promises. The slice is a copy; payloads
// are shared and immutable.
func (r *Ring) window(from, to time.Duration) []accessUnit {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 {
		return nil
	}
	start := r.keys[0] - r.dropped
	for _, k := range r.keys {
		i := k - r.dropped
		if r.units[i].dts > from {
			break
		}
		start = i
	}
	if r.units[start].dts > to {
		return nil
	}
	end := start
	for end < len(r.units) && r.units[end].dts <= to {
		end++
	}
	return append([]accessUnit(nil), r.units[start:end]...)
}

// keyframeAt returns the first video keyframe at or after t on the session
// timeline, and whether the ring holds one.
func (r *Ring) keyframeAt(t time.Duration) (accessUnit, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.keys {
		if u := r.units[k-r.dropped]; u.dts >= t {
			return u, true
		}
	}
	return accessUnit{}, false
}
