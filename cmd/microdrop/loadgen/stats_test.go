package loadgen

import (
	"testing"
	"time"
)

func TestQuantileNearestRank(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	for _, c := range []struct {
		xs   []float64
		q    float64
		want float64
	}{
		{hundred, 0, 1},
		{hundred, 0.01, 1},
		{hundred, 0.5, 50},
		{hundred, 0.99, 99},
		{hundred, 0.999, 100},
		{hundred, 1, 100},
		{[]float64{3, 5, 7}, 0.5, 5},    // ceil(1.5) = 2nd
		{[]float64{3, 5, 7}, 0.34, 5},   // ceil(1.02) = 2nd
		{[]float64{3, 5, 7}, 0.33, 3},   // ceil(0.99) = 1st
		{[]float64{3, 5, 7, 9}, 0.5, 5}, // ceil(2) = 2nd: nearest rank, not interpolated
		{[]float64{42}, 0.99, 42},
		{nil, 0.5, 0},
	} {
		if got := Quantile(c.xs, c.q); got != c.want {
			t.Errorf("Quantile(%v, %v) = %v, want %v", c.xs, c.q, got, c.want)
		}
	}
	// The same definition for every type the modes measure in.
	ds := Sorted([]time.Duration{5 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond})
	if got := Quantile(ds, 0.75); got != 3*time.Millisecond {
		t.Errorf("durations p75 = %v", got)
	}
	ns := Sorted([]int64{40, 10, 30, 20, 50})
	if got := Quantile(ns, 0.99); got != 50 {
		t.Errorf("int64 p99 = %v", got)
	}
}

func TestRoundAndMS(t *testing.T) {
	if got := Round(1.23456, 2); got != 1.23 {
		t.Errorf("Round = %v", got)
	}
	if got := Round(-1.235, 1); got != -1.2 {
		t.Errorf("Round negative = %v", got)
	}
	if got := MS(1234567 * time.Nanosecond); got != 1.235 {
		t.Errorf("MS = %v", got)
	}
}

// TestProcessCPU: the CPU this process spends shows up, and never goes
// backwards.
func TestProcessCPU(t *testing.T) {
	start := ProcessCPU()
	if start <= 0 {
		t.Fatalf("ProcessCPU = %v", start)
	}
	x := 0
	for i := 0; ProcessCPU()-start < 5*time.Millisecond; i++ {
		if i > 1e9 {
			t.Fatal("5 ms of CPU never showed up")
		}
		for j := range 10000 {
			x ^= j * i
		}
	}
	_ = x
	if after := ProcessCPU(); after < start+5*time.Millisecond {
		t.Errorf("CPU went from %v to %v", start, after)
	}
}

func TestLoadAvg1(t *testing.T) {
	if l := LoadAvg1(); l < 0 {
		t.Errorf("load average %v", l)
	}
}
