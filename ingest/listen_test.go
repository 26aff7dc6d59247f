package ingest

import (
	"testing"
	"time"

	"github.com/microdrop/microdrop"
)

// Each step of a listen drop re-arms the mixers of the drop's channel with
// that step's code, so the relay plays the rotating cue as the overlay does;
// streams of other channels are left alone.
func TestCueStepRearmsTheChannelsStreams(t *testing.T) {
	s, err := New(Deps{Logger: testLogger(t), Bus: microdrop.NewMemoryBus(), Config: Config{RTSPAddress: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	mine := &Stream{log: testLogger(t), channel: "chan1", path: "live"}
	other := &Stream{log: testLogger(t), channel: "chan2", path: "other"}
	s.mu.Lock()
	s.streams["live"], s.streams["other"] = mine, other
	s.mu.Unlock()

	step := func(n int64, code uint32) {
		s.cueStep(microdrop.Event{Kind: microdrop.CueStep, Channel: "chan1", DropID: "d1", At: time.Now(),
			Step: &microdrop.CueStepView{Code: code, Step: n, StepMS: 8000, StartsAt: time.Now()}})
	}
	step(2, 0xA1B2C3D4)
	first := mine.arm.Load()
	if first == nil || first.code != 0xA1B2C3D4 || first.dropID != "d1" || len(first.samples) == 0 {
		t.Fatalf("after step 2: arm %+v", first)
	}
	step(3, 0x01020304)
	second := mine.arm.Load()
	if second == nil || second.code != 0x01020304 || second.id == first.id {
		t.Fatalf("after step 3: arm %+v (step 2's id %d)", second, first.id)
	}
	if other.arm.Load() != nil {
		t.Fatal("a stream of another channel was armed")
	}
}
