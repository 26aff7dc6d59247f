package loadgen

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"slices"
	"syscall"
	"time"
)

// Quantile is the nearest-rank q-quantile of sorted xs: the smallest value
// with at least q of the values at or below it (q 0 gives the minimum, 1 the
// maximum). Every percentile the load generators report is this one, so p99
// means the same in every BENCHMARKS.md row. An empty slice gives zero.
func Quantile[T cmp.Ordered](sorted []T, q float64) T {
	var zero T
	if len(sorted) == 0 {
		return zero
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Sorted sorts xs in place and returns it, for Quantile.
func Sorted[T cmp.Ordered](xs []T) []T {
	slices.Sort(xs)
	return xs
}

// Round rounds v to places decimals.
func Round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

// MS is d in milliseconds to the microsecond.
func MS(d time.Duration) float64 { return Round(float64(d)/1e6, 3) }

// ProcessCPU is the user plus system CPU time this process has used so far,
// or -1 when the system does not say. Children report theirs through the
// same call (the "cpu" control command), so the server's and the clients'
// CPU are measured alike.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// LoadAvg1 is the 1-minute load average (Linux), or 0: BENCHMARKS.md notes
// it beside each figure because the machine is shared.
func LoadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscan(string(b), &l)
	return l
}
