package highlight

import (
	"context"
	"errors"
	"regexp"
	"time"
)

// Why a highlight was captured. The values are stable: they are stored and
// exported in bundle manifests.
const (
	ReasonOpen    = "open"
	ReasonSoldOut = "sold_out"
	ReasonClose   = "close"
	ReasonClip    = "clip"
	ReasonSurge   = "surge"
)

// Highlight states.
const (
	// HighlightCapturing: the moment is marked, the post-roll is still being
	// recorded.
	HighlightCapturing = "capturing"
	// HighlightReady: the MP4 is on disk.
	HighlightReady = "ready"
	// HighlightFailed: nothing of the moment was in the buffer (Error says why).
	HighlightFailed = "failed"
)

// Sentinel errors of highlight capture, the store and clip editing.
var (
	// ErrNoSession means no stream session has that id.
	ErrNoSession = errors.New("no such stream session")
	// ErrNoHighlight means no highlight has that id.
	ErrNoHighlight = errors.New("no such highlight")
	// ErrBadTrim means trim points outside the clip or in the wrong order.
	ErrBadTrim = errors.New("invalid trim")
	// ErrBadID means an id that cannot name a session or highlight (and so
	// never a file): wrong characters, path separators, dot segments.
	ErrBadID = errors.New("invalid id")
	// ErrNotBuffered means the moment is no longer (or not yet) in any buffer.
	ErrNotBuffered = errors.New("moment is not in the buffer")
	// ErrBadMP4 means a clip file could not be read as MP4.
	ErrBadMP4 = errors.New("unreadable MP4")
	// ErrInvalidConfig means a CaptureConfig or deps failed validation.
	ErrInvalidConfig = errors.New("invalid highlights config")
)

// Session is one publish session of a stream path: it starts when a
// publisher first appears and survives a publisher that drops and comes
// back while its buffer still holds data.
type Session struct {
	// ID is stable and readable: the path ('/' as '_'), a dash, and the UTC
	// start (20060102T150405Z).
	ID        string    `json:"id"`
	Path      string    `json:"path"`
	Channel   string    `json:"channel"`
	StartedAt time.Time `json:"started_at"`
	// EndedAt is zero while a publisher is on the path.
	EndedAt time.Time `json:"ended_at,omitzero"`
}

// SessionID names the session of path that started at start.
func SessionID(path string, start time.Time) string {
	b := []byte(path)
	for i, c := range b {
		if c == '/' {
			b[i] = '_'
		}
	}
	return string(b) + "-" + start.UTC().Format("20060102T150405Z")
}

var (
	sessionIDPattern   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,220}$`)
	highlightIDPattern = regexp.MustCompile(`^h[0-9a-f]{16}$`)
)

// CheckSessionID refuses ids that could not have come from SessionID, so
// no id taken from a URL or flag can walk out of the highlights directory.
func CheckSessionID(id string) error {
	if !sessionIDPattern.MatchString(id) || id == "." || id == ".." {
		return ErrBadID
	}
	return nil
}

// CheckHighlightID refuses anything but "h" and 16 hex digits.
func CheckHighlightID(id string) error {
	if !highlightIDPattern.MatchString(id) {
		return ErrBadID
	}
	return nil
}

// Moment is one drop moment a clip covers.
type Moment struct {
	Reason string    `json:"reason"`
	DropID string    `json:"drop_id,omitempty"`
	Label  string    `json:"label,omitempty"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
}

// Highlight is one captured clip and the moments it covers. Moments close
// enough that their windows overlap share one clip (the open and the
// sell-out seconds later are one clip, not two copies of the same
// seconds); Reason, DropID, Label, By and At are the first moment's.
type Highlight struct {
	ID        string `json:"id"`
	SessionID string `json:"session_id"`
	Channel   string `json:"channel"`
	Path      string `json:"path"`
	DropID    string `json:"drop_id,omitempty"`
	Reason    string `json:"reason"`
	Label     string `json:"label,omitempty"`
	By        string `json:"by,omitempty"`
	State     string `json:"state"`
	Error     string `json:"error,omitempty"`
	// At is the wall-clock moment; StreamTime the same moment on the
	// session's timeline.
	At         time.Time     `json:"at"`
	StreamTime time.Duration `json:"stream_time"`
	// Start is the clip's first frame (a keyframe) on the session timeline;
	// Duration the clip's length.
	Start    time.Duration `json:"start"`
	Duration time.Duration `json:"duration"`
	// Asked is the window that was asked for (pre + post).
	Asked time.Duration `json:"asked"`
	// File is the clip's name under the highlights directory:
	// "<session>/<id>.mp4".
	File   string `json:"file,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// TrimIn and TrimOut cut the clip on export, as offsets from its start;
	// both zero means the whole clip.
	TrimIn  time.Duration `json:"trim_in"`
	TrimOut time.Duration `json:"trim_out"`
	// CropX is where the vertical 9:16 window sits across the frame: 0
	// (left edge) to 1 (right edge); 0.5, the centre, unless the editor
	// moved it.
	CropX float64 `json:"crop_x"`
	// Twitch clip, when a ClipMaker made one.
	TwitchClipID  string    `json:"twitch_clip_id,omitempty"`
	TwitchClipURL string    `json:"twitch_clip_url,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	// Moments lists every moment the clip covers, oldest first; the first
	// is the highlight's own.
	Moments []Moment `json:"moments"`
}

// Trimmed reports whether the editor set trim points.
func (h Highlight) Trimmed() bool { return h.TrimIn != 0 || h.TrimOut != 0 }

// Span is the part of the clip an export carries.
func (h Highlight) Span() (in, out time.Duration) {
	if !h.Trimmed() {
		return 0, h.Duration
	}
	return h.TrimIn, h.TrimOut
}

// CueRecord is a CueAired event as the export needs it.
type CueRecord struct {
	Channel string    `json:"channel"`
	DropID  string    `json:"drop_id"`
	Stream  string    `json:"stream"`
	Code    uint32    `json:"code"`
	DelayMS int64     `json:"delay_ms"`
	SNRDB   float64   `json:"snr_db"`
	HeardAt time.Time `json:"heard_at"`
	At      time.Time `json:"at"`
}

// CaptureStore is where capture records sessions, highlights and aired
// cues; Store adds what the editor and export read.
type CaptureStore interface {
	// SaveSession inserts a session or updates its EndedAt.
	SaveSession(ctx context.Context, s Session) error
	// SaveHighlight inserts a highlight or replaces its capture fields
	// (state, times, file), keeping trim and Twitch clip fields.
	SaveHighlight(ctx context.Context, h Highlight) error
	// SetTwitchClip records the Twitch clip made for a highlight.
	SetTwitchClip(ctx context.Context, highlightID, clipID, url string) error
	// SaveCue records a CueAired event.
	SaveCue(ctx context.Context, c CueRecord) error
	// SaveStill records a drop's evidence still.
	SaveStill(ctx context.Context, s Still) error
}

// ClipMaker makes platform clips (Twitch) of a channel's live stream. Clip
// creation is asynchronous: CreateClip starts it, ClipURL reports the clip
// once the platform has it. chat/twitch can satisfy it with helix
// CreateClip and GetClips.
type ClipMaker interface {
	CreateClip(ctx context.Context, channel string) (clipID string, err error)
	// ClipURL returns found=false while the clip is not (yet) listed.
	ClipURL(ctx context.Context, clipID string) (url string, found bool, err error)
}
