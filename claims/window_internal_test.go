package claims

import (
	"fmt"
	"slices"
	"testing"
)

// lowestRanked finds exactly the claims a full sort in FairOrder's order
// puts first, also when keys share their first 64 bits.
func TestLowestRankedIsTheHeadOfTheOrder(t *testing.T) {
	d := &Drop{Policy: Window, Seed: []byte("seed-0123456789")}
	var w []windowClaim
	for i := range 5000 {
		wc := newWindowClaim(d.rankOf(0, fmt.Sprintf("u%d", i), int64(i+1)), nil)
		if i%7 == 0 { // collide on the prefix: the full key must decide
			wc.k0 = 42
		}
		w = append(w, wc)
	}
	sorted := make([]int32, len(w))
	for i := range sorted {
		sorted[i] = int32(i)
	}
	slices.SortFunc(sorted, func(a, b int32) int {
		if w[a].k0 != w[b].k0 {
			if w[a].k0 < w[b].k0 {
				return -1
			}
			return 1
		}
		return compareRank(w[a].r, w[b].r)
	})
	for _, k := range []int{0, 1, 7, 100, 714, 4999, 5000, 6000} {
		got := lowestRanked(w, k)
		want := sorted[:min(k, len(sorted))]
		slices.Sort(got)
		want = slices.Clone(want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("k=%d: lowestRanked differs from the sorted head", k)
		}
	}
}
