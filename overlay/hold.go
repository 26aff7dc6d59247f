package overlay

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/templates"
)

// ownHold is the viewer's hold on d that the claim page is about: the one
// awaiting payment, else the paid one, else the last that ended. Looked up
// by the session's viewer id only.
func (s *Server) ownHold(ctx context.Context, d *claims.Drop, userID string) (claims.Hold, bool) {
	books := s.claims.Books()
	if books == nil || !d.Priced() {
		return claims.Hold{}, false
	}
	hs, err := books.Holds(ctx, claims.HoldFilter{DropID: d.ID, UserID: userID})
	if err != nil {
		s.log.Warn("claim page: list holds", "drop", d.ID, "err", err)
		return claims.Hold{}, false
	}
	var best claims.Hold
	rank := func(h claims.Hold) int {
		switch h.State {
		case claims.HoldAwaiting:
			return 3
		case claims.HoldPaid:
			return 2
		}
		return 1
	}
	for _, h := range hs {
		if best.ID == "" || rank(h) > rank(best) || rank(h) == rank(best) && h.CreatedAt.After(best.CreatedAt) {
			best = h
		}
	}
	return best, best.ID != ""
}

// unitsInPlay: some unit of d still awaits payment, so one may yet pass
// to a viewer in line.
func (s *Server) unitsInPlay(ctx context.Context, d *claims.Drop) bool {
	books := s.claims.Books()
	if books == nil {
		return false
	}
	if st := d.StateAt(s.now()); st == claims.Open || st == claims.Grace {
		return true
	}
	hs, err := books.Holds(ctx, claims.HoldFilter{DropID: d.ID, State: claims.HoldAwaiting})
	return err == nil && len(hs) > 0
}

func holdPath(dropID, holdID, action string) string {
	return "/c/" + url.PathEscape(dropID) + "/holds/" + url.PathEscape(holdID) + "/" + action
}

// holdView is a hold as its owner's claim page shows it.
func (s *Server) holdView(ctx context.Context, d *claims.Drop, h claims.Hold, cardPending bool) (*templates.ClaimHold, error) {
	st, err := s.claims.HoldStatus(ctx, h)
	if err != nil {
		return nil, err
	}
	v := &templates.ClaimHold{ID: h.ID, State: string(h.State), Amount: formatPrice(h.AmountMinor, h.Currency),
		PayBy: h.Deadline.Local().Format("15:04:05"), LeftMS: strconv.FormatInt(st.SecondsMS, 10),
		PayURL: holdPath(d.ID, h.ID, "pay"), ReleaseURL: holdPath(d.ID, h.ID, "release")}
	switch h.State {
	case claims.HoldAwaiting:
		v.Message = "You won one: pay within " + minutes(st.SecondsMS) + " on this page, or it goes to the next viewer in line."
		if h.PassedFrom != "" {
			v.Message = "A unit came back into play and it is yours: pay within " + minutes(st.SecondsMS) + " on this page, or it goes to the next viewer in line."
		}
		v.CardPending = cardPending
		if d.Accepts(claims.PayWallet) {
			v.Wallet = true
			bal, err := s.claims.Wallet(ctx, h.UserID, h.Currency)
			if err != nil {
				return nil, err
			}
			v.Balance = fmt.Sprintf("%d.%02d %s", bal/100, bal%100, h.Currency)
		}
		v.Card = d.Accepts(claims.PayCard) && s.cards != nil
	case claims.HoldPaid:
		v.Message = "Paid. Your receipt is your pickup proof."
		if !h.Redeemed.IsZero() {
			v.Message = "Paid, and picked up."
		}
		if st.Receipt != "" {
			v.Receipt = st.Receipt
			v.ReceiptQR = holdPath(d.ID, h.ID, "receipt.svg")
			v.VerifyURL = "/receipt?r=" + url.QueryEscape(st.Receipt)
		}
	case claims.HoldExpired:
		v.Message = "The time to pay ran out: the unit passed on to the next viewer in line."
	case claims.HoldReleased:
		v.Message = "You released this unit: it passed on to the next viewer in line."
	}
	if (h.State == claims.HoldExpired || h.State == claims.HoldReleased) && h.PassedTo == "" {
		v.Message = strings.TrimSuffix(v.Message, ": the unit passed on to the next viewer in line.") + ": nobody was waiting, so the unit stays unsold."
	}
	if s.webhooks != nil && h.Shippable() {
		v.AddressURL = holdPath(d.ID, h.ID, "address")
		a, err := s.webhooks.ShippingAddress(ctx, h.ID)
		if err != nil {
			return nil, err
		}
		if a != nil {
			v.ShipTo = &templates.ShipTo{Recipient: a.Recipient, Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, Region: a.Region, Country: a.Country}
		}
	}
	return v, nil
}

// holdAddress saves the shipping address of the viewer's own hold. It goes
// to fulfilment webhook endpoints only; nobody else sees it.
func (s *Server) holdAddress(w http.ResponseWriter, r *http.Request) {
	v, h, _, ok := s.holdAction(w, r)
	if !ok {
		return
	}
	if s.webhooks == nil {
		s.renderHoldError(w, r, v, microdrop.Errorf(microdrop.ENOTFOUND, "this server ships nothing: it has no fulfilment webhooks"))
		return
	}
	if !h.Shippable() {
		s.renderHoldError(w, r, v, microdrop.Errorf(microdrop.ECONFLICT, "this unit can no longer be shipped: it is %s", h.State))
		return
	}
	a := claims.ShippingAddress{Recipient: r.PostFormValue("recipient"), Line1: r.PostFormValue("line1"), Line2: r.PostFormValue("line2"),
		City: r.PostFormValue("city"), PostalCode: r.PostFormValue("postal_code"), Region: r.PostFormValue("region"), Country: r.PostFormValue("country")}
	if err := s.webhooks.SetShippingAddress(r.Context(), h.ID, a); err != nil {
		s.renderHoldError(w, r, v, err)
		return
	}
	s.seeClaimPage(w, r, v.DropID)
}

// minutes says a duration in ms the way a viewer reads it.
func minutes(ms int64) string {
	m := (ms + 59_999) / 60_000
	if m <= 1 {
		return "1 min"
	}
	return strconv.FormatInt(m, 10) + " min"
}

// holdAction checks a claim page form that acts on a hold: the same site,
// a viewer session, its CSRF token, and a hold that is theirs. The viewer
// is the session's, never the form's.
func (s *Server) holdAction(w http.ResponseWriter, r *http.Request) (templates.ClaimPageView, claims.Hold, string, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		httpError(w, http.StatusBadRequest, "the form could not be read (too large or malformed)")
		return templates.ClaimPageView{}, claims.Hold{}, "", false
	}
	if !microdrop.SameOrigin(r) {
		httpError(w, http.StatusForbidden, "pay from this site's own claim page")
		return templates.ClaimPageView{}, claims.Hold{}, "", false
	}
	v, who, known, status := s.claimView(r, r.PathValue("id"))
	switch {
	case !v.Found:
		render(w, r, status, templates.ClaimPage(v))
		return v, claims.Hold{}, "", false
	case !known:
		v.Error = "sign in first: only the viewer who holds a unit can pay for it"
		render(w, r, http.StatusUnauthorized, templates.ClaimPage(v))
		return v, claims.Hold{}, "", false
	case !(microdrop.Session{CSRF: who.CSRF}).CheckCSRF(r.PostFormValue("csrf")):
		v.Error = "this form is stale; reload the page and try again"
		render(w, r, http.StatusForbidden, templates.ClaimPage(v))
		return v, claims.Hold{}, "", false
	}
	uid := who.Viewer.UserID
	h, err := s.claims.HoldFor(r.Context(), r.PathValue("hold"), uid)
	if err == nil && h.DropID != v.DropID {
		err = microdrop.Errorf(microdrop.ENOTFOUND, "no such hold")
	}
	if err != nil {
		v.Error = microdrop.ErrorMessage(err)
		render(w, r, microdrop.StatusOf(microdrop.ErrorCode(err)), templates.ClaimPage(v))
		return v, claims.Hold{}, "", false
	}
	return v, h, uid, true
}

// holdPay pays the viewer's own hold from their wallet, or sends them to
// a card checkout.
func (s *Server) holdPay(w http.ResponseWriter, r *http.Request) {
	v, h, uid, ok := s.holdAction(w, r)
	if !ok {
		return
	}
	switch r.PostFormValue("method") {
	case claims.PayWallet:
		_, err := s.claims.PayFromWallet(r.Context(), h.ID, uid)
		if err != nil {
			s.renderHoldError(w, r, v, err)
			return
		}
		s.seeClaimPage(w, r, v.DropID)
	case claims.PayCard:
		if s.cards == nil {
			s.renderHoldError(w, r, v, microdrop.Errorf(microdrop.EINVALID, "card payments are off on this server"))
			return
		}
		co, err := s.cards.Checkout(r.Context(), h.ID, uid)
		if err != nil {
			s.renderHoldError(w, r, v, err)
			return
		}
		http.Redirect(w, r, co.URL, http.StatusSeeOther)
	default:
		s.renderHoldError(w, r, v, microdrop.Errorf(microdrop.EINVALID, "choose how to pay: wallet or card"))
	}
}

// holdRelease gives the viewer's own hold up: the unit passes on at once.
func (s *Server) holdRelease(w http.ResponseWriter, r *http.Request) {
	v, h, uid, ok := s.holdAction(w, r)
	if !ok {
		return
	}
	if _, err := s.claims.ReleaseHold(r.Context(), h.ID, uid); err != nil {
		s.renderHoldError(w, r, v, err)
		return
	}
	s.seeClaimPage(w, r, v.DropID)
}

// seeClaimPage sends the viewer back to the claim page after an action,
// so a reload does not post the form again.
func (s *Server) seeClaimPage(w http.ResponseWriter, r *http.Request, dropID string) {
	http.Redirect(w, r, "/c/"+url.PathEscape(dropID), http.StatusSeeOther)
}

// renderHoldError shows the claim page, with the hold as it is now, and
// why the action was refused.
func (s *Server) renderHoldError(w http.ResponseWriter, r *http.Request, v templates.ClaimPageView, err error) {
	code := microdrop.ErrorCode(err)
	if code == microdrop.EINTERNAL {
		s.log.Error("hold action failed", "err", err)
	}
	// The view was built before the action; build it again so it shows
	// what is true now.
	v, _, _, _ = s.claimView(r, v.DropID)
	v.Error = microdrop.ErrorMessage(err)
	render(w, r, microdrop.StatusOf(code), templates.ClaimPage(v))
}

// holdReceiptQR is the QR code of the viewer's own receipt.
func (s *Server) holdReceiptQR(w http.ResponseWriter, r *http.Request) {
	who, known := s.viewers.Identify(r)
	if !known {
		httpError(w, http.StatusUnauthorized, "sign in first")
		return
	}
	h, err := s.claims.HoldFor(r.Context(), r.PathValue("hold"), who.Viewer.UserID)
	if err != nil || h.DropID != r.PathValue("id") || h.State != claims.HoldPaid {
		httpError(w, http.StatusNotFound, "no such receipt")
		return
	}
	st, err := s.claims.HoldStatus(r.Context(), h)
	if err != nil || st.Receipt == "" {
		httpError(w, http.StatusNotFound, "no such receipt")
		return
	}
	svg, err := qrSVG(st.Receipt)
	if err != nil {
		s.log.Error("receipt QR", "err", err)
		httpError(w, http.StatusInternalServerError, "could not draw the QR code")
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "private, no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(svg)
}

// qrSVG draws text as a QR code, one path of unit squares.
func qrSVG(text string) ([]byte, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return nil, err
	}
	bm := q.Bitmap()
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges"><rect width="100%%" height="100%%" fill="#fff"/><path fill="#000" d="`, len(bm), len(bm))
	for y, row := range bm {
		for x, on := range row {
			if on {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x, y)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	return []byte(b.String()), nil
}

// receiptPage verifies a receipt against this server's published keys,
// for anyone: the desk, a buyer, a reseller's customer.
func (s *Server) receiptPage(w http.ResponseWriter, r *http.Request) {
	v := templates.ReceiptView{Text: strings.TrimSpace(r.URL.Query().Get("r"))}
	if v.Text == "" {
		render(w, r, http.StatusOK, templates.ReceiptPage(v))
		return
	}
	if len(v.Text) > 2000 {
		v.Text, v.Error = "", "that is too long to be a microdrop receipt"
		render(w, r, http.StatusBadRequest, templates.ReceiptPage(v))
		return
	}
	rec, err := claims.VerifyReceipt(v.Text, s.claims.ReceiptKeys())
	if err != nil {
		v.Error = "this receipt does not verify: it is malformed, altered, or not signed by this server's keys"
		render(w, r, http.StatusUnprocessableEntity, templates.ReceiptPage(v))
		return
	}
	v.OK = &templates.ReceiptFacts{KeyID: rec.KeyID, DropID: rec.DropID, SKU: rec.SKU, Run: rec.LimitedRunID, Unit: rec.Unit,
		Amount: formatPrice(rec.Amount, rec.Currency), PaidAt: deskTime(rec.Time()), Holder: rec.Holder, Method: rec.Method}
	render(w, r, http.StatusOK, templates.ReceiptPage(v))
}
