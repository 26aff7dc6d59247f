package claims

import (
	"errors"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/microdrop/microdrop"
)

// Metrics counts claims by outcome and rejections by reason, for /metrics
// and the dashboard.
type Metrics struct {
	claims       *prometheus.CounterVec
	rejections   *prometheus.CounterVec
	decision     prometheus.Histogram
	batchSize    prometheus.Histogram
	commitTime   prometheus.Histogram
	commitFails  prometheus.Counter
	commitSlow   prometheus.Counter
	finalRetries prometheus.Counter
	redemptions  *prometheus.CounterVec
	holdsPaid    prometheus.Counter
	holdsPassed  prometheus.Counter
	// paymentsFlagged counts card payments not credited (late, mismatch).
	paymentsFlagged *prometheus.CounterVec
}

// NewMetrics registers the collectors with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "microdrop_claims_total", Help: "Claims decided, by outcome (won, entered, rejected).",
		}, []string{"outcome"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "microdrop_claim_rejections_total", Help: "Rejected claims by reason.",
		}, []string{"reason"}),
		decision: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "microdrop_claim_decision_seconds", Help: "Time from a claim's arrival to its durable decision.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "microdrop_ledger_commit_batch_size", Help: "Entries written per ledger commit.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "microdrop_ledger_commit_seconds", Help: "Ledger commit latency.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		commitFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "microdrop_ledger_commit_failures_total", Help: "Ledger commits that failed (their claims were refused).",
		}),
		commitSlow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "microdrop_ledger_commit_timeouts_total", Help: "Ledger commits that missed the commit timeout (also counted as failures).",
		}),
		finalRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "microdrop_drop_final_retries_total", Help: "Tries to record a drop's final state again after its final commit failed.",
		}),
		redemptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "microdrop_redemptions_total", Help: "Pickup token redemptions by result.",
		}, []string{"result"}),
		holdsPaid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "microdrop_holds_paid_total", Help: "Holds of priced drops paid.",
		}),
		holdsPassed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "microdrop_holds_passed_total", Help: "Unpaid units passed to the next viewer in a drop's fair order.",
		}),
		paymentsFlagged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "microdrop_payments_flagged_total", Help: "Card payments not credited to a hold, by reason (late, mismatch), owed back.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.claims, m.rejections, m.decision, m.batchSize, m.commitTime, m.commitFails, m.commitSlow, m.finalRetries, m.redemptions, m.holdsPaid, m.holdsPassed, m.paymentsFlagged)
	}
	return m
}

func (m *Metrics) observeClaim(res ClaimResult, err error, d time.Duration) {
	m.decision.Observe(d.Seconds())
	outcome := res.Outcome
	reason := ""
	if err != nil {
		outcome = "rejected"
		reason = microdrop.ErrorReason(err)
		if reason == "" {
			reason = "error"
		}
		m.rejections.WithLabelValues(reason).Inc()
	}
	m.claims.WithLabelValues(outcome).Inc()
}

func (m *Metrics) observeCommit(n int, d time.Duration, err error, timedOut bool) {
	m.batchSize.Observe(float64(n))
	m.commitTime.Observe(d.Seconds())
	if err != nil {
		m.commitFails.Inc()
	}
	if timedOut {
		m.commitSlow.Inc()
	}
}

func (m *Metrics) redeem(err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrTokenUsed):
		result = "used"
	case errors.Is(err, ErrTokenExpired):
		result = "expired"
	case errors.Is(err, ErrTokenForged):
		result = "forged"
	case errors.Is(err, ErrTokenMalformed):
		result = "malformed"
	case errors.Is(err, ErrTokenUnknown):
		result = "unknown"
	default:
		result = "error"
	}
	m.redemptions.WithLabelValues(result).Inc()
}

// Count is one labelled number.
type Count struct {
	Name  string `json:"name"`
	Count uint64 `json:"count"`
}

// Rejections returns rejection counts by reason, largest first.
func (m *Metrics) Rejections() []Count { return counts(m.rejections) }

// Outcomes returns claim counts by outcome, largest first.
func (m *Metrics) Outcomes() []Count { return counts(m.claims) }

// counts reads a one-label counter vector: the Prometheus counters are the
// only tally, so the dashboard and /metrics never disagree.
func counts(vec *prometheus.CounterVec) []Count {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		vec.Collect(ch)
		close(ch)
	}()
	var out []Count
	for metric := range ch {
		var d dto.Metric
		if err := metric.Write(&d); err != nil || len(d.GetLabel()) != 1 {
			continue
		}
		out = append(out, Count{Name: d.GetLabel()[0].GetValue(), Count: uint64(d.GetCounter().GetValue())})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Name < out[j].Name
	})
	return out
}
