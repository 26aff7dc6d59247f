package cue

import (
	"math"
	"time"
)

// Receiver tuning. The check code does most of the work against false cues; these gates make
// sure the CRC is only consulted when something cue-shaped is actually there.
const (
	blocksPerSecond = 200 // 5 ms analysis grid: start times are found to ±2.5 ms before refinement
	blocksPerSymbol = 12  // 60 ms symbol = 12 blocks
	frameBlocks     = frameSymbols * blocksPerSymbol
	ringBlocks      = 256 // > frameBlocks + peak-search lookahead; bounds memory
	peakLookahead   = 4   // blocks a candidate waits for a better-aligned neighbour
	// minPreambleShare is the mean share of the 16 tone energies that the expected preamble
	// tones must hold. A clean cue scores ~0.95; noise scores ~1/16.
	minPreambleShare = 0.3
	// maxPreambleMisses is how many of the 4 preamble symbols may have another tone as the
	// strongest: through a room a reverberant music chord can outweigh one of them. The
	// preamble tones are distinct, so no shift of a cue matches 3 of 4, and a miss still
	// costs its share and the frame's SNR; the CRC does the rest.
	maxPreambleMisses = 1
	// MinSNRDB is the least mean in-band SNR (chosen tone against the mean of the other 15
	// tones, over all 16 symbols) a detection must have. Picking the loudest of 16 noise bins
	// alone yields about 5.3 dB, so the gate sits clearly above that.
	MinSNRDB = 8.0
	// maxToneShareOfNyquist keeps every tone well below the Nyquist frequency of the input.
	maxToneShareOfNyquist = 0.95
)

// Detection is one cue heard in the fed audio.
type Detection struct {
	Code    uint32
	Profile Profile
	// Start is the position of the cue's first sample, measured from the first sample fed
	// to the Detector (or since its last Flush).
	Start time.Duration
	// SNRDB is the mean in-band SNR: energy of the tone heard in each symbol against the mean
	// energy of the other 15 tones in that symbol, over the whole cue.
	SNRDB float64
}

// Detector hears cues in a stream of mono PCM fed in chunks of any size. It keeps about
// 1.3 s of per-tone analysis, never the audio itself, so its memory is bounded. A Detector
// is not safe for concurrent use.
type Detector struct {
	rate     int
	profiles []*profileRx
	pending  []float32 // samples of the block being filled
	block    int64     // index of the block being filled
	blockLen int       // samples in that block
	blockAt  int64     // absolute sample index where that block starts
}

// profileRx is the per-profile receiver state.
type profileRx struct {
	profile Profile
	hz      [numTones]int64
	rotRe   [numTones]float64 // e^{-j2πf/rate}: one sample's phase step per tone
	rotIm   [numTones]float64
	sums    [ringBlocks][numTones]complex128
	energy  [ringBlocks][numTones]float64 // |60 ms window starting at block b|² per tone
	best    *candidate                    // best-aligned candidate waiting for its neighbours
	muteTo  int64                         // no new cue may start before this block
}

type candidate struct {
	block int64
	code  uint32
	syms  [frameSymbols]byte
	score float64
	snrDB float64
}

// NewDetector returns a Detector for mono PCM at sampleRate listening for the given
// profiles (none: all). Any rate works without resampling, because the tones are correlated
// at their exact frequencies; a profile whose tones do not fit below the rate's Nyquist
// frequency (the ultrasonic profile needs at least about 37 kHz, the audible one about
// 10 kHz) is left out, and Profiles reports what remains. Unknown profiles are ignored.
func NewDetector(sampleRate int, profiles ...Profile) *Detector {
	if len(profiles) == 0 {
		profiles = Profiles()
	}
	d := &Detector{rate: sampleRate}
	if sampleRate <= 0 {
		return d
	}
	seen := map[Profile]bool{}
	for _, p := range profiles {
		if !p.Valid() || seen[p] || ToneHz(p, numTones-1) > maxToneShareOfNyquist*float64(sampleRate)/2 {
			continue
		}
		seen[p] = true
		rx := &profileRx{profile: p}
		for k := range numTones {
			rx.hz[k] = int64(ToneHz(p, k))
			rx.rotIm[k], rx.rotRe[k] = math.Sincos(-2 * math.Pi * float64(rx.hz[k]) / float64(sampleRate))
		}
		d.profiles = append(d.profiles, rx)
	}
	d.reset()
	return d
}

// Profiles reports the profiles this Detector listens for.
func (d *Detector) Profiles() []Profile {
	out := make([]Profile, 0, len(d.profiles))
	for _, rx := range d.profiles {
		out = append(out, rx.profile)
	}
	return out
}

func (d *Detector) reset() {
	d.block, d.blockAt = 0, 0
	d.blockLen = int(blockStart(1, d.rate))
	d.pending = d.pending[:0]
	for _, rx := range d.profiles {
		rx.best, rx.muteTo = nil, 0
		clear(rx.sums[:])
		clear(rx.energy[:])
	}
}

// blockStart is the first sample of analysis block b at rate.
func blockStart(b int64, rate int) int64 { return b * int64(rate) / blocksPerSecond }

// Write feeds the next samples of the stream and returns the cues that completed within them.
func (d *Detector) Write(samples []float32) []Detection {
	if len(d.profiles) == 0 {
		return nil
	}
	var out []Detection
	for len(samples) > 0 {
		n := min(d.blockLen-len(d.pending), len(samples))
		d.pending = append(d.pending, samples[:n]...)
		samples = samples[n:]
		if len(d.pending) == d.blockLen {
			out = d.endBlock(out)
		}
	}
	return out
}

// Flush ends the stream: it completes the analysis of the last second as if silence
// followed, returns any cue still being confirmed, and resets the Detector so the next
// Write starts a new stream at time zero.
func (d *Detector) Flush() []Detection {
	if len(d.profiles) == 0 {
		return nil
	}
	var out []Detection
	for range frameBlocks + peakLookahead + 2 {
		for len(d.pending) < d.blockLen {
			d.pending = append(d.pending, 0)
		}
		out = d.endBlock(out)
	}
	d.reset()
	return out
}

// endBlock correlates the completed block with every tone and runs the frame search for
// the window that this block completes.
func (d *Detector) endBlock(out []Detection) []Detection {
	b := d.block
	slot := b % ringBlocks
	for _, rx := range d.profiles {
		// Each tone is a complex oscillator started at its exact phase for this block's
		// absolute position, so blocks add coherently, and stepped by a rotation. The
		// state lives in local arrays: the loop touches no memory but the samples.
		var oRe, oIm, aRe, aIm [numTones]float64
		for k := range numTones {
			r := rx.hz[k] * d.blockAt % int64(d.rate)
			oIm[k], oRe[k] = math.Sincos(-2 * math.Pi * float64(r) / float64(d.rate))
		}
		rRe, rIm := rx.rotRe, rx.rotIm
		for _, x := range d.pending {
			v := float64(x)
			for k := range numTones {
				re, im := oRe[k], oIm[k]
				aRe[k] += v * re
				aIm[k] += v * im
				oRe[k] = re*rRe[k] - im*rIm[k]
				oIm[k] = re*rIm[k] + im*rRe[k]
			}
		}
		for k := range numTones {
			rx.sums[slot][k] = complex(aRe[k], aIm[k])
		}
		if w := b - blocksPerSymbol + 1; w >= 0 {
			ws := w % ringBlocks
			for k := range numTones {
				var s complex128
				for i := range int64(blocksPerSymbol) {
					s += rx.sums[(w+i)%ringBlocks][k]
				}
				rx.energy[ws][k] = real(s)*real(s) + imag(s)*imag(s)
			}
			if start := w - (frameSymbols-1)*blocksPerSymbol; start >= 0 {
				out = rx.search(start, out)
			}
		}
	}
	d.block++
	d.blockAt += int64(d.blockLen)
	d.blockLen = int(blockStart(d.block+1, d.rate) - d.blockAt)
	d.pending = d.pending[:0]
	return out
}

// search considers a cue starting at block start, whose 16 symbol windows are all
// analysed, and emits the best-aligned candidate once no neighbour can beat it.
func (rx *profileRx) search(start int64, out []Detection) []Detection {
	if rx.best != nil && start > rx.best.block+peakLookahead {
		out = append(out, rx.emit())
	}
	if start < rx.muteTo {
		return out
	}
	c, ok := rx.evaluate(start)
	if !ok {
		return out
	}
	if rx.best == nil || (c.score > rx.best.score && c.block-rx.best.block <= peakLookahead) {
		rx.best = &c
	}
	return out
}

func (rx *profileRx) emit() Detection {
	c := rx.best
	rx.best = nil
	rx.muteTo = c.block + frameBlocks - blocksPerSymbol/2
	// Refine the start between grid points: the alignment score is near parabolic around
	// its peak.
	pos := float64(c.block)
	if c.block > 0 {
		l, m, r := rx.score(c.block-1, &c.syms), c.score, rx.score(c.block+1, &c.syms)
		if den := l - 2*m + r; den < 0 {
			pos += max(-0.5, min(0.5, 0.5*(l-r)/den))
		}
	}
	secs := pos / blocksPerSecond
	return Detection{
		Code:    c.code,
		Profile: rx.profile,
		Start:   time.Duration(math.Round(secs * float64(time.Second))),
		SNRDB:   c.snrDB,
	}
}

func (rx *profileRx) window(start int64, sym int) *[numTones]float64 {
	return &rx.energy[(start+int64(sym)*blocksPerSymbol)%ringBlocks]
}

// score is the share of in-band energy that lies on the expected tones over the cue.
func (rx *profileRx) score(start int64, syms *[frameSymbols]byte) float64 {
	var on, all float64
	for j, s := range syms {
		e := rx.window(start, j)
		on += e[s]
		for _, v := range e {
			all += v
		}
	}
	if all == 0 {
		return 0
	}
	return on / all
}

// evaluate tries to read a cue starting at block start.
func (rx *profileRx) evaluate(start int64) (candidate, bool) {
	c := candidate{block: start}
	var share float64
	misses := 0
	for j, want := range preamble {
		e := rx.window(start, j)
		k, total := argmax(e)
		if total == 0 {
			return c, false
		}
		if k != int(want) {
			if misses++; misses > maxPreambleMisses {
				return c, false
			}
		}
		share += e[want] / total
	}
	if share/preambleSymbols < minPreambleShare {
		return c, false
	}
	copy(c.syms[:], preamble[:])
	var on, off float64
	for j := range c.syms {
		e := rx.window(start, j)
		k, total := argmax(e)
		if j >= preambleSymbols {
			c.syms[j] = byte(k)
		}
		s := e[c.syms[j]]
		on += s
		off += (total - s) / (numTones - 1)
	}
	code, err := DecodeFrame(c.syms[preambleSymbols:])
	if err != nil {
		return c, false
	}
	c.code = code
	c.snrDB = 10 * math.Log10(on/max(off, on*1e-12))
	if c.snrDB < MinSNRDB {
		return c, false
	}
	c.score = on / (on + off*(numTones-1))
	return c, true
}

func argmax(e *[numTones]float64) (k int, total float64) {
	for i, v := range e {
		total += v
		if v > e[k] {
			k = i
		}
	}
	return k, total
}

// DetectAll runs a fresh Detector over a whole recording.
func DetectAll(samples []float32, sampleRate int) []Detection {
	d := NewDetector(sampleRate)
	return append(d.Write(samples), d.Flush()...)
}
