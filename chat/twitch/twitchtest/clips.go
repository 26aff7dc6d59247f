package twitchtest

import (
	"net/http"
	"strings"
	"time"
)

// ClipOptions shape Create Clip and Get Clips. Twitch makes a clip
// asynchronously: Create Clip answers 202 with an id at once, and Get
// Clips lists the clip only once it exists; a clip not listed 15 s after
// Create Clip is to be taken as failed. The zero value lists a clip on
// the first lookup.
type ClipOptions struct {
	// HiddenPolls is how many Get Clips lookups of a new clip by id answer
	// without it before one lists it.
	HiddenPolls int
	// HiddenFor keeps a new clip out of Get Clips for this long after
	// Create Clip (with HiddenPolls, both must pass).
	HiddenFor time.Duration
	// NeverListed: Create Clip still answers 202, but Get Clips never lists
	// the clip (Twitch's failed creation).
	NeverListed bool
	// Offline: Create Clip answers 404, the broadcaster is not live.
	Offline bool
}

// Clip is a clip the bot asked Create Clip for.
type Clip struct {
	ID            string
	BroadcasterID string
	HasDelay      string // the has_delay query parameter as sent
	CreatedAt     time.Time
	Lookups       int  // Get Clips calls that asked for it by id
	Listed        bool // Get Clips has returned it

	hiddenPolls int
	visibleAt   time.Time
	never       bool
}

// listable reports whether Get Clips lists c now; HiddenPolls applies to
// lookups by id.
func (c *Clip) listable(now time.Time, byID bool) bool {
	switch {
	case c.Listed:
		return true
	case c.never || now.Before(c.visibleAt):
		return false
	}
	return !byID || c.Lookups > c.hiddenPolls
}

// SetClips changes how clips made from now on behave.
func (s *Server) SetClips(o ClipOptions) {
	s.mu.Lock()
	s.clipOpt = o
	s.mu.Unlock()
}

// clipWords make clip ids shaped like Twitch's
// ("FunPoisedGiraffeGingerPower-KDy2fwLNuUEHU").
var clipWords = []string{"Awkward", "Helpless", "Salamander", "Swift", "Rage", "Fun", "Poised", "Giraffe", "Ginger", "Power"}

func newClipID() string {
	h := strings.ReplaceAll(newID(), "-", "")
	var b strings.Builder
	for i := 0; i < 4; i++ {
		b.WriteString(clipWords[int(h[i])%len(clipWords)])
	}
	return b.String() + "-" + h[4:20]
}

// createClip: POST /helix/clips?broadcaster_id=...&has_delay=false answers
// 202 {"data":[{"id":"...","edit_url":"https://clips.twitch.tv/<id>/edit"}]};
// 401 without clips:edit; 404 when the broadcaster is not live.
func (s *Server) createClip(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("broadcaster_id") == "" {
		helixError(w, http.StatusBadRequest, "Missing required parameter \"broadcaster_id\"")
		return
	}
	if !s.hasScope("clips:edit") {
		helixError(w, http.StatusUnauthorized, "Missing scope: clips:edit")
		return
	}
	s.mu.Lock()
	o := s.clipOpt
	if o.Offline || q.Get("broadcaster_id") != s.opt.Broadcaster.ID {
		s.mu.Unlock()
		helixError(w, http.StatusNotFound, "Clipping is not possible for an offline channel.")
		return
	}
	now := time.Now()
	c := &Clip{ID: newClipID(), BroadcasterID: q.Get("broadcaster_id"), HasDelay: q.Get("has_delay"), CreatedAt: now,
		hiddenPolls: o.HiddenPolls, visibleAt: now.Add(o.HiddenFor), never: o.NeverListed}
	s.clips = append(s.clips, c)
	s.notifyLocked()
	s.mu.Unlock()
	writeJSON(w, http.StatusAccepted, map[string]any{"data": []map[string]any{{"id": c.ID,
		"edit_url": "https://clips.twitch.tv/" + c.ID + "/edit"}}})
}

// getClips: GET /helix/clips with exactly one of broadcaster_id, game_id
// and id (up to 100) answers {"data":[{"id","url","embed_url",
// "broadcaster_id","broadcaster_name","creator_id","creator_name",
// "video_id","game_id","language","title","view_count","created_at",
// "thumbnail_url","duration","vod_offset","is_featured"}],"pagination":{}}.
// Ids not found are left out, so a clip still being made is an empty data.
func (s *Server) getClips(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ids, bid, gid := q["id"], q.Get("broadcaster_id"), q.Get("game_id")
	n := 0
	for _, set := range []bool{len(ids) > 0, bid != "", gid != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		helixError(w, http.StatusBadRequest, "Must provide exactly one of broadcaster_id, game_id or id")
		return
	}
	if len(ids) > 100 {
		helixError(w, http.StatusBadRequest, "At most 100 id parameters")
		return
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	now := time.Now()
	out := []map[string]any{}
	s.mu.Lock()
	s.clipLookups++
	for _, c := range s.clips {
		if want[c.ID] {
			c.Lookups++
		} else if bid == "" || c.BroadcasterID != bid {
			continue
		}
		if !c.listable(now, want[c.ID]) {
			continue
		}
		c.Listed = true
		out = append(out, s.clipJSONLocked(c))
	}
	s.notifyLocked()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": out, "pagination": map[string]any{}})
}

func (s *Server) clipJSONLocked(c *Clip) map[string]any {
	b := s.users[c.BroadcasterID]
	return map[string]any{"id": c.ID, "url": "https://clips.twitch.tv/" + c.ID,
		"embed_url": "https://clips.twitch.tv/embed?clip=" + c.ID, "broadcaster_id": c.BroadcasterID,
		"broadcaster_name": b.DisplayName, "creator_id": s.opt.Bot.ID, "creator_name": s.opt.Bot.DisplayName,
		"video_id": "", "game_id": "509658", "language": "en", "title": "microdrop test stream", "view_count": 0,
		"created_at": c.CreatedAt.UTC().Format(time.RFC3339), "duration": 30.0, "vod_offset": nil, "is_featured": false,
		"thumbnail_url": "https://clips-media-assets2.twitch.tv/" + c.ID + "-preview-480x272.jpg"}
}
