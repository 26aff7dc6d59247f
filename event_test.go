package microdrop

import "testing"

func TestWindowNote(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want string
	}{
		{6000, "everyone who claims in the first 6 s has the same chance — results at 0:06"},
		{8500, "everyone who claims in the first 8.5 s has the same chance — results at 0:09"},
		{90000, "everyone who claims in the first 90 s has the same chance — results at 1:30"},
		{0, ""},
	} {
		if got := (&DropView{BudgetMS: tc.ms}).WindowNote(); got != tc.want {
			t.Errorf("budget %d ms: %q, want %q", tc.ms, got, tc.want)
		}
	}
	if got := (*DropView)(nil).WindowNote(); got != "" {
		t.Errorf("nil view: %q", got)
	}
}
