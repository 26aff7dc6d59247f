package loadgen

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
)

func TestSextileOf(t *testing.T) {
	s := time.Second
	// Twelve viewers in no order: two per sextile.
	delays := []time.Duration{6 * s, 1 * s, 11 * s, 3 * s, 9 * s, 2 * s, 12 * s, 5 * s, 4 * s, 8 * s, 10 * s, 7 * s}
	want := []int{2, 0, 5, 1, 4, 0, 5, 2, 1, 3, 4, 3}
	if got := SextileOf(delays); !slices.Equal(got, want) {
		t.Errorf("SextileOf = %v, want %v", got, want)
	}
	// Ties go by index, so equal delays still split evenly.
	same := make([]time.Duration, 6)
	if got := SextileOf(same); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5}) {
		t.Errorf("ties: %v", got)
	}
	// Counts that do not divide by six: groups differ by one at most, and
	// a later delay never sits in an earlier sextile.
	for _, n := range []int{7, 13, 600, 601} {
		delays := make([]time.Duration, n)
		for i := range delays {
			delays[i] = time.Duration((i*7919)%n) * time.Millisecond
		}
		sx := SextileOf(delays)
		var size [Sextiles]int
		for i, k := range sx {
			size[k]++
			for j := range sx {
				if delays[j] > delays[i] && sx[j] < k {
					t.Fatalf("n=%d: delay %v in sextile %d after %v in %d", n, delays[j], sx[j], delays[i], k)
				}
			}
		}
		if slices.Max(size[:])-slices.Min(size[:]) > 1 {
			t.Errorf("n=%d: sextile sizes %v", n, size)
		}
	}
}

func TestParseDelayRange(t *testing.T) {
	for in, want := range map[string]DelayRange{
		"1s-6s":       {time.Second, 6 * time.Second},
		"2-30":        {2 * time.Second, 30 * time.Second},
		"200ms-800ms": {200 * time.Millisecond, 800 * time.Millisecond},
		" 0.5 - 1.5 ": {500 * time.Millisecond, 1500 * time.Millisecond},
		"3s-3s":       {3 * time.Second, 3 * time.Second},
	} {
		if got, err := ParseDelayRange(in); err != nil || got != want {
			t.Errorf("ParseDelayRange(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "6s", "6s-1s", "soon-later", "NaN-1", "1s-Inf"} {
		if got, err := ParseDelayRange(in); err == nil {
			t.Errorf("ParseDelayRange(%q) = %v, want an error", in, got)
		}
	}
	if d, ok := DelayPreset("twitch"); !ok || d != (DelayRange{time.Second, 6 * time.Second}) {
		t.Errorf("twitch preset %v", d)
	}
	if d, ok := DelayPreset("youtube"); !ok || d != (DelayRange{2 * time.Second, 30 * time.Second}) {
		t.Errorf("youtube preset %v", d)
	}
	if _, ok := DelayPreset("vimeo"); ok {
		t.Error("unknown preset")
	}
}

func TestDefaultPolicies(t *testing.T) {
	ps := DefaultPolicies()
	for _, p := range []string{"fcfs", "bucketed", "raffle"} {
		if !slices.Contains(ps, p) {
			t.Errorf("default policies %v lack %s", ps, p)
		}
	}
	for _, p := range ps {
		if !claims.Policy(p).Valid() {
			t.Errorf("default policy %s is not one claims knows", p)
		}
	}
}

// smallCrowd is a crowd that claims within half a second, so a run takes
// about a second.
func smallCrowd() FairnessConfig {
	grace := time.Duration(0)
	return FairnessConfig{Viewers: 60, Stock: 10, Cap: 1, Delay: DelayRange{0, 300 * time.Millisecond}, Reaction: DelayRange{0, 100 * time.Millisecond},
		Policies: []string{"fcfs", "bucketed", "raffle"}, Rounds: 2, Seed: 7, Duration: 2 * time.Second, Grace: &grace, Timeout: time.Minute}
}

func checkFairness(t *testing.T, rep FairnessReport, cfg FairnessConfig) {
	t.Helper()
	if len(rep.Policies) != len(cfg.Policies) || len(rep.Sextiles) != Sextiles {
		t.Fatalf("%d policies, %d sextiles", len(rep.Policies), len(rep.Sextiles))
	}
	for k := 1; k < Sextiles; k++ {
		if rep.Sextiles[k].FromS < rep.Sextiles[k-1].ToS-1e-9 && rep.Rounds == 1 {
			t.Errorf("sextiles overlap: %+v", rep.Sextiles)
		}
	}
	for i, p := range rep.Policies {
		if p.Policy != cfg.Policies[i] {
			t.Errorf("policy %d is %q, want %q", i, p.Policy, cfg.Policies[i])
		}
		if p.Errors != 0 {
			t.Errorf("%s: %d errors, first %q", p.Policy, p.Errors, p.FirstError)
		}
		// Every unit goes, each to one viewer, and the rates say so.
		if p.Winners != cfg.Stock*cfg.Rounds {
			t.Errorf("%s: %d winners over %d rounds of %d units", p.Policy, p.Winners, cfg.Rounds, cfg.Stock)
		}
		entered, wins := 0, 0
		for k := range Sextiles {
			entered += p.Entered[k]
			wins += p.Wins[k]
			if want := Round(100*float64(p.Wins[k])/float64(p.Entered[k]), 1); p.WinRate[k] != want {
				t.Errorf("%s sextile %d: rate %v, want %v", p.Policy, k+1, p.WinRate[k], want)
			}
			if p.Entered[k] != cfg.Viewers*cfg.Rounds/Sextiles {
				t.Errorf("%s sextile %d: %d viewers", p.Policy, k+1, p.Entered[k])
			}
		}
		if entered != cfg.Viewers*cfg.Rounds || wins != p.Winners {
			t.Errorf("%s: %d viewers, %d wins in the sextiles", p.Policy, entered, wins)
		}
		if p.SpreadPoints != Round(p.WinRate[0]-p.WinRate[Sextiles-1], 1) {
			t.Errorf("%s: spread %v", p.Policy, p.SpreadPoints)
		}
	}
}

func TestFairnessInProcess(t *testing.T) {
	cfg := smallCrowd()
	rep, err := Fairness(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkFairness(t, rep, cfg)
	var text strings.Builder
	rep.WriteText(&text)
	for _, want := range []string{"fcfs", "bucketed", "raffle", "1st - 6th", "60 viewers"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, text.String())
		}
	}
}

// TestFairnessOverHTTP claims through the admin bridge of the real API,
// and passes a policy name through to the server, which judges it.
func TestFairnessOverHTTP(t *testing.T) {
	url := apiServer(t, claims.Options{})
	cfg := smallCrowd()
	cfg.Policies, cfg.Rounds = []string{"fcfs", "raffle"}, 1
	cfg.URLs, cfg.AdminToken = []string{url}, testToken
	rep, err := Fairness(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkFairness(t, rep, cfg)

	cfg.Policies = []string{"nosuch"}
	if _, err := Fairness(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown policy: %v, want the server's refusal naming it", err)
	}
}

func TestFairnessConfigValidate(t *testing.T) {
	good := smallCrowd()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(*FairnessConfig){
		func(c *FairnessConfig) { c.Viewers = 5 },
		func(c *FairnessConfig) { c.Stock = 0 },
		func(c *FairnessConfig) { c.Delay = DelayRange{2 * time.Second, time.Second} },
		func(c *FairnessConfig) { c.Reaction = DelayRange{-time.Second, 0} },
		func(c *FairnessConfig) { c.Policies = nil },
		func(c *FairnessConfig) { c.Policies = []string{"fcfs,raffle"} },
		func(c *FairnessConfig) { c.Rounds = 0 },
		func(c *FairnessConfig) { c.URLs = []string{"http://x"} },
	} {
		c := good
		bad(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
