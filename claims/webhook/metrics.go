package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count deliveries for /metrics.
type Metrics struct {
	attempts  *prometheus.CounterVec
	latency   prometheus.Histogram
	queuedN   prometheus.Counter
	disabledN prometheus.Counter
}

// NewMetrics registers the collectors with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "microdrop_webhook_attempts_total",
			Help: "Webhook delivery attempts by result (delivered, retry, failed)."}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "microdrop_webhook_attempt_seconds",
			Help: "Time from sending a webhook to its answer.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		queuedN: prometheus.NewCounter(prometheus.CounterOpts{Name: "microdrop_webhook_queued_total",
			Help: "Outbox events queued for an endpoint."}),
		disabledN: prometheus.NewCounter(prometheus.CounterOpts{Name: "microdrop_webhook_endpoints_disabled_total",
			Help: "Endpoints disabled after failing past their retries."}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.latency, m.queuedN, m.disabledN)
	}
	return m
}

func (m *Metrics) attempt(result string, lat time.Duration) {
	if m == nil {
		return
	}
	m.attempts.WithLabelValues(result).Inc()
	m.latency.Observe(lat.Seconds())
}

func (m *Metrics) queued(n int) {
	if m != nil && n > 0 {
		m.queuedN.Add(float64(n))
	}
}

func (m *Metrics) disabled() {
	if m != nil {
		m.disabledN.Inc()
	}
}
