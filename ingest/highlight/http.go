package highlight

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/templates"
)

// Admin is the admin check the editor needs (microdrop.Admin satisfies it).
type Admin interface {
	Allowed(r *http.Request) bool
	Check(r *http.Request) error
	CheckToken(tok string) bool
	SetCookie(w http.ResponseWriter)
	CSRFToken(r *http.Request) string
	CheckCSRF(r *http.Request, tok string) bool
}

// HandlerDeps is what the editor's HTTP handler needs.
type HandlerDeps struct {
	Store    Store
	Exporter *Exporter
	Admin    Admin
	// Dir is the highlights directory.
	Dir    string
	Logger *slog.Logger
	Now    func() time.Time
}

const maxForm = 64 << 10

// NewHandler serves the editor:
//
//	GET  /editor                           sessions
//	POST /editor/login                     admin token → session cookie
//	GET  /editor/sessions/{id}             a session's highlights: playback, trim, selection
//	GET  /editor/clips/{id}.mp4            a clip, with Range support
//	POST /editor/highlights/{id}/trim      in/out (seconds) or clear=1
//	POST /editor/sessions/{id}/export      the bundle (zip) of the ticked clips
//	GET  /editor/api/sessions/{id}         the session's highlights as JSON
func NewHandler(d HandlerDeps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	h := &handler{d: d, log: d.Logger.With("component", "editor")}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /editor", h.sessions)
	mux.HandleFunc("POST /editor/login", h.login)
	mux.HandleFunc("GET /editor/sessions/{id}", h.session)
	mux.HandleFunc("GET /editor/clips/{file}", h.clip)
	mux.HandleFunc("POST /editor/highlights/{id}/trim", h.form(h.trim))
	mux.HandleFunc("POST /editor/sessions/{id}/export", h.form(h.export))
	mux.HandleFunc("GET /editor/api/sessions/{id}", h.apiSession)
	return mux
}

type handler struct {
	d   HandlerDeps
	log *slog.Logger
}

func render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = c.Render(r.Context(), w)
}

// status maps errors once, at this edge; internal text never leaves.
func (h *handler) status(err error) (int, string) {
	switch {
	case errors.Is(err, ErrBadID), errors.Is(err, ErrBadSelection), errors.Is(err, ErrBadTrim):
		var msg string
		if errors.Is(err, ErrBadTrim) || errors.Is(err, ErrBadSelection) {
			msg = err.Error()
		} else {
			msg = "that is not a valid id"
		}
		return http.StatusBadRequest, msg
	case isNotFound(err):
		return http.StatusNotFound, "no such session or highlight"
	case errors.Is(err, ErrNothingToExport):
		return http.StatusConflict, "nothing to export: no ready clip and no drop in this session"
	}
	h.log.Error("editor", "err", err)
	return http.StatusInternalServerError, "something went wrong; the log has details"
}

func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !microdrop.SameOrigin(r) {
		http.Error(w, "sign in from this site's own login form", http.StatusForbidden)
		return
	}
	if !h.d.Admin.CheckToken(strings.TrimSpace(r.PostFormValue("token"))) {
		h.log.Warn("editor login refused", "remote", r.RemoteAddr)
		render(w, r, http.StatusUnauthorized, templates.EditorPage(templates.EditorView{Error: "that is not the admin token"}))
		return
	}
	h.d.Admin.SetCookie(w)
	http.Redirect(w, r, "/editor", http.StatusSeeOther)
}

func (h *handler) sessions(w http.ResponseWriter, r *http.Request) {
	if !h.d.Admin.Allowed(r) {
		render(w, r, http.StatusUnauthorized, templates.EditorPage(templates.EditorView{}))
		return
	}
	ss, err := h.d.Store.Sessions(r.Context())
	if err != nil {
		code, msg := h.status(err)
		http.Error(w, msg, code)
		return
	}
	v := templates.EditorView{LoggedIn: true, CSRF: h.d.Admin.CSRFToken(r)}
	for _, s := range ss {
		v.Sessions = append(v.Sessions, sessionView(s))
	}
	render(w, r, http.StatusOK, templates.EditorPage(v))
}

func sessionView(s Session) templates.EditorSession {
	es := templates.EditorSession{ID: s.ID, Path: s.Path, Channel: s.Channel, Started: s.StartedAt.UTC().Format(time.RFC3339),
		URL: "/editor/sessions/" + s.ID}
	if !s.EndedAt.IsZero() {
		es.Ended = s.EndedAt.UTC().Format(time.RFC3339)
	}
	return es
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) }

func (h *handler) sessionPage(ctx context.Context, id string) (templates.EditorView, error) {
	s, err := h.d.Store.Session(ctx, id)
	if err != nil {
		return templates.EditorView{}, err
	}
	hs, err := h.d.Store.Highlights(ctx, s.ID)
	if err != nil {
		return templates.EditorView{}, err
	}
	sv := sessionView(s)
	v := templates.EditorView{LoggedIn: true, Session: &sv}
	for _, x := range hs {
		c := templates.EditorClip{ID: x.ID, Reason: x.Reason, Label: x.Label, DropID: x.DropID,
			At: x.At.UTC().Format(time.RFC3339), State: x.State, Error: x.Error, Ready: x.State == HighlightReady,
			Duration: secs(x.Duration), VideoURL: "/editor/clips/" + x.ID + ".mp4",
			TrimURL: "/editor/highlights/" + x.ID + "/trim", TwitchURL: x.TwitchClipURL, Trimmed: x.Trimmed()}
		for _, m := range x.Moments {
			c.Moments = append(c.Moments, templates.ClipMoment{Reason: m.Reason, Label: m.Label})
		}
		in, out := x.Span()
		c.In, c.Out = secs(in), secs(out)
		v.Clips = append(v.Clips, c)
	}
	return v, nil
}

func (h *handler) session(w http.ResponseWriter, r *http.Request) {
	if !h.d.Admin.Allowed(r) {
		render(w, r, http.StatusUnauthorized, templates.EditorPage(templates.EditorView{}))
		return
	}
	v, err := h.sessionPage(r.Context(), r.PathValue("id"))
	if err != nil {
		code, msg := h.status(err)
		http.Error(w, msg, code)
		return
	}
	v.CSRF = h.d.Admin.CSRFToken(r)
	v.Notice = r.URL.Query().Get("notice")
	if len(v.Notice) > 200 {
		v.Notice = ""
	}
	render(w, r, http.StatusOK, templates.EditorPage(v))
}

// clip serves an MP4 with Range support (http.ServeContent), named only
// from a checked highlight id.
func (h *handler) clip(w http.ResponseWriter, r *http.Request) {
	if !h.d.Admin.Allowed(r) {
		http.Error(w, "sign in at /editor first", http.StatusUnauthorized)
		return
	}
	id, ok := strings.CutSuffix(r.PathValue("file"), ".mp4")
	if !ok {
		http.Error(w, "that is not a valid id", http.StatusBadRequest)
		return
	}
	x, err := h.d.Store.Highlight(r.Context(), id)
	if err == nil && x.State != HighlightReady {
		err = fmt.Errorf("%w: %s is %s", ErrNoHighlight, id, x.State)
	}
	if err != nil {
		code, msg := h.status(err)
		http.Error(w, msg, code)
		return
	}
	if err := CheckSessionID(x.SessionID); err != nil {
		http.Error(w, "that is not a valid id", http.StatusBadRequest)
		return
	}
	f, err := os.Open(filepath.Join(h.d.Dir, x.SessionID, x.ID+".mp4"))
	if err != nil {
		code, msg := h.status(fmt.Errorf("%w: file: %v", ErrNoHighlight, err))
		http.Error(w, msg, code)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "video/mp4")
	w.Header().Set("Cache-Control", "private, max-age=3600")
	http.ServeContent(w, r, x.ID+".mp4", x.CreatedAt, f)
}

// form checks the admin credential and, for the cookie, origin and CSRF
// token, before anything changes.
func (h *handler) form(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "the form could not be read (too large or malformed)", http.StatusBadRequest)
			return
		}
		err := h.d.Admin.Check(r)
		if microdrop.ErrorCode(err) == microdrop.EUNAUTHORIZED {
			http.Error(w, "sign in at /editor first", http.StatusUnauthorized)
			return
		}
		if err != nil {
			http.Error(w, microdrop.ErrorMessage(err), http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

func parseSecs(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || f > 24*3600 {
		return 0, fmt.Errorf("%w: %q is not a number of seconds", ErrBadTrim, s)
	}
	return time.Duration(f * float64(time.Second)).Round(time.Millisecond), nil
}

func (h *handler) trim(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var in, out time.Duration
	var err error
	if r.PostFormValue("clear") == "" {
		in, err = parseSecs(r.PostFormValue("in"))
		if err == nil {
			out, err = parseSecs(r.PostFormValue("out"))
		}
	}
	var x Highlight
	if err == nil {
		x, err = h.d.Store.SetTrim(r.Context(), id, in, out)
	}
	if err != nil {
		code, msg := h.status(err)
		if wantsJSON(r) || x.SessionID == "" {
			http.Error(w, msg, code)
			return
		}
		v, perr := h.sessionPage(r.Context(), x.SessionID)
		if perr != nil {
			http.Error(w, msg, code)
			return
		}
		v.CSRF = h.d.Admin.CSRFToken(r)
		v.Error = msg
		render(w, r, code, templates.EditorPage(v))
		return
	}
	http.Redirect(w, r, "/editor/sessions/"+x.SessionID+"?notice="+url.QueryEscape("trim saved"), http.StatusSeeOther)
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func (h *handler) export(w http.ResponseWriter, r *http.Request) {
	if h.d.Exporter == nil {
		http.Error(w, "export is not configured", http.StatusServiceUnavailable)
		return
	}
	id := r.PathValue("id")
	p, err := h.d.Exporter.Plan(r.Context(), id, r.PostForm["h"])
	if err != nil {
		code, msg := h.status(err)
		http.Error(w, msg, code)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="microdrop-`+p.Session.ID+`.zip"`)
	if _, err := h.d.Exporter.Write(r.Context(), p, w, nil); err != nil {
		// Headers are gone; the truncated zip fails to open, and the log says why.
		h.log.Error("export", "session", id, "err", err)
	}
}

func (h *handler) apiSession(w http.ResponseWriter, r *http.Request) {
	if !h.d.Admin.Allowed(r) {
		http.Error(w, "sign in at /editor first", http.StatusUnauthorized)
		return
	}
	s, err := h.d.Store.Session(r.Context(), r.PathValue("id"))
	var hs []Highlight
	if err == nil {
		hs, err = h.d.Store.Highlights(r.Context(), s.ID)
	}
	if err != nil {
		code, msg := h.status(err)
		http.Error(w, msg, code)
		return
	}
	writeJSON(w, map[string]any{"session": s, "highlights": hs})
}
