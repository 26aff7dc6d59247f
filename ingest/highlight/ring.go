package highlight

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"
)

// Track kinds of buffered access units.
const (
	trackVideo uint8 = iota
	trackAudio
)

// unitOverhead is what one buffered unit costs besides its payload: its
// accessUnit in the deque. It keeps the memory bound honest for streams of
// many small packets.
const unitOverhead = 96

// chunkSize is the size of the blocks a ring stores payloads in, one after
// the other: a 6 Mbit/s stream fills one in a third of a second. A payload
// larger than a block gets one of its own, of its size.
const chunkSize = 256 << 10

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
// writer without copying while the ring goes on evicting. In a ring, data
// is a piece of one of its chunks (capacity capped to its length).
type accessUnit struct {
	track uint8
	key   bool
	// dts and pts are on the session timeline (time since session start).
	dts, pts time.Duration
	recv     time.Time
	data     []byte
	params   *h264Params // video only
	// cost is what the unit counts against the ring's bounds: its payload,
	// unitOverhead, and the end of a chunk left unused when the payload
	// did not fit there.
	cost int32
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
// Payloads are stored back to back in chunks of chunkSize bytes: one
// allocation per chunk, not one per packet, and nothing in them for the
// garbage collector to scan. A chunk is let go when its last unit is
// evicted (a window still being written keeps it until it is done).
// Safe for one writer and any number of readers.
type Ring struct {
	cfg    RingConfig
	budget *Budget // shared bound of every ring of a Capturer; nil for none

	mu      sync.Mutex
	units   []accessUnit // deque: units[0] is the oldest
	keys    []int        // indexes into units of video keyframes, ascending; shifted on eviction
	dropped int          // units popped since keys was last rebased
	bytes   int64
	evicted uint64
	chunk   []byte // the chunk being filled: len is what is used
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

// newRingIn returns an empty ring that also counts against b (nil: none).
func newRingIn(cfg RingConfig, b *Budget) *Ring {
	r := NewRing(cfg)
	if b != nil {
		r.budget = b
		b.add(r)
	}
	return r
}

// alloc returns n bytes of the ring's chunks for a payload, and what the
// space costs (the rest of a chunk left behind counts too). r.mu is held.
func (r *Ring) alloc(n int) ([]byte, int) {
	if n > chunkSize/4 && n > cap(r.chunk)-len(r.chunk) {
		// Too large to pack well (a big keyframe): a block of its own.
		return make([]byte, n), n
	}
	waste := 0
	if cap(r.chunk)-len(r.chunk) < n {
		waste = cap(r.chunk) - len(r.chunk)
		r.chunk = make([]byte, 0, chunkSize)
	}
	at := len(r.chunk)
	r.chunk = r.chunk[:at+n]
	return r.chunk[at : at+n : at+n], n + waste
}

// push appends a copy of u (the first unit pushed must be a video keyframe
// or the ring drops it) and evicts what the bounds no longer allow.
func (r *Ring) push(u accessUnit) {
	if data, cost, ok := r.begin(u, len(u.data)); ok {
		copy(data, u.data)
		r.commit(u, data, cost)
	}
}

// pushWith appends u with a payload of n bytes that fill writes into the
// ring's own storage, so a payload is built once, in place.
func (r *Ring) pushWith(u accessUnit, n int, fill func([]byte)) {
	if data, cost, ok := r.begin(u, n); ok {
		fill(data)
		r.commit(u, data, cost)
	}
}

// begin takes the ring's lock and n bytes of its storage for u's payload;
// commit adds u with it and lets go of the lock. begin returns false (and
// holds no lock) for a unit before the first keyframe.
func (r *Ring) begin(u accessUnit, n int) ([]byte, int, bool) {
	r.mu.Lock()
	if len(r.keys) == 0 && !(u.track == trackVideo && u.key) {
		// Nothing decodable precedes the first keyframe.
		r.evicted++
		r.mu.Unlock()
		return nil, 0, false
	}
	data, cost := r.alloc(n)
	return data, cost, true
}

func (r *Ring) commit(u accessUnit, data []byte, cost int) {
	u.data, u.cost = data, int32(cost+unitOverhead)
	if u.track == trackVideo && u.key {
		r.keys = append(r.keys, len(r.units)+r.dropped)
	}
	r.units = append(r.units, u)
	r.bytes += int64(u.cost)
	freed := r.evict(false)
	r.mu.Unlock()
	if r.budget != nil {
		r.budget.grow(int64(u.cost) - freed)
	}
}

// evict drops the oldest group of pictures while the memory bound is
// exceeded, or while the rest would still cover MaxDuration, and returns
// the bytes it freed. A group is evicted whole, so the ring always starts
// on a keyframe; the newest group stays even when it alone exceeds the
// bounds. once drops exactly one group, if there are two or more (the
// shared budget's eviction). r.mu is held.
func (r *Ring) evict(once bool) int64 {
	var freed int64
	if len(r.units) == 0 {
		return 0
	}
	newest := r.units[len(r.units)-1].recv
	for len(r.keys) > 1 {
		next := r.keys[1] - r.dropped
		if !once && r.bytes <= r.cfg.MaxBytes && newest.Sub(r.units[next].recv) < r.cfg.MaxDuration {
			break
		}
		for j := 0; j < next; j++ {
			freed += int64(r.units[j].cost)
			r.bytes -= int64(r.units[j].cost)
			r.units[j] = accessUnit{} // let go of its chunk now
		}
		r.units = r.units[next:]
		r.keys = r.keys[1:]
		r.dropped += next
		r.evicted += uint64(next)
		if once {
			break
		}
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
	return freed
}

// oldest is the received time of the ring's oldest unit, and whether it
// could give up a group (it holds two or more).
func (r *Ring) oldest() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) < 2 {
		return time.Time{}, false
	}
	return r.units[0].recv, true
}

// evictOne drops the ring's oldest group for the shared budget and returns
// the bytes freed.
func (r *Ring) evictOne() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.evict(true)
}

// release takes the ring off its budget: its path's buffer is being freed.
func (r *Ring) release() {
	if r.budget == nil {
		return
	}
	r.mu.Lock()
	n := r.bytes
	r.mu.Unlock()
	r.budget.remove(r, n)
}

// Budget bounds the memory of several rings together (every stream's
// buffer of a Capturer: highlights.buffer_mb_total). When a push takes the
// total past the bound, the oldest group of pictures across all rings goes
// first, whichever stream it is in; each ring keeps its newest group, so
// the total may pass the bound by at most one group per stream.
type Budget struct {
	max  int64
	used atomic.Int64

	mu    sync.Mutex // guards rings
	rings map[*Ring]struct{}
	// evicting is held by the one push that brings the total back down;
	// others go on (the total is over for a moment, by their units).
	evicting sync.Mutex
	evicted  atomic.Uint64
}

// NewBudget bounds rings to maxBytes in all.
func NewBudget(maxBytes int64) *Budget {
	return &Budget{max: maxBytes, rings: make(map[*Ring]struct{})}
}

// BudgetStats is a snapshot of a Budget.
type BudgetStats struct {
	Rings int
	Bytes int64
	Max   int64
	// Evicted is groups of pictures evicted to keep the total.
	Evicted uint64
}

// Stats reports the rings' total.
func (b *Budget) Stats() BudgetStats {
	b.mu.Lock()
	n := len(b.rings)
	b.mu.Unlock()
	return BudgetStats{Rings: n, Bytes: b.used.Load(), Max: b.max, Evicted: b.evicted.Load()}
}

func (b *Budget) add(r *Ring) {
	b.mu.Lock()
	b.rings[r] = struct{}{}
	b.mu.Unlock()
}

func (b *Budget) remove(r *Ring, n int64) {
	b.mu.Lock()
	if _, ok := b.rings[r]; ok {
		delete(b.rings, r)
		b.used.Add(-n)
	}
	b.mu.Unlock()
}

// grow counts delta more bytes and, past the bound, evicts the oldest
// groups across the rings. No ring's lock is held here.
func (b *Budget) grow(delta int64) {
	if b.used.Add(delta) <= b.max || !b.evicting.TryLock() {
		return
	}
	defer b.evicting.Unlock()
	for range 1 << 16 { // bounded: each round frees a group or stops
		if b.used.Load() <= b.max {
			return
		}
		b.mu.Lock()
		rings := make([]*Ring, 0, len(b.rings))
		for r := range b.rings {
			rings = append(rings, r)
		}
		b.mu.Unlock()
		var victim *Ring
		var first time.Time
		for _, r := range rings {
			if t, ok := r.oldest(); ok && (victim == nil || t.Before(first)) {
				victim, first = r, t
			}
		}
		if victim == nil {
			return // every ring is down to its newest group
		}
		b.used.Add(-victim.evictOne())
		b.evicted.Add(1)
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
