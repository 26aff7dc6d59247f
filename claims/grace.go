package claims

import (
	"context"
	"time"

	"github.com/microdrop/microdrop"
)

// SetGrace raises a live drop's grace to d (never lowers it, never above
// MaxGrace). by says who asked, for the log.
func (s *Service) SetGrace(ctx context.Context, id string, d time.Duration, by string) (*Drop, error) {
	if d <= 0 {
		return nil, microdrop.Errorf(microdrop.EINVALID, "grace must be positive")
	}
	return s.control(ctx, id, ctlGrace, d, by)
}

// FollowCueDelays makes each drop's grace at least the measured cue-to-air
// delay plus margin: viewers who see the stream that late still get their
// claims counted. It runs until ctx ends or the Service closes; Close waits
// for it.
func (s *Service) FollowCueDelays(ctx context.Context, bus microdrop.Bus, margin time.Duration) {
	s.onCueAired(ctx, bus, func(ctx context.Context, e microdrop.Event) {
		if e.DropID == "" {
			return
		}
		grace := time.Duration(e.Cue.DelayMS)*time.Millisecond + margin
		if _, err := s.SetGrace(ctx, e.DropID, grace, "cue on "+e.Cue.Stream); err != nil && microdrop.ErrorCode(err) != microdrop.ECONFLICT {
			s.log.Warn("grace from cue delay", "drop", e.DropID, "err", err)
		}
	})
}

// onCueAired calls fn, on a goroutine of its own, for every cue heard on
// air with a measured delay, until ctx ends or the Service closes; Close
// waits for it. It subscribes to CueAired alone, which the bus never drops,
// so a claim burst costs it nothing.
func (s *Service) onCueAired(ctx context.Context, bus microdrop.Bus, fn func(context.Context, microdrop.Event)) {
	select {
	case <-s.quit:
		return // closed: nothing would stop it
	default:
	}
	sub := bus.Subscribe(1024, microdrop.CueAired)
	ctx, cancel := context.WithCancel(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.quit:
				return
			case e, ok := <-sub.C():
				if !ok {
					return
				}
				if e.Kind == microdrop.CueAired && e.Cue != nil && e.Cue.DelayMS > 0 {
					fn(ctx, e)
				}
			}
		}
	}()
}
