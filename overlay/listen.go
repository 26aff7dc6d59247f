package overlay

import (
	"encoding/json"

	"github.com/microdrop/microdrop"
)

// stepFrame is a cue.step frame: the overlay plays the step's code at once.
// It names the drop so a page showing another drop ignores it.
type stepFrame struct {
	Frame
	DropID string `json:"drop_id"`
}

// cueStep forwards a listen drop's next rotating code to the channel's
// overlays. Only overlays (which hold the overlay key) get codes; viewers
// must hear them.
func (h *Hub) cueStep(t *topic, e microdrop.Event) {
	if e.Step == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.drop == nil || t.drop.ID != e.DropID {
		return
	}
	b, _ := json.Marshal(stepFrame{Frame: Frame{Type: FrameEvent, Kind: e.Kind, Seq: e.Seq, Channel: t.channel,
		AtMS: unixMS(e.At), ServerMS: unixMS(h.now()), Step: e.Step}, DropID: e.DropID}) // plain structs: cannot fail
	h.broadcastLocked(t, b)
}
