package claims

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
)

// adminCheck is the admin check the API needs (microdrop.Admin has it).
type adminCheck interface{ Check(r *http.Request) error }

// Handler serves the JSON API under /api/.
type Handler struct {
	svc       *Service
	admin     adminCheck
	publicURL string
	log       *slog.Logger
	mux       *http.ServeMux
	identity  Identity     // who web claims are for (identity.go)
	cards     CardCheckout // nil: card payments off
	payouts   *Payouts     // nil: creator money routes off
	addresses AddressBook  // nil: no shipping addresses
}

// NewHandler returns the API handler. publicURL is where viewers reach the
// service (for claim links), e.g. "http://localhost:8080".
func NewHandler(svc *Service, admin adminCheck, publicURL string, log *slog.Logger) *Handler {
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
	h.holdRoutes()
	h.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		microdrop.WriteError(w, microdrop.Errorf(microdrop.ENOTFOUND, "no such API route: %s %s", r.Method, r.URL.Path))
	})
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h.admin.Check(r); err != nil {
			if microdrop.ErrorCode(err) == microdrop.EUNAUTHORIZED {
				w.Header().Set("WWW-Authenticate", `Bearer realm="microdrop"`)
			}
			microdrop.WriteError(w, err)
			return
		}
		next(w, r)
	}
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

// dropResponse is d for the API. The claim code gates claims to people who
// watch the stream, so it never appears in the drop's fields, and its claim
// link carries it only for the admin (who puts the link on stream).
func (h *Handler) dropResponse(admin bool, d *Drop) DropResponse {
	url := h.publicURL + "/c/" + d.ID
	if admin {
		url = h.ClaimURL(d)
	}
	return DropResponse{Drop: apiView(d), ClaimURL: url}
}

func apiView(d *Drop) *microdrop.DropView {
	v := d.View()
	v.ClaimCode = ""
	if d.Listening() {
		v.CueCode = 0 // step 1's code: it must be heard, not read
	}
	return v
}

func (h *Handler) openDrop(w http.ResponseWriter, r *http.Request) {
	var req OpenRequest
	if err := microdrop.DecodeJSON(w, r, &req); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	req.By = "api"
	d, err := h.svc.OpenDrop(r.Context(), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusCreated, h.dropResponse(h.admin.Check(r) == nil, d))
}

func (h *Handler) listDrops(w http.ResponseWriter, r *http.Request) {
	ds, err := h.svc.Recent(r.Context(), r.URL.Query().Get("channel"), 50)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]DropResponse, 0, len(ds))
	admin := h.admin.Check(r) == nil
	for _, d := range ds {
		out = append(out, h.dropResponse(admin, d))
	}
	microdrop.WriteJSON(w, http.StatusOK, map[string]any{"drops": out})
}

func (h *Handler) getDrop(w http.ResponseWriter, r *http.Request) {
	d, err := h.svc.Drop(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, h.dropResponse(h.admin.Check(r) == nil, d))
}

func (h *Handler) closeDrop(w http.ResponseWriter, r *http.Request) {
	if err := emptyOrObject(w, r); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	d, err := h.svc.CloseDrop(r.Context(), r.PathValue("id"), "api")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, h.dropResponse(h.admin.Check(r) == nil, d))
}

// emptyOrObject accepts no body or "{}" for actions that take no input.
func emptyOrObject(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, microdrop.MaxBodyBytes))
	if err != nil {
		return microdrop.Errorf(microdrop.EINVALID, "body is larger than %d bytes", microdrop.MaxBodyBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var v struct{}
	return microdrop.DecodeBody(bytes.NewReader(body), &v)
}

// ExtendRequest is the body of POST /api/drops/{id}/extend.
type ExtendRequest struct {
	By Duration `json:"by"`
}

func (h *Handler) extendDrop(w http.ResponseWriter, r *http.Request) {
	var req ExtendRequest
	if err := microdrop.DecodeJSON(w, r, &req); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	d, err := h.svc.ExtendDrop(r.Context(), r.PathValue("id"), time.Duration(req.By), "api")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, h.dropResponse(h.admin.Check(r) == nil, d))
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
	if err := microdrop.DecodeJSON(w, r, &b); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	v, err := h.claimant(r, b)
	if err != nil {
		if microdrop.ErrorCode(err) == microdrop.EUNAUTHORIZED {
			w.Header().Set("WWW-Authenticate", `Bearer realm="microdrop"`)
		}
		microdrop.WriteError(w, err)
		return
	}
	res, err := h.svc.Claim(r.Context(), ClaimRequest{DropID: r.PathValue("id"), Viewer: v, Code: b.Code, RemoteIP: RemoteIP(r)})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, res)
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	ps, err := h.svc.Status(r.Context(), r.PathValue("id"), r.PathValue("user"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, map[string]any{"pickups": ps})
}

func (h *Handler) audit(w http.ResponseWriter, r *http.Request) {
	rep, err := h.svc.Audit(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, rep)
}

// EntryView is a recorded entry as the admin API lists it, token included.
type EntryView struct {
	Entry
	Token string `json:"token,omitempty"`
}

// entries: GET /api/drops/{id}/entries?offset=&limit= pages through the
// drop's entries (at most MaxPageSize a page; next_offset while more remain).
func (h *Handler) entries(w http.ResponseWriter, r *http.Request) {
	d, err := h.svc.Drop(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	offset, limit, err := pageOf(r)
	if err != nil {
		microdrop.WriteError(w, err)
		return
	}
	es, err := h.svc.ledger.Entries(r.Context(), d.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	lo, hi, next := window(len(es), offset, limit)
	out := make([]EntryView, 0, hi-lo)
	for _, e := range es[lo:hi] {
		out = append(out, EntryView{Entry: e, Token: e.Token})
	}
	page := map[string]any{"drop": apiView(d), "entries": out, "total": len(es)}
	if next >= 0 {
		page["next_offset"] = next
	}
	microdrop.WriteJSON(w, http.StatusOK, page)
}

// RedeemBody is the body of POST /api/redeem.
type RedeemBody struct {
	Token string `json:"token,omitempty"`
	// Receipt redeems a paid unit of a drop that takes payment.
	Receipt string `json:"receipt,omitempty"`
}

func (h *Handler) redeem(w http.ResponseWriter, r *http.Request) {
	var b RedeemBody
	if err := microdrop.DecodeJSON(w, r, &b); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	if b.Receipt != "" {
		rec, err := h.svc.RedeemReceipt(r.Context(), b.Receipt)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		microdrop.WriteJSON(w, http.StatusOK, map[string]any{"receipt": rec})
		return
	}
	red, err := h.svc.Redeem(r.Context(), b.Token)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, red)
}

func (h *Handler) tokenQR(w http.ResponseWriter, r *http.Request) {
	// Only the shape is checked: checking the signature here would hand
	// anyone an oracle for guessing tokens.
	tok, _, err := ParseToken(r.PathValue("token"))
	if err != nil {
		microdrop.WriteError(w, err)
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
	microdrop.WriteJSON(w, http.StatusOK, map[string]any{"outcomes": m.Outcomes(), "rejections": m.Rejections()})
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if microdrop.ErrorCode(err) == microdrop.EINTERNAL && !errors.Is(err, context.Canceled) {
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	microdrop.WriteError(w, err)
}

// String renders an error body for logs and tests.
