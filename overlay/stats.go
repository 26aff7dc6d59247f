package overlay

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

// Point is one second of the dashboard chart.
type Point struct {
	AtMS float64 `json:"t"`
	// CPS is claims decided in that second (every outcome, rejections too).
	CPS float64 `json:"cps"`
	// LatencyMS is the mean decision latency of those claims.
	LatencyMS float64 `json:"lat_ms"`
}

// statsSampler turns the claims counters into a per-second series of
// bounded length.
type statsSampler struct {
	metrics  *claims.Metrics
	gatherer prometheus.Gatherer
	now      func() time.Time

	mu        sync.Mutex
	points    []Point // ring, oldest first once full
	max       int
	lastTotal uint64
	lastSum   float64
	lastCount uint64
	primed    bool
}

func newStatsSampler(m *claims.Metrics, g prometheus.Gatherer, now func() time.Time) *statsSampler {
	return &statsSampler{metrics: m, gatherer: g, now: now, max: 120}
}

func (s *statsSampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample()
		}
	}
}

func (s *statsSampler) decision() (sum float64, count uint64) {
	if s.gatherer == nil {
		return 0, 0
	}
	mfs, err := s.gatherer.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() != "microdrop_claim_decision_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				sum += h.GetSampleSum()
				count += h.GetSampleCount()
			}
		}
	}
	return sum, count
}

func (s *statsSampler) sample() {
	var total uint64
	for _, c := range s.metrics.Outcomes() {
		total += c.Count
	}
	sum, count := s.decision()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.primed {
		p := Point{AtMS: unixMS(s.now()), CPS: float64(total - s.lastTotal)}
		if dc := count - s.lastCount; dc > 0 {
			p.LatencyMS = (sum - s.lastSum) / float64(dc) * 1000
		}
		s.points = append(s.points, p)
		if len(s.points) > s.max {
			s.points = s.points[len(s.points)-s.max:]
		}
	}
	s.primed, s.lastTotal, s.lastSum, s.lastCount = true, total, sum, count
}

func (s *statsSampler) series() []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Point(nil), s.points...)
}

// FeedItem is one line of the dashboard's live claims feed.
type FeedItem struct {
	AtMS    float64 `json:"t"`
	Channel string  `json:"channel"`
	DropID  string  `json:"drop_id"`
	Kind    string  `json:"kind"`
	Name    string  `json:"name,omitempty"`
	Outcome string  `json:"outcome,omitempty"`
	// Remain is the stock after the event, when the event carried it.
	Remain *int `json:"remaining,omitempty"`
}

// feed keeps the latest claim and drop events, across channels.
type feed struct {
	mu    sync.Mutex
	items []FeedItem // newest last
	max   int
}

func newFeed(n int) *feed { return &feed{max: n} }

func (f *feed) run(ctx context.Context, sub *microdrop.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			f.add(e)
		}
	}
}

func (f *feed) add(e microdrop.Event) {
	it := FeedItem{AtMS: unixMS(e.At), Channel: e.Channel, DropID: e.DropID, Kind: string(e.Kind)}
	if e.Claim != nil {
		it.Name, it.Outcome = displayName(e.Claim.Login, e.Claim.UserID), e.Claim.Outcome
	}
	if e.Drop != nil {
		r := e.Drop.Remaining
		it.Remain = &r
	}
	switch e.Kind {
	case microdrop.Claimed, microdrop.Redeemed, microdrop.DropOpened, microdrop.SoldOut, microdrop.DropClosed, microdrop.DropExtended:
	default:
		return
	}
	f.mu.Lock()
	f.items = append(f.items, it)
	if len(f.items) > 2*f.max {
		f.items = append(f.items[:0], f.items[len(f.items)-f.max:]...)
	}
	f.mu.Unlock()
}

// latest returns up to max items, newest first.
func (f *feed) latest() []FeedItem {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(len(f.items), f.max)
	out := make([]FeedItem, 0, n)
	for i := len(f.items) - 1; i >= len(f.items)-n; i-- {
		out = append(out, f.items[i])
	}
	return out
}
