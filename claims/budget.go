package claims

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/microdrop/microdrop"
)

// PlatformLatency is a platform viewers watch on and the latency mode the
// channel streams with there, e.g. {"twitch", "low_latency"}.
type PlatformLatency struct {
	Platform string `yaml:"platform" json:"platform"`
	Mode     string `yaml:"mode" json:"mode"`
}

// LatencyRange is how far behind the ingest a platform's viewers watch in a
// latency mode, from the earliest to the latest-seeing viewer. The figures
// are the platforms' published orders of magnitude, rounded up at the late
// end: Twitch's low-latency mode is a few seconds and its normal mode
// several more; YouTube's ultra-low latency is a few seconds, low latency
// under about ten, normal latency 15–30 s.
func LatencyRange(platform, mode string) (lo, hi time.Duration, ok bool) {
	s := time.Second
	switch platform + "/" + mode {
	case "twitch/low_latency":
		return 1 * s, 6 * s, true
	case "twitch/normal":
		return 3 * s, 12 * s, true
	case "youtube/ultra_low":
		return 2 * s, 5 * s, true
	case "youtube/low":
		return 5 * s, 10 * s, true
	case "youtube/normal":
		return 15 * s, 30 * s, true
	}
	return 0, 0, false
}

// LatencyModes lists the known platform/mode pairs, for error messages.
func LatencyModes() string {
	return "twitch: low_latency, normal; youtube: ultra_low, low, normal"
}

// BudgetOptions size the latency budget of a window drop: the programme
// delay (measured, else ProgrammeDelay), the spread of viewer delays on the
// platforms streamed to, and the time a viewer needs to react.
type BudgetOptions struct {
	// ProgrammeDelay is the cue-to-air delay assumed on a channel until a
	// cue has been measured there (relay or platform playback).
	ProgrammeDelay time.Duration
	// Reaction is the time from seeing the drop to claiming it. 2 s when zero.
	Reaction time.Duration
	// Platforms the channel streams to. Twitch in low-latency mode when nil.
	Platforms []PlatformLatency
}

func (o *BudgetOptions) fill() {
	if o.Reaction == 0 {
		o.Reaction = 2 * time.Second
	}
	if o.Platforms == nil {
		o.Platforms = []PlatformLatency{{Platform: "twitch", Mode: "low_latency"}}
	}
}

// Validate says what is wrong with the options, if anything.
func (o BudgetOptions) Validate() error {
	if o.ProgrammeDelay < 0 || o.ProgrammeDelay > MaxBudget {
		return fmt.Errorf("programme delay must be between 0s and %s", MaxBudget)
	}
	if o.Reaction < 0 || o.Reaction > time.Minute {
		return fmt.Errorf("reaction allowance must be between 0s and 1m")
	}
	for _, p := range o.Platforms {
		if _, _, ok := LatencyRange(p.Platform, p.Mode); !ok {
			return fmt.Errorf("unknown latency mode %q for platform %q (known: %s)", p.Mode, p.Platform, LatencyModes())
		}
	}
	return nil
}

// budgets remembers the latest cue-to-air delay measured on each channel
// and computes the budget of the channel's next window drop from it.
type budgets struct {
	opts BudgetOptions

	mu       sync.Mutex
	measured map[string]cueDelay
}

type cueDelay struct {
	relay, playback time.Duration
}

func newBudgets(o BudgetOptions) *budgets {
	return &budgets{opts: o, measured: map[string]cueDelay{}}
}

func (b *budgets) observe(channel, stream string, delay time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.measured[channel]
	if strings.HasPrefix(stream, "playback:") {
		m.playback = delay
	} else {
		m.relay = delay
	}
	b.measured[channel] = m
}

// budget is programme delay + spread + reaction, and how it was reached.
// A delay measured on the platform's playback already includes its fastest
// viewers' latency, so only the spread above it is added; a delay measured
// on the relay (or assumed) gets the platform's whole range.
func (b *budgets) budget(channel string) (time.Duration, string) {
	b.mu.Lock()
	m := b.measured[channel]
	b.mu.Unlock()
	delay, source := b.opts.ProgrammeDelay, "assumed"
	switch {
	case m.playback > 0:
		delay, source = m.playback, "measured on the platform playback"
	case m.relay > 0:
		delay, source = m.relay, "measured on the relay"
	}
	var spread time.Duration
	spreadBy := "no platform"
	for _, p := range b.opts.Platforms {
		lo, hi, _ := LatencyRange(p.Platform, p.Mode)
		s := hi
		if m.playback > 0 {
			s = hi - lo
		}
		if s > spread {
			spread, spreadBy = s, p.Platform+" "+p.Mode
		}
	}
	total := min(delay+spread+b.opts.Reaction, MaxBudget)
	return total, fmt.Sprintf("cue-to-air %s (%s) + %s spread %s + reaction %s",
		round(delay), source, spreadBy, round(spread), round(b.opts.Reaction))
}

func round(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }

// Budget is the latency budget the channel's next window drop would get
// now, and how it was reached.
func (s *Service) Budget(channel string) (time.Duration, string) {
	return s.budgets.budget(NormalizeChannel(channel))
}

// LearnCueDelays records every measured cue-to-air delay (on the relay and,
// where configured, on the platform playback), so the next window drop of
// the channel gets a budget from what was measured instead of an
// assumption. A live drop keeps the window it published. It runs until ctx
// ends or the Service closes.
func (s *Service) LearnCueDelays(ctx context.Context, bus microdrop.Bus) {
	s.onCueAired(ctx, bus, func(_ context.Context, e microdrop.Event) {
		if e.Channel != "" {
			s.budgets.observe(NormalizeChannel(e.Channel), e.Cue.Stream, time.Duration(e.Cue.DelayMS)*time.Millisecond)
		}
	})
}
