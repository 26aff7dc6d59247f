package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/microdrop/microdrop/claims"
)

// DelayPreset is a named stream delay range: "twitch" (Twitch's normal
// latency, 1–6 s) or "youtube" (YouTube's normal latency, 2–30 s).
func DelayPreset(name string) (DelayRange, bool) {
	switch name {
	case "twitch":
		return DelayRange{Min: time.Second, Max: 6 * time.Second}, true
	case "youtube":
		return DelayRange{Min: 2 * time.Second, Max: 30 * time.Second}, true
	}
	return DelayRange{}, false
}

// DelayRange is a uniform range of durations.
type DelayRange struct{ Min, Max time.Duration }

func (r DelayRange) pick(rng *rand.Rand) time.Duration {
	return r.Min + time.Duration(rng.Int64N(int64(r.Max-r.Min)+1))
}

func (r DelayRange) String() string { return fmt.Sprintf("%v–%v", r.Min, r.Max) }

// ParseDelayRange reads "1s-6s" (or "1-6", seconds).
func ParseDelayRange(s string) (DelayRange, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return DelayRange{}, fmt.Errorf("range %q: want MIN-MAX, e.g. 1s-6s", s)
	}
	parse := func(v string) (time.Duration, error) {
		v = strings.TrimSpace(v)
		if d, err := time.ParseDuration(v); err == nil {
			return d, nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("range %q: %q is not a duration", s, v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	a, err := parse(lo)
	if err != nil {
		return DelayRange{}, err
	}
	b, err := parse(hi)
	if err != nil {
		return DelayRange{}, err
	}
	if a < 0 || b < a {
		return DelayRange{}, fmt.Errorf("range %q: want 0 <= MIN <= MAX", s)
	}
	return DelayRange{Min: a, Max: b}, nil
}

// DefaultPolicies are the fairness policies this build of claims knows,
// in the order the report lists them; a policy added to claims later
// under one of the names here shows up without a change.
func DefaultPolicies() []string {
	var ps []string
	for _, p := range []string{"fcfs", "bucketed", "raffle", "window"} {
		if claims.Policy(p).Valid() {
			ps = append(ps, p)
		}
	}
	return ps
}

// FairnessConfig is a `loadgen fairness` run: a crowd of viewers whose
// streams run Delay behind the programme, each claiming Reaction after the
// drop appears on their screen, at one drop per policy; the crowd is the
// same for every policy of a round.
type FairnessConfig struct {
	Viewers, Stock, Cap int
	Preset              string // a label for the delay range
	Delay, Reaction     DelayRange
	// Policies are passed to the server as they are: a name claims does
	// not know is its error to give.
	Policies []string
	Rounds   int
	Seed     uint64
	// Duration is the drop's window; zero covers the latest arrival
	// (Delay.Max + Reaction.Max) plus two seconds, so every viewer's claim
	// arrives while the drop takes claims.
	Duration time.Duration
	// Grace and BucketWidth are the drop's; nil and zero leave the
	// server's defaults (in-process: serve's, 5 s and 250 ms).
	Grace       *time.Duration
	BucketWidth time.Duration
	// URLs are running servers (claims go to the first through the admin
	// bridge); none runs claims.Service in this process.
	URLs       []string
	AdminToken string
	Data       string
	Timeout    time.Duration
}

// Validate says what is wrong with c, in the flags' words.
func (c FairnessConfig) Validate() error {
	switch {
	case c.Viewers < 6 || c.Viewers > 100_000:
		return errors.New("--viewers must be between 6 and 100,000")
	case c.Stock < 1 || c.Stock > claims.MaxStock:
		return fmt.Errorf("--stock must be between 1 and %d", claims.MaxStock)
	case c.Cap < 1:
		return errors.New("--cap must be at least 1")
	case c.Delay.Min < 0 || c.Delay.Max < c.Delay.Min || c.Delay.Max > 10*time.Minute:
		return errors.New("--delay must be MIN-MAX with 0 <= MIN <= MAX <= 10m")
	case c.Reaction.Min < 0 || c.Reaction.Max < c.Reaction.Min || c.Reaction.Max > time.Minute:
		return errors.New("--reaction must be MIN-MAX with 0 <= MIN <= MAX <= 1m")
	case len(c.Policies) == 0:
		return errors.New("--policy: name at least one policy")
	case c.Rounds < 1 || c.Rounds > 1000:
		return errors.New("--rounds must be between 1 and 1000")
	case len(c.URLs) > 0 && c.AdminToken == "":
		return errors.New("--url needs the admin token: --admin-token or MICRODROP_ADMIN_TOKEN")
	case c.Timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	for _, p := range c.Policies {
		if p == "" || strings.ContainsAny(p, " \t,") {
			return fmt.Errorf("--policy: bad policy name %q", p)
		}
	}
	return nil
}

// Sextiles is how many groups the crowd is split into by delay.
const Sextiles = 6

// FairnessReport is what `loadgen fairness --json` prints.
type FairnessReport struct {
	Target       string  `json:"target"`
	Preset       string  `json:"preset"`
	Viewers      int     `json:"viewers"`
	Stock        int     `json:"stock"`
	Cap          int     `json:"cap"`
	Rounds       int     `json:"rounds"`
	Seed         uint64  `json:"seed"`
	DelayMinS    float64 `json:"delay_min_s"`
	DelayMaxS    float64 `json:"delay_max_s"`
	ReactionMinS float64 `json:"reaction_min_s"`
	ReactionMaxS float64 `json:"reaction_max_s"`
	DurationS    float64 `json:"duration_s"`
	// Sextiles are the stream delays each sixth of the crowd had, the
	// earliest-seeing first (over all rounds).
	Sextiles []SextileRange   `json:"sextiles"`
	Policies []PolicyFairness `json:"policies"`
}

// SextileRange is the delays of one sextile, in seconds.
type SextileRange struct {
	FromS float64 `json:"from_s"`
	ToS   float64 `json:"to_s"`
}

// PolicyFairness is one policy's outcome by delay sextile.
type PolicyFairness struct {
	Policy string `json:"policy"`
	// WinRate is the percentage of each sextile's viewers that won.
	WinRate [Sextiles]float64 `json:"win_rate_pct"`
	Wins    [Sextiles]int     `json:"wins"`
	Entered [Sextiles]int     `json:"viewers"`
	// SpreadPoints is the earliest sextile's win rate minus the latest's.
	SpreadPoints float64 `json:"spread_points"`
	Winners      int     `json:"winners"`
	Refused      int     `json:"refused"`
	Errors       int     `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
}

// SextileOf gives each viewer's sextile by stream delay: the viewers ranked
// by delay (ties in index order) and cut into six groups as equal as the
// count allows, 0 the earliest-seeing.
func SextileOf(delays []time.Duration) []int {
	order := make([]int, len(delays))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case delays[a] < delays[b]:
			return -1
		case delays[a] > delays[b]:
			return 1
		}
		return 0
	})
	sx := make([]int, len(delays))
	for rank, i := range order {
		sx[i] = rank * Sextiles / len(delays)
	}
	return sx
}

// viewer is one simulated viewer of a round.
type viewer struct {
	user            string
	delay, reaction time.Duration
	sextile         int
}

func crowd(cfg FairnessConfig, round int) []viewer {
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(round)))
	vs := make([]viewer, cfg.Viewers)
	delays := make([]time.Duration, len(vs))
	for i := range vs {
		vs[i] = viewer{user: fmt.Sprintf("r%dv%05d", round, i), delay: cfg.Delay.pick(rng), reaction: cfg.Reaction.pick(rng)}
		delays[i] = vs[i].delay
	}
	for i, s := range SextileOf(delays) {
		vs[i].sextile = s
	}
	return vs
}

// Fairness runs the simulation and reports each policy's win rate by delay
// sextile. Claims are sent in real time, each at the moment its viewer
// would send it, so a round lasts as long as the drop's window (less when
// it sells out) and the policies of a round run side by side.
func Fairness(ctx context.Context, cfg FairnessConfig) (FairnessReport, error) {
	var rep FairnessReport
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	if cfg.Duration == 0 {
		cfg.Duration = (cfg.Delay.Max + cfg.Reaction.Max + 2*time.Second).Round(time.Second)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	// serve's defaults: a viewer's claim rate is no concern here (one
	// claim each), the grace is.
	target, label, err := newClaimTarget(ctx, cfg.URLs, cfg.AdminToken, cfg.Data, cfg.Viewers,
		claims.Options{DefaultGrace: 5 * time.Second})
	if err != nil {
		return rep, err
	}
	defer target.close()

	rep = FairnessReport{Target: label, Preset: cfg.Preset, Viewers: cfg.Viewers, Stock: cfg.Stock, Cap: cfg.Cap, Rounds: cfg.Rounds, Seed: cfg.Seed,
		DelayMinS: cfg.Delay.Min.Seconds(), DelayMaxS: cfg.Delay.Max.Seconds(),
		ReactionMinS: cfg.Reaction.Min.Seconds(), ReactionMaxS: cfg.Reaction.Max.Seconds(), DurationS: cfg.Duration.Seconds()}
	rep.Policies = make([]PolicyFairness, len(cfg.Policies))
	lo, hi := make([]time.Duration, Sextiles), make([]time.Duration, Sextiles)
	for k := range lo {
		lo[k] = math.MaxInt64
	}
	for round := range cfg.Rounds {
		vs := crowd(cfg, round)
		for _, v := range vs {
			lo[v.sextile], hi[v.sextile] = min(lo[v.sextile], v.delay), max(hi[v.sextile], v.delay)
		}
		var wg sync.WaitGroup
		errs := make([]error, len(cfg.Policies))
		for p := range cfg.Policies {
			wg.Go(func() {
				errs[p] = fairnessRound(ctx, target, cfg, p, round, vs, &rep.Policies[p])
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return rep, err
		}
	}
	for k := range Sextiles {
		rep.Sextiles = append(rep.Sextiles, SextileRange{FromS: Round(lo[k].Seconds(), 2), ToS: Round(hi[k].Seconds(), 2)})
	}
	for p := range rep.Policies {
		pf := &rep.Policies[p]
		pf.Policy = cfg.Policies[p]
		for k := range Sextiles {
			if pf.Entered[k] > 0 {
				pf.WinRate[k] = Round(100*float64(pf.Wins[k])/float64(pf.Entered[k]), 1)
			}
		}
		pf.SpreadPoints = Round(pf.WinRate[0]-pf.WinRate[Sextiles-1], 1)
	}
	return rep, nil
}

// fairnessRound opens one drop under policy, lets the crowd claim at it in
// real time and adds the ledger's winners to pf.
//
// Each policy's drop has its own viewer ids (the same crowd otherwise): one
// id claiming at several drops at once would meet the per-viewer rate limit.
func fairnessRound(ctx context.Context, target claimTarget, cfg FairnessConfig, p, round int, vs []viewer, pf *PolicyFairness) error {
	policy := cfg.Policies[p]
	req := claims.OpenRequest{Channel: fmt.Sprintf("fair_%d_p%d_r%d", time.Now().UnixNano()%1_000_000, p, round),
		SKU: "fairness", Title: "Fairness run", Stock: cfg.Stock, Duration: claims.Duration(cfg.Duration), Cap: cfg.Cap,
		Policy: claims.Policy(policy), BucketWidth: claims.Duration(cfg.BucketWidth)}
	if cfg.Grace != nil {
		g := claims.Duration(*cfg.Grace)
		req.Grace = &g
	}
	dropID, err := target.open(ctx, req)
	if err != nil {
		return fmt.Errorf("policy %s: open drop: %w", policy, err)
	}
	// The drop is on the programme now; each viewer sees it delay later.
	shown := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, v := range vs {
		wg.Go(func() {
			t := time.NewTimer(time.Until(shown.Add(v.delay + v.reaction)))
			defer t.Stop()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			_, rejected, err := target.claim(ctx, dropID, fmt.Sprintf("p%d%s", p, v.user))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				pf.Errors++
				if pf.FirstError == "" {
					pf.FirstError = err.Error()
				}
			case rejected:
				pf.Refused++
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("policy %s: %w", policy, err)
	}
	// Every claim is in: close what is still open (a raffle draws then,
	// after its grace) and take the winners from the ledger.
	entries, _, err := target.finish(ctx, dropID, claims.MaxGrace+finalWait)
	if err != nil {
		return fmt.Errorf("policy %s: %w", policy, err)
	}
	won := map[string]bool{}
	for _, e := range entries {
		if e.Outcome == claims.OutcomeWon {
			won[e.UserID] = true
		}
	}
	for _, v := range vs {
		pf.Entered[v.sextile]++
		if won[fmt.Sprintf("p%d%s", p, v.user)] {
			pf.Wins[v.sextile]++
			pf.Winners++
		}
	}
	return nil
}

// WriteText prints the report as a table, the earliest-seeing sextile first.
func (rep FairnessReport) WriteText(w io.Writer) {
	rounds := "round"
	if rep.Rounds != 1 {
		rounds = "rounds"
	}
	preset := ""
	if rep.Preset != "" {
		preset = rep.Preset + ": "
	}
	fmt.Fprintf(w, "loadgen fairness: %d viewers (%sstream delay %gs–%gs, reaction %gs–%gs), %d units, cap %d, %gs window, %d %s, %s\n",
		rep.Viewers, preset, rep.DelayMinS, rep.DelayMaxS, rep.ReactionMinS, rep.ReactionMaxS, rep.Stock, rep.Cap, rep.DurationS, rep.Rounds, rounds, rep.Target)
	fmt.Fprintf(w, "win rate by delay sextile (1 = the earliest-seeing sixth of the viewers)\n\n")
	fmt.Fprintf(w, "%-10s", "sextile")
	for k := range Sextiles {
		fmt.Fprintf(w, " %11d", k+1)
	}
	fmt.Fprintf(w, "  %s\n", "1st - 6th")
	fmt.Fprintf(w, "%-10s", "delay s")
	for _, s := range rep.Sextiles {
		fmt.Fprintf(w, " %11s", fmt.Sprintf("%.1f–%.1f", s.FromS, s.ToS))
	}
	fmt.Fprintln(w)
	for _, p := range rep.Policies {
		fmt.Fprintf(w, "%-10s", p.Policy)
		for _, r := range p.WinRate {
			fmt.Fprintf(w, " %10.1f%%", r)
		}
		fmt.Fprintf(w, "  %+.1f points\n", p.SpreadPoints)
	}
	fmt.Fprintln(w)
	for _, p := range rep.Policies {
		fmt.Fprintf(w, "%s: %d winners, %d claims refused, %d errors", p.Policy, p.Winners, p.Refused, p.Errors)
		if p.FirstError != "" {
			fmt.Fprintf(w, " (first: %s)", p.FirstError)
		}
		fmt.Fprintln(w)
	}
}
