package claims

import (
	"fmt"
	"sync"

	"github.com/microdrop/microdrop"
)

// deciders is the Service's registry of the drops decided in this process,
// by id and by channel. A channel holds at most one live drop: opening one
// reserves the channel before the ledger write, so two opens cannot race.
type deciders struct {
	mu        sync.Mutex
	byID      map[string]*decider
	byChannel map[string]string // channel -> drop id (reserved or running)
	closed    bool
}

func newDeciders() *deciders {
	return &deciders{byID: map[string]*decider{}, byChannel: map[string]string{}}
}

var errShuttingDown = microdrop.Errorf(microdrop.EINTERNAL, "service is shutting down")

// reserve holds the channel for a drop being opened.
func (r *deciders) reserve(channel, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errShuttingDown
	}
	if other, ok := r.byChannel[channel]; ok {
		return &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("channel %s already has a live drop (%s); close it first", channel, other)}
	}
	r.byChannel[channel] = id
	return nil
}

// unreserve gives up a reservation whose drop was never started.
func (r *deciders) unreserve(channel, id string) {
	r.mu.Lock()
	if r.byChannel[channel] == id && r.byID[id] == nil {
		delete(r.byChannel, channel)
	}
	r.mu.Unlock()
}

// start registers dc and runs it; run accounts for itself in wg. It
// reports false, starting nothing, once the service closes or when the
// drop already has a decider here.
func (r *deciders) start(dc *decider, wg *sync.WaitGroup) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.byID[dc.id] != nil {
		return false
	}
	r.byID[dc.id] = dc
	if _, ok := r.byChannel[dc.channel]; !ok {
		r.byChannel[dc.channel] = dc.id
	}
	wg.Add(1)
	go dc.run()
	return true
}

func (r *deciders) remove(dc *decider) {
	r.mu.Lock()
	if r.byID[dc.id] == dc {
		delete(r.byID, dc.id)
	}
	if r.byChannel[dc.channel] == dc.id {
		delete(r.byChannel, dc.channel)
	}
	r.mu.Unlock()
}

func (r *deciders) get(id string) *decider {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

// onChannel is the channel's running decider, nil while none (or while
// its drop is still being opened).
func (r *deciders) onChannel(channel string) *decider {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[r.byChannel[channel]]
}

func (r *deciders) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.byID))
	for id := range r.byID {
		ids = append(ids, id)
	}
	return ids
}

// close refuses new deciders and returns the running ones.
func (r *deciders) close() []*decider {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	all := make([]*decider, 0, len(r.byID))
	for _, dc := range r.byID {
		all = append(all, dc)
	}
	return all
}
