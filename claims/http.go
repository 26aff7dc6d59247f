package claims

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
)

// MaxBodyBytes bounds every JSON body the API reads.
const MaxBodyBytes = 64 << 10

// Handler serves the JSON API under /api/.
type Handler struct {
	svc       *Service
	admin     Admin
	publicURL string
	log       *slog.Logger
	mux       *http.ServeMux
}

// NewHandler returns the API handler. publicURL is where viewers reach the
// service (for claim links), e.g. "http://localhost:8080".
func NewHandler(svc *Service, admin Admin, publicURL string, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{svc: svc, admin: admin, publicURL: strings.TrimRight(publicURL, "/"), log: log.With("component", "api"), mux: http.NewServeMux()}
	h.mux.HandleFunc("POST /api/drops", h.adminOnly(h.openDrop))
	h.mux.HandleFunc("GET /api/drops", h.adminOnly(h.listDrops))
	h.mux.HandleFunc("GET /api/drops/{id}", h.getDrop)
	h.mux.HandleFunc("POST /api/drops/{id}/close", h.adminOnly(h.closeDrop))
	h.mux.HandleFunc("POST /api/drops/{id}/extend", h.adminOnly(h.extendDrop))
	h.mux.HandleFunc("POST /api/drops/{id}/claims", h.claim)
	h.mux.HandleFunc("GET /api/drops/{id}/users/{user}", h.adminOnly(h.status))
	h.mux.HandleFunc("GET /api/drops/{id}/audit", h.audit)
	h.mux.HandleFunc("GET /api/drops/{id}/entries", h.adminOnly(h.entries))
	h.mux.HandleFunc("POST /api/redeem", h.adminOnly(h.redeem))
	h.mux.HandleFunc("GET /api/tokens/{token}/qr.png", h.tokenQR)
	h.mux.HandleFunc("GET /api/tokens/{token}/qr.svg", h.tokenQR)
	h.mux.HandleFunc("GET /api/stats", h.adminOnly(h.stats))
	h.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, Errorf(ENOTFOUND, "no such API route: %s %s", r.Method, r.URL.Path))
	})
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.admin.Allowed(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="microdrop"`)
			WriteError(w, Errorf(EUNAUTHORIZED, "this needs the admin token: Authorization: Bearer <token>"))
			return
		}
		// A cookie-authenticated call from a browser must come from our own pages.
		if h.admin.CookieAuth(r) && r.Method != http.MethodGet && !SameOrigin(r) {
			WriteError(w, Errorf(EFORBIDDEN, "cross-site request refused"))
			return
		}
		next(w, r)
	}
}

// StatusOf maps a domain error code to an HTTP status.
func StatusOf(code string) int {
	switch code {
	case EINVALID:
		return http.StatusBadRequest
	case EUNAUTHORIZED:
		return http.StatusUnauthorized
	case EFORBIDDEN:
		return http.StatusForbidden
	case ENOTFOUND:
		return http.StatusNotFound
	case ECONFLICT:
		return http.StatusConflict
	case ESOLDOUT:
		return http.StatusGone
	case ERATELIMIT:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON every error answers with.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
}

// WriteError writes err as {"code","message"} with its status. Internal
// error text is never sent.
func WriteError(w http.ResponseWriter, err error) {
	code := ErrorCode(err)
	status := StatusOf(code)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		code, status = EINTERNAL, http.StatusServiceUnavailable
	}
	if ErrorReason(err) == ReasonUnavailable {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, ErrorBody{Code: code, Message: ErrorMessage(err), Reason: ErrorReason(err)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// DecodeJSON reads one JSON object of at most MaxBodyBytes into v, refusing
// unknown fields, trailing data and non-JSON content types.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return Errorf(EINVALID, "send the body as application/json")
		}
	}
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	return decodeBody(body, v)
}

func decodeBody(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return Errorf(EINVALID, "body is larger than %d bytes", MaxBodyBytes)
		case errors.Is(err, io.EOF):
			return Errorf(EINVALID, "body is empty; send a JSON object")
		case errors.As(err, &se):
			return Errorf(EINVALID, "body is not valid JSON (at byte %d)", se.Offset)
		case errors.As(err, &te):
			return Errorf(EINVALID, "field %q must be %s", te.Field, te.Type.Kind())
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return Errorf(EINVALID, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			msg := err.Error()
			if len(msg) > 200 || strings.Contains(msg, "json: ") && !strings.Contains(msg, "duration") {
				msg = "body does not match the expected JSON"
			}
			return Errorf(EINVALID, "%s", msg)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf(EINVALID, "body has data after the JSON object")
	}
	return nil
}

// DropResponse is a drop as the API returns it.
type DropResponse struct {
	Drop     *microdrop.DropView `json:"drop"`
	ClaimURL string              `json:"claim_url"`
}

// ClaimURL is the link the overlay's QR code carries.
func (h *Handler) ClaimURL(d *Drop) string { return ClaimURL(h.publicURL, d) }

// ClaimURL is the claim page link for d under base.
func ClaimURL(base string, d *Drop) string {
	u := base + "/c/" + d.ID
	if d.ClaimCode != "" {
		u += "?code=" + url.QueryEscape(d.ClaimCode)
	}
	return u
}

func (h *Handler) dropResponse(d *Drop) DropResponse {
	return DropResponse{Drop: d.View(), ClaimURL: h.ClaimURL(d)}
}

func (h *Handler) openDrop(w http.ResponseWriter, r *http.Request) {
	var req OpenRequest
	if err := DecodeJSON(w, r, &req); err != nil {
		WriteError(w, err)
		return
	}
	req.By = "api"
	d, err := h.svc.OpenDrop(r.Context(), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, h.dropResponse(d))
}

func (h *Handler) listDrops(w http.ResponseWriter, r *http.Request) {
	ds, err := h.svc.Recent(r.Context(), r.URL.Query().Get("channel"), 50)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]DropResponse, 0, len(ds))
	for _, d := range ds {
		out = append(out, h.dropResponse(d))
	}
	writeJSON(w, http.StatusOK, map[string]any{"drops": out})
}

func (h *Handler) getDrop(w http.ResponseWriter, r *http.Request) {
	d, err := h.svc.Drop(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h.dropResponse(d))
}

func (h *Handler) closeDrop(w http.ResponseWriter, r *http.Request) {
	if err := emptyOrObject(w, r); err != nil {
		WriteError(w, err)
		return
	}
	d, err := h.svc.CloseDrop(r.Context(), r.PathValue("id"), "api")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h.dropResponse(d))
}

// emptyOrObject accepts no body or "{}" for actions that take no input.
func emptyOrObject(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return Errorf(EINVALID, "body is larger than %d bytes", MaxBodyBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var v struct{}
	return decodeBody(bytes.NewReader(body), &v)
}

// ExtendRequest is the body of POST /api/drops/{id}/extend.
type ExtendRequest struct {
	By Duration `json:"by"`
}

func (h *Handler) extendDrop(w http.ResponseWriter, r *http.Request) {
	var req ExtendRequest
	if err := DecodeJSON(w, r, &req); err != nil {
		WriteError(w, err)
		return
	}
	d, err := h.svc.ExtendDrop(r.Context(), r.PathValue("id"), time.Duration(req.By), "api")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h.dropResponse(d))
}

// ClaimBody is the body of POST /api/drops/{id}/claims. Subscriber and
// account age are trusted only from an admin caller (a chat bridge); anyone
// else claims as a plain viewer.
type ClaimBody struct {
	UserID         string    `json:"user_id"`
	Login          string    `json:"login"`
	Code           string    `json:"code"`
	Subscriber     bool      `json:"subscriber"`
	AccountCreated time.Time `json:"account_created,omitzero"`
}

func (h *Handler) claim(w http.ResponseWriter, r *http.Request) {
	var b ClaimBody
	if err := DecodeJSON(w, r, &b); err != nil {
		WriteError(w, err)
		return
	}
	v := Viewer{UserID: b.UserID, Login: b.Login}
	if h.admin.Allowed(r) {
		v.Subscriber, v.AccountCreated = b.Subscriber, b.AccountCreated
	}
	res, err := h.svc.Claim(r.Context(), ClaimRequest{DropID: r.PathValue("id"), Viewer: v, Code: b.Code})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	ps, err := h.svc.Status(r.Context(), r.PathValue("id"), r.PathValue("user"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pickups": ps})
}

func (h *Handler) audit(w http.ResponseWriter, r *http.Request) {
	rep, err := h.svc.Audit(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// EntryView is a recorded entry as the admin API lists it, token included.
type EntryView struct {
	Entry
	Token string `json:"token,omitempty"`
}

func (h *Handler) entries(w http.ResponseWriter, r *http.Request) {
	d, err := h.svc.Drop(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	es, err := h.svc.ledger.Entries(r.Context(), d.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]EntryView, len(es))
	for i, e := range es {
		out[i] = EntryView{Entry: e, Token: e.Token}
	}
	writeJSON(w, http.StatusOK, map[string]any{"drop": d.View(), "entries": out})
}

// RedeemBody is the body of POST /api/redeem.
type RedeemBody struct {
	Token string `json:"token"`
}

func (h *Handler) redeem(w http.ResponseWriter, r *http.Request) {
	var b RedeemBody
	if err := DecodeJSON(w, r, &b); err != nil {
		WriteError(w, err)
		return
	}
	red, err := h.svc.Redeem(r.Context(), b.Token)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, red)
}

func (h *Handler) tokenQR(w http.ResponseWriter, r *http.Request) {
	// Only the shape is checked: checking the signature here would hand
	// anyone an oracle for guessing tokens.
	tok, _, err := ParseToken(r.PathValue("token"))
	if err != nil {
		WriteError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "private, max-age=3600")
	if strings.HasSuffix(r.URL.Path, ".svg") {
		svg, err := QRSVG(tok)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "image/svg+xml")
		_, _ = io.WriteString(w, svg)
		return
	}
	png, err := QRPNG(tok, 320)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	_, _ = w.Write(png)
}

func (h *Handler) stats(w http.ResponseWriter, _ *http.Request) {
	m := h.svc.Metrics()
	writeJSON(w, http.StatusOK, map[string]any{"outcomes": m.Outcomes(), "rejections": m.Rejections()})
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if ErrorCode(err) == EINTERNAL && !errors.Is(err, context.Canceled) {
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	WriteError(w, err)
}

// String renders an error body for logs and tests.
func (b ErrorBody) String() string { return fmt.Sprintf("%s: %s", b.Code, b.Message) }
