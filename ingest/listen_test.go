package ingest

import (
	"context"
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

// A cue.step published on the bus reaches the mixers of a started server:
// the server's subscription takes the kind, not only direct calls.
func TestCueStepFromTheBus(t *testing.T) {
	bus := microdrop.NewMemoryBus()
	s, err := New(Deps{Logger: testLogger(t), Bus: bus, Config: Config{RTSPAddress: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	mine := &Stream{log: testLogger(t), channel: "chan1", path: "live"}
	s.mu.Lock()
	s.streams["live"] = mine
	s.mu.Unlock()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The stream is a stand-in without a relay: not the server's to close.
		s.mu.Lock()
		delete(s.streams, "live")
		s.mu.Unlock()
		_ = s.Close()
	})
	if _, err := bus.Publish(context.Background(), microdrop.Event{Kind: microdrop.CueStep, Channel: "chan1", DropID: "d1", At: time.Now(),
		Step: &microdrop.CueStepView{Code: 0xCAFE0042, Step: 2, StepMS: 8000, StartsAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if a := mine.arm.Load(); a != nil && a.code == 0xCAFE0042 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the step published on the bus never armed the channel's stream")
		}
	}
}
