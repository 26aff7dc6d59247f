package cue

import (
	"testing"
)

// The benchmarks report "x_realtime": seconds of audio handled per second of CPU.

func BenchmarkEncode(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := Encode(uint32(i), Audible); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(Duration(Audible).Seconds()*float64(b.N)/b.Elapsed().Seconds(), "x_realtime")
}

func BenchmarkMix(b *testing.B) {
	cue, _ := Encode(1, Audible)
	programme := musicLike(1, len(cue), SampleRate)
	dst := make([]float32, len(cue))
	b.SetBytes(int64(4 * len(cue)))
	b.ReportAllocs()
	for b.Loop() {
		copy(dst, programme) // fresh programme each time, so clipping does not build up
		Mix(dst, cue, -20)
	}
	b.ReportMetric(Duration(Audible).Seconds()*float64(b.N)/b.Elapsed().Seconds(), "x_realtime")
}

// BenchmarkDetector feeds 10 s of music with two cues, in 20 ms chunks (one Opus frame),
// through a Detector listening for both profiles.
func BenchmarkDetector(b *testing.B) {
	const seconds = 10
	x := withCues(b, musicLike(2, seconds*SampleRate, SampleRate), []placed{{1, Audible, SampleRate}, {2, Ultrasonic, 5 * SampleRate}}, -20)
	b.SetBytes(int64(4 * len(x)))
	b.ReportAllocs()
	for b.Loop() {
		d := NewDetector(SampleRate)
		n := 0
		for i := 0; i < len(x); i += 960 {
			n += len(d.Write(x[i:min(i+960, len(x))]))
		}
		if n+len(d.Flush()) != 2 {
			b.Fatal("cues not detected")
		}
	}
	b.ReportMetric(seconds*float64(b.N)/b.Elapsed().Seconds(), "x_realtime")
}
