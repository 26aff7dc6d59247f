package highlight_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/microdrop/microdrop/ingest/highlight"
)

// TestPublisherReconnectKeepsBuffer: a publisher that drops and comes back
// continues the same session, and a moment marked after it is back still
// gets the seconds buffered before it left.
func TestPublisherReconnectKeepsBuffer(t *testing.T) {
	requireFFmpeg(t)
	r := newRig(t)
	ctx := context.Background()
	first := r.publish(4)
	r.waitBuffered(2 * time.Second)
	session := r.sessionID()
	<-first
	waitFor(t, 10*time.Second, "the session to notice the publisher left", func() bool {
		s, err := r.store.Session(ctx, session)
		return err == nil && !s.EndedAt.IsZero()
	})
	before, _ := r.cap.RingStats("live")
	back := time.Now()
	r.publish(20)
	waitFor(t, 20*time.Second, "the publisher to come back", func() bool {
		s, err := r.store.Session(ctx, session)
		st, _ := r.cap.RingStats("live")
		return err == nil && s.EndedAt.IsZero() && st.Units > before.Units+50
	})
	if got := r.sessionID(); got != session {
		t.Fatalf("session after reconnect %s, want %s", got, session)
	}
	// A moment marked at the reconnect: its pre-roll is the first
	// publisher's last seconds, its post-roll the second's first.
	at := back
	hs, err := r.cap.Mark(ctx, "chan1", "", highlight.ReasonClip, "across the reconnect", "", at)
	if err != nil {
		t.Fatal(err)
	}
	ready := r.waitReady(session, 1)
	h := ready[0]
	if h.ID != hs[0].ID || h.State != highlight.HighlightReady {
		t.Fatalf("highlight %+v", h)
	}
	if h.Start > h.StreamTime-testPre || h.Duration < testPre+testPost-200*time.Millisecond {
		t.Errorf("clip [%s, +%s) for a moment at %s: what was buffered before the reconnect was lost", h.Start, h.Duration, h.StreamTime)
	}
	p := ffprobe(t, filepath.Join(r.clipDir, filepath.FromSlash(h.File)))
	if p.FirstPict != "I" || p.Duration < testPre+testPost-100*time.Millisecond {
		t.Errorf("clip across the reconnect: %+v", p)
	}
	ss, err := r.store.Sessions(ctx)
	if err != nil || len(ss) != 1 {
		t.Errorf("sessions %v %v, want one", ss, err)
	}
}
