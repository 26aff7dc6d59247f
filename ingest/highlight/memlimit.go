package highlight

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// MemoryLimitFloor is the least garbage headroom LimitGCHeadroom leaves.
const MemoryLimitFloor = 64 << 20

// LimitGCHeadroom keeps the Go heap's room for garbage in proportion to
// the rest of the process rather than to the highlight buffers, for as
// long as ctx lasts. With the default GOGC the heap may grow to twice
// what is live between collections: with 90 MB of a stream's buffer live,
// 90 MB more of garbage from the per-packet work. Buffers are long-lived
// and hold no pointers, so collecting more often costs little. Every
// second it sets the soft memory limit (debug.SetMemoryLimit) to what
// the runtime uses outside the heap, plus the live heap, plus the larger
// of MemoryLimitFloor and the live heap outside the buffers: GOGC=100 for
// everything but the buffers, no headroom on them. The limit is soft:
// the runtime never stalls the process on it (it caps its collector's
// CPU). It leaves the limit alone when GOMEMLIMIT is set (the operator's
// choice) and puts the old one back when ctx ends.
//
// It tunes the whole process, so the program calls it (serve), never a
// library.
func (c *Capturer) LimitGCHeadroom(ctx context.Context) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	old := debug.SetMemoryLimit(-1)
	go func() {
		defer debug.SetMemoryLimit(old)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}, {Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			metrics.Read(samples)
			live, total, heap := readHeadroom(samples)
			if live == 0 {
				continue // no collection yet: nothing known to be live
			}
			debug.SetMemoryLimit(headroomLimit(live, total, heap, c.budget.used.Load()))
		}
	}()
}

// headroomLimit is LimitGCHeadroom's limit from the runtime's figures (the
// live heap, all the memory the runtime maps, and of it the heap's) and
// the bytes the buffers hold.
func headroomLimit(live, total, heap, buffered int64) int64 {
	outside := max(0, total-heap) // stacks, runtime metadata, buffers of the runtime
	rest := max(MemoryLimitFloor, live-buffered)
	return outside + live + rest
}

// readHeadroom reads headroomLimit's figures from samples.
func readHeadroom(s []metrics.Sample) (live, total, heap int64) {
	u := func(i int) int64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return int64(min(s[i].Value.Uint64(), math.MaxInt64/4))
	}
	return u(0), u(1), u(2) + u(3) + u(4) + u(5)
}
