package claims

import (
	"context"
	"net/http"
	"time"

	"github.com/microdrop/microdrop"
)

// Hold routes. Until viewer sessions land, the viewer is vouched for by the
// admin bridge naming user_id (as chat bridges do for claims); a hold is
// shown and changed only for its owner, and to anyone else it does not
// exist.
func (h *Handler) holdRoutes() {
	h.mux.HandleFunc("GET /api/holds/{id}", h.adminOnly(h.getHold))
	h.mux.HandleFunc("POST /api/holds/{id}/pay", h.adminOnly(h.payHold))
	h.mux.HandleFunc("POST /api/holds/{id}/release", h.adminOnly(h.releaseHold))
	h.mux.HandleFunc("PUT /api/holds/{id}/address", h.adminOnly(h.holdAddress))
	h.mux.HandleFunc("POST /api/wallets/{user}/topup", h.adminOnly(h.topUp))
	h.mux.HandleFunc("GET /api/wallets/{user}", h.adminOnly(h.wallet))
	h.mux.HandleFunc("GET /api/money/audit", h.adminOnly(h.moneyAudit))
	h.mux.HandleFunc("GET /api/drops/{id}/holds", h.adminOnly(h.holdSummary))
}

// Checkout is a card checkout for a hold: where to send the viewer.
type Checkout struct {
	SessionID string    `json:"session_id"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CardCheckout opens card checkouts (claims/stripe has one).
type CardCheckout interface {
	Checkout(ctx context.Context, holdID, userID string) (Checkout, error)
}

// WithCards switches POST /api/holds/{id}/pay {"method":"card"} on.
func (h *Handler) WithCards(c CardCheckout) *Handler {
	h.cards = c
	return h
}

// HoldBody is the body of the hold actions.
type HoldBody struct {
	UserID string `json:"user_id"`
	Method string `json:"method,omitempty"`
}

func (h *Handler) holdStatus(w http.ResponseWriter, r *http.Request, hold Hold, status int) {
	st, err := h.svc.HoldStatus(r.Context(), hold)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, status, st)
}

func (h *Handler) getHold(w http.ResponseWriter, r *http.Request) {
	hold, err := h.svc.HoldFor(r.Context(), r.PathValue("id"), r.URL.Query().Get("user_id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.holdStatus(w, r, hold, http.StatusOK)
}

func (h *Handler) payHold(w http.ResponseWriter, r *http.Request) {
	var b HoldBody
	if err := microdrop.DecodeJSON(w, r, &b); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	switch b.Method {
	case PayWallet:
		hold, err := h.svc.PayFromWallet(r.Context(), r.PathValue("id"), b.UserID)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		h.holdStatus(w, r, hold, http.StatusOK)
	case PayCard:
		if h.cards == nil {
			microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "card payments are off on this server"))
			return
		}
		co, err := h.cards.Checkout(r.Context(), r.PathValue("id"), b.UserID)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		microdrop.WriteJSON(w, http.StatusOK, map[string]any{"checkout": co})
	default:
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, `method must be "wallet" or "card"`))
	}
}

func (h *Handler) releaseHold(w http.ResponseWriter, r *http.Request) {
	var b HoldBody
	if err := microdrop.DecodeJSON(w, r, &b); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	hold, err := h.svc.ReleaseHold(r.Context(), r.PathValue("id"), b.UserID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.holdStatus(w, r, hold, http.StatusOK)
}

// TopUpBody is an admin top-up of a viewer's wallet. Key makes a retried
// request a no-op.
type TopUpBody struct {
	Key         string `json:"key"`
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
}

func (h *Handler) topUp(w http.ResponseWriter, r *http.Request) {
	var b TopUpBody
	if err := microdrop.DecodeJSON(w, r, &b); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	user := r.PathValue("user")
	applied, err := h.svc.TopUp(r.Context(), b.Key, user, "admin", b.AmountMinor, b.Currency, time.Now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	bal, err := h.svc.Wallet(r.Context(), user, b.Currency)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, map[string]any{"applied": applied, "balance_minor": bal, "currency": b.Currency})
}

func (h *Handler) wallet(w http.ResponseWriter, r *http.Request) {
	cur := r.URL.Query().Get("currency")
	bal, err := h.svc.Wallet(r.Context(), r.PathValue("user"), cur)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, map[string]any{"balance_minor": bal, "currency": cur})
}

func (h *Handler) moneyAudit(w http.ResponseWriter, r *http.Request) {
	rep, err := h.svc.AuditMoney(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, rep)
}

// ReceiptKeysHandler serves the public receipt keys, for
// /.well-known/microdrop-receipt-keys.
func (h *Handler) ReceiptKeysHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		microdrop.WriteJSON(w, http.StatusOK, h.svc.ReceiptKeys())
	})
}

func (h *Handler) holdSummary(w http.ResponseWriter, r *http.Request) {
	sum, err := h.svc.HoldSummary(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	microdrop.WriteJSON(w, http.StatusOK, sum)
}

// AddressBook keeps holders' shipping addresses for fulfilment webhooks
// (claims/webhook). It never hands one back to the API.
type AddressBook interface {
	SetShippingAddress(ctx context.Context, holdID string, a ShippingAddress) error
}

// WithAddresses lets holders give a shipping address (PUT
// /api/holds/{id}/address); without it the route answers 404.
func (h *Handler) WithAddresses(a AddressBook) *Handler {
	h.addresses = a
	return h
}

// HoldAddressBody is a holder's shipping address for their hold; the
// admin token vouches for user_id, whose hold it must be.
type HoldAddressBody struct {
	UserID  string           `json:"user_id"`
	Address *ShippingAddress `json:"address"`
}

// Shippable reports whether a shipping address may be given for h: it
// awaits payment, or is paid and not picked up.
func (h Hold) Shippable() bool {
	return h.State == HoldAwaiting || h.State == HoldPaid && h.Redeemed.IsZero()
}

func (h *Handler) holdAddress(w http.ResponseWriter, r *http.Request) {
	if h.addresses == nil {
		microdrop.WriteError(w, microdrop.Errorf(microdrop.ENOTFOUND, "this server ships nothing: it has no fulfilment webhooks"))
		return
	}
	var b HoldAddressBody
	if err := microdrop.DecodeJSON(w, r, &b); err != nil {
		microdrop.WriteError(w, err)
		return
	}
	if b.Address == nil {
		microdrop.WriteError(w, microdrop.Errorf(microdrop.EINVALID, "address is required: line1, city, postal_code and country at least"))
		return
	}
	hold, err := h.svc.HoldFor(r.Context(), r.PathValue("id"), b.UserID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !hold.Shippable() {
		microdrop.WriteError(w, microdrop.Errorf(microdrop.ECONFLICT, "this unit can no longer be shipped: it is %s", hold.State))
		return
	}
	if err := h.addresses.SetShippingAddress(r.Context(), hold.ID, *b.Address); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
