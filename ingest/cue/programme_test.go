package cue

import (
	"math"
	"math/rand/v2"
)

// Synthetic programme audio for the tests: deterministic, so a failure reproduces, and
// built to be hostile to a tone detector (sustained harmonics, vibrato sweeping across the
// tone grid, broadband bursts, formant glides through the audible band).

// musicLike renders chords of harmonic-rich notes with vibrato, a new chord every 0.4–1.2 s,
// plus hi-hat-like noise bursts. RMS is about −16 dBFS, peaks about −3 dBFS.
func musicLike(seed uint64, n, rate int) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x6d75736963))
	out := make([]float64, n)
	fs := float64(rate)
	tables := map[int][]float64{}
	for at := 0; at < n; {
		dur := int((0.4 + 0.8*rng.Float64()) * fs)
		root := 40 + rng.IntN(30) // MIDI note numbers: E2 .. A#4
		chord := []int{0, 4, 7, 12}
		if rng.IntN(2) == 0 {
			chord = []int{0, 3, 7, 10}
		}
		for _, iv := range chord {
			f0 := 440 * math.Pow(2, float64(root+iv-69)/12)
			vibHz, vibDepth := 4+3*rng.Float64(), 0.004+0.01*rng.Float64()
			vibPhase := rng.Float64() * 2 * math.Pi
			table, ok := tables[root+iv]
			if !ok {
				table = noteTable(rng, f0, fs)
				tables[root+iv] = table
			}
			// Recurrences instead of Exp and Sin per sample keep the ten-minute soak cheap.
			var ph float64
			env, decay := 1.0, math.Exp(-1.2/fs)
			vc, vs := math.Cos(vibPhase), math.Sin(vibPhase)
			rc, rs := math.Cos(2*math.Pi*vibHz/fs), math.Sin(2*math.Pi*vibHz/fs)
			attack := int(0.02 * fs)
			for i := range dur {
				if at+i >= n {
					break
				}
				a := env
				if i < attack {
					a *= float64(i) / float64(attack)
				}
				env *= decay
				vc, vs = vc*rc-vs*rs, vs*rc+vc*rs
				ph += f0 * (1 + vibDepth*vs) / fs
				if ph >= 1 {
					ph--
				}
				out[at+i] += a * table[int(ph*float64(len(table)))]
			}
		}
		// Percussion: short decaying white-noise bursts on a beat grid.
		for beat := 0; beat < dur; beat += int(0.25 * fs) {
			level := 0.15 * rng.Float64()
			for i := 0; i < int(0.08*fs) && at+beat+i < n; i++ {
				out[at+beat+i] += level * math.Exp(-float64(i)/(0.015*fs)) * (2*rng.Float64() - 1)
			}
		}
		at += dur
	}
	return normalise(out, -16)
}

// speechLike renders a glottal pulse train through three moving formant resonators, in
// syllables with pauses, plus fricative noise: enough like speech to load 300–5000 Hz the
// way a talking streamer does. RMS is about −18 dBFS.
func speechLike(seed uint64, n, rate int) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x737065656368))
	out := make([]float64, n)
	fs := float64(rate)
	type reson struct{ y1, y2 float64 }
	var rs [3]reson
	var phase float64
	for at := 0; at < n; {
		syl := int((0.12 + 0.25*rng.Float64()) * fs)
		f0 := 100 + 120*rng.Float64()
		fA := [3]float64{300 + 600*rng.Float64(), 900 + 1500*rng.Float64(), 2200 + 1500*rng.Float64()}
		fB := [3]float64{300 + 600*rng.Float64(), 900 + 1500*rng.Float64(), 2200 + 1500*rng.Float64()}
		fricative := rng.IntN(4) == 0
		for i := 0; i < syl && at+i < n; i++ {
			x := float64(i) / float64(syl)
			var src float64
			if fricative {
				src = 0.3 * (2*rng.Float64() - 1)
			} else {
				phase += f0 * (1 + 0.05*math.Sin(2*math.Pi*3*x)) / fs
				if phase >= 1 {
					phase--
					src = 1
				}
			}
			var y float64
			for k := range rs {
				f := fA[k] + (fB[k]-fA[k])*x
				bw := 80.0 + 40*float64(k)
				r := math.Exp(-math.Pi * bw / fs)
				a1, a2 := 2*r*math.Cos(2*math.Pi*f/fs), -r*r
				v := src + a1*rs[k].y1 + a2*rs[k].y2
				rs[k].y2, rs[k].y1 = rs[k].y1, v
				y += v / float64(k+1)
			}
			out[at+i] = y * math.Sin(math.Pi*x)
		}
		at += syl + int(0.03*fs+0.2*fs*rng.Float64()*rng.Float64())
	}
	return normalise(out, -18)
}

// noteTable is one period of a harmonic-rich note (random phases, 1/h^0.9 roll-off, band
// limited below 0.45·fs), so the long soaks cost a table lookup per note per sample.
func noteTable(rng *rand.Rand, f0, fs float64) []float64 {
	table := make([]float64, 1024)
	for h := 1; h <= 60 && float64(h)*f0 < 0.45*fs; h++ {
		amp := 0.08 / math.Pow(float64(h), 0.9)
		ph := rng.Float64() * 2 * math.Pi
		for i := range table {
			table[i] += amp * math.Sin(2*math.Pi*float64(h)*float64(i)/float64(len(table))+ph)
		}
	}
	return table
}

// noise is white noise through a one-pole low-pass plus white: broadband hiss at
// the given RMS level.
func noise(seed uint64, n int, rmsDB float64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x6e6f697365))
	out := make([]float64, n)
	var lp float64
	for i := range out {
		w := rng.NormFloat64()
		lp = 0.97*lp + 0.03*w
		out[i] = 0.5*w + 4*lp
	}
	return normalise(out, rmsDB)
}

func normalise(x []float64, rmsDB float64) []float32 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	g := 0.0
	if ss > 0 {
		g = math.Pow(10, rmsDB/20) / math.Sqrt(ss/float64(len(x)))
	}
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(max(-1, min(1, v*g)))
	}
	return out
}

func rmsDB(x []float32) float64 {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	return 10 * math.Log10(ss/float64(max(1, len(x))))
}

func peakDB(x []float32) float64 {
	var p float64
	for _, v := range x {
		p = max(p, math.Abs(float64(v)))
	}
	return 20 * math.Log10(p)
}
