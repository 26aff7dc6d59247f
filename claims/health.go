package claims

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrDegraded is wrapped by Health's error: the ledger is failing commits.
var ErrDegraded = errors.New("ledger commits failing")

// health remembers, per drop, a ledger commit that failed and has not yet
// been followed by one that succeeded.
type health struct {
	now      func() time.Time
	mu       sync.Mutex
	problems map[string]healthProblem
}

// healthProblem leaves the ledger's own error text to the log: Health is
// shown on the unauthenticated /healthz.
type healthProblem struct {
	timedOut bool
	at       time.Time
}

func (h *health) fail(dropID string, timedOut bool) {
	h.mu.Lock()
	h.problems[dropID] = healthProblem{timedOut: timedOut, at: h.now()}
	h.mu.Unlock()
}

func (h *health) ok(dropID string) {
	h.mu.Lock()
	delete(h.problems, dropID)
	h.mu.Unlock()
}

// Health reports nil while the ledger takes every commit. Otherwise it
// says which drops' last commits failed and why: claims for them are
// refused until a commit succeeds again, and the edge should report the
// service degraded.
func (s *Service) Health() error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if len(s.health.problems) == 0 {
		return nil
	}
	ids := make([]string, 0, len(s.health.problems))
	for id := range s.health.problems {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	b.WriteString("claims degraded: ")
	for i, id := range ids {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(ids)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		p := s.health.problems[id]
		what := "failed"
		if p.timedOut {
			what = "timed out"
		}
		fmt.Fprintf(&b, "ledger commit for drop %s %s at %s", id, what, p.at.UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("%s: %w", b.String(), ErrDegraded)
}
