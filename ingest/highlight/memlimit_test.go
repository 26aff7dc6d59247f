package highlight

import (
	"runtime"
	"runtime/metrics"
	"testing"
)

// The soft limit leaves GOGC=100 worth of room for garbage on what is live
// outside the buffers (at least MemoryLimitFloor), none on the buffers,
// plus what the runtime holds outside the heap.
func TestHeadroomLimit(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name                     string
		live, total, heap, bufrd int64
		want                     int64
	}{
		{"buffers dominate", 300 * mb, 420 * mb, 400 * mb, 280 * mb, 20*mb + 300*mb + 64*mb},
		{"no buffers", 200 * mb, 330 * mb, 310 * mb, 0, 20*mb + 200*mb + 200*mb},
		{"small process", 10 * mb, 40 * mb, 30 * mb, 0, 10*mb + 10*mb + 64*mb},
	} {
		if got := headroomLimit(tc.live, tc.total, tc.heap, tc.bufrd); got != tc.want {
			t.Errorf("%s: limit %d MiB, want %d MiB", tc.name, got/mb, tc.want/mb)
		}
	}
	// The runtime's own figures read as they should: a live heap, and a
	// heap inside the total.
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"}, {Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	runtime.GC()
	metrics.Read(s)
	live, total, heap := readHeadroom(s)
	if live <= 0 || heap <= 0 || heap > total {
		t.Errorf("runtime figures: live %d, total %d, heap %d", live, total, heap)
	}
}
