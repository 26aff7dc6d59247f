package ingest

import "github.com/microdrop/microdrop"

// cueStep mixes a listen drop's next rotating code into every stream of the
// drop's channel, as the overlay plays it. Only the open's cue is confirmed
// on air (it measures the delay); a step only re-arms the mixers, which
// start a cue whenever the arm changes.
func (s *Server) cueStep(e microdrop.Event) {
	if e.Step == nil {
		return
	}
	arm, err := s.cues.arm(e.DropID, e.Step.Code, e.Step.StartsAt)
	if err != nil {
		s.log.Warn("audio cue step unavailable", "drop", e.DropID, "step", e.Step.Step, "err", err)
		return
	}
	n := 0
	for _, st := range s.Streams() {
		if st.channel == e.Channel {
			st.arm.Store(arm)
			n++
		}
	}
	s.log.Debug("cue step armed", "drop", e.DropID, "step", e.Step.Step, "streams", n)
}
