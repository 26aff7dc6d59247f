package overlay

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/overlay/viewer"
	"github.com/microdrop/microdrop/templates"
)

// claimView builds the claim page for whoever r is: a signed-in viewer (or,
// in local mode, this browser) sees their own pickup, after a reload too;
// anyone else sees the sign-in buttons and nobody's code.
func (s *Server) claimView(r *http.Request, id string) (templates.ClaimPageView, viewer.Identity, bool, int) {
	v := templates.ClaimPageView{DropID: id, LocalMode: s.viewers.Local(), Code: r.URL.Query().Get("code")}
	if len(v.Code) > 16 || microdrop.CheckText("code", v.Code, 16) != nil {
		v.Code = ""
	}
	v.Here = "/c/" + url.PathEscape(id)
	if v.Code != "" {
		v.Here += "?code=" + url.QueryEscape(v.Code)
	}
	who, known := s.viewers.Identify(r)
	if known {
		v.SignedIn, v.Login, v.Provider, v.CSRF = who.Verified, who.Viewer.Login, who.Provider, who.CSRF
	}
	for _, l := range s.viewers.Links(v.Here) {
		v.SignIn = append(v.SignIn, templates.SignInLink{Name: l.Name, Label: l.Label, URL: l.URL})
	}
	d, err := s.claims.Drop(r.Context(), id)
	if err != nil {
		v.Error = microdrop.ErrorMessage(err)
		return v, who, known, microdrop.StatusOf(microdrop.ErrorCode(err))
	}
	now := s.now()
	st := d.StateAt(now)
	v.Found = true
	v.Title, v.SKU, v.Price, v.State = d.Title, d.SKU, formatPrice(d.PriceMinor, d.Currency), string(st)
	v.Open = st == claims.Open || st == claims.Grace
	v.Stock, v.Remaining = d.Stock, d.Remaining
	v.ClosesAtMS = strconv.FormatFloat(unixMS(d.ClosesAt)-unixMS(now), 'f', 0, 64)
	v.CodeRequired = d.ClaimCode != ""
	v.Listen = d.Listening()
	if known {
		// Their own pickup, shown again after a reload: looked up by the
		// verified id only, never by anything the page was sent.
		if ps, err := s.claims.Status(r.Context(), d.ID, who.Viewer.UserID); err == nil && len(ps) > 0 {
			v.Result = s.outcomeOf(ps[0].Outcome, ps[0].Token, ps[0].ExpiresAt, ps[0].Redeemed)
		}
		if h, ok := s.ownHold(r.Context(), d, who.Viewer.UserID); ok {
			hv, err := s.holdView(r.Context(), d, h, r.URL.Query().Get("paid") == h.ID)
			if err != nil {
				s.log.Warn("claim page: hold", "hold", h.ID, "err", err)
			} else {
				v.Hold, v.Result = hv, nil
			}
		} else if d.Priced() && v.Result != nil && v.Result.Outcome == claims.OutcomeLost && s.unitsInPlay(r.Context(), d) {
			// In the line for a unit a winner does not pay for.
			v.Waiting = true
			v.Result.Message = "Sold out for now: you are in line for a unit a winner does not pay for. This page shows it if one comes to you."
		}
	}
	if note := d.View().WindowNote(); note != "" {
		v.WindowNote = strings.ToUpper(note[:1]) + note[1:]
	}
	return v, who, known, http.StatusOK
}

func (s *Server) claimPage(w http.ResponseWriter, r *http.Request) {
	s.viewers.EnsureLocal(w, r)
	v, _, _, status := s.claimView(r, r.PathValue("id"))
	render(w, r, status, templates.ClaimPage(v))
}

func (s *Server) claimSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		httpError(w, http.StatusBadRequest, "the form could not be read (too large or malformed)")
		return
	}
	if !microdrop.SameOrigin(r) {
		httpError(w, http.StatusForbidden, "claim from this site's own claim page")
		return
	}
	v, who, known, status := s.claimView(r, r.PathValue("id"))
	if !v.Found {
		render(w, r, status, templates.ClaimPage(v))
		return
	}
	if !known {
		v.Error = "sign in first: a claim needs a verified viewer"
		render(w, r, http.StatusUnauthorized, templates.ClaimPage(v))
		return
	}
	if !(microdrop.Session{CSRF: who.CSRF}).CheckCSRF(r.PostFormValue("csrf")) {
		v.Error = "this form is stale; reload the page and claim again"
		render(w, r, http.StatusForbidden, templates.ClaimPage(v))
		return
	}
	if v.Result != nil || v.Hold != nil || v.Waiting {
		render(w, r, http.StatusOK, templates.ClaimPage(v)) // already holds one: show it again
		return
	}
	if c := r.PostFormValue("code"); c != "" {
		if err := microdrop.CheckText("code", c, 16); err != nil {
			v.Error = microdrop.ErrorMessage(err)
			render(w, r, http.StatusBadRequest, templates.ClaimPage(v))
			return
		}
		v.Code = c
	}
	uid := who.Viewer.UserID
	res, err := s.claims.Claim(r.Context(), claims.ClaimRequest{DropID: v.DropID, Viewer: who.Viewer, Code: v.Code, RemoteIP: claims.RemoteIP(r)})
	if res.HoldID != "" || microdrop.ErrorReason(err) == claims.ReasonWaitlisted {
		// A hold to pay, or a place in line: the page shows either as it
		// is now, on this and every later load.
		s.seeClaimPage(w, r, v.DropID)
		return
	}
	if err != nil {
		v.Error = microdrop.ErrorMessage(err)
		status = microdrop.StatusOf(microdrop.ErrorCode(err))
		if reason := microdrop.ErrorReason(err); reason == claims.ReasonDuplicate || reason == claims.ReasonOverCap {
			// They already hold something: show it again rather than only "no".
			if ps, err := s.claims.Status(r.Context(), v.DropID, uid); err == nil && len(ps) > 0 {
				v.Result = s.outcomeOf(ps[0].Outcome, ps[0].Token, ps[0].ExpiresAt, ps[0].Redeemed)
				status = http.StatusOK
			}
		}
		if reason := microdrop.ErrorReason(err); reason == claims.ReasonLostDraw {
			v.Result = &templates.ClaimOutcome{Outcome: claims.OutcomeLost, Message: "Not this time: " + v.Error}
			v.Error = ""
		}
	} else {
		v.Result = s.outcomeOf(res.Outcome, res.Token, res.ExpiresAt, false)
		v.Remaining = res.Remaining
	}
	render(w, r, status, templates.ClaimPage(v))
}

func (s *Server) outcomeOf(outcome, token string, expires time.Time, redeemed bool) *templates.ClaimOutcome {
	o := &templates.ClaimOutcome{Outcome: outcome, Token: token, Redeemed: redeemed}
	switch outcome {
	case claims.OutcomeWon:
		o.Message = "You got one!"
		if redeemed {
			o.Message = "You got one, and it has been picked up."
		}
	case claims.OutcomeEntered:
		o.Message = "You are in the draw. Winners are drawn when the drop closes; come back to this page to see yours."
	default:
		o.Message = "Not this time."
	}
	if token != "" {
		o.QRURL = "/api/tokens/" + token + "/qr.svg"
		o.ExpiresAt = expires.Local().Format("2 Jan 2006 15:04")
	}
	return o
}

func (s *Server) redeemPage(w http.ResponseWriter, r *http.Request) {
	if !s.admin.Allowed(r) {
		render(w, r, http.StatusOK, templates.RedeemPage(templates.RedeemView{}))
		return
	}
	render(w, r, http.StatusOK, templates.RedeemPage(templates.RedeemView{LoggedIn: true, CSRF: s.admin.CSRFToken(r)}))
}

// refusalKind names why a token was refused, for the desk's distinct messages.
func refusalKind(err error) string {
	switch {
	case errors.Is(err, claims.ErrTokenUsed):
		return "used"
	case errors.Is(err, claims.ErrTokenExpired):
		return "expired"
	case errors.Is(err, claims.ErrTokenForged):
		return "forged"
	case errors.Is(err, claims.ErrTokenUnknown):
		return "unknown"
	case errors.Is(err, claims.ErrTokenMalformed):
		return "malformed"
	}
	return "error"
}

func (s *Server) redeemSubmit(w http.ResponseWriter, r *http.Request) {
	v := templates.RedeemView{LoggedIn: true, CSRF: s.admin.CSRFToken(r)}
	red, err := s.claims.Redeem(r.Context(), r.PostFormValue("token"))
	if err != nil {
		code := microdrop.ErrorCode(err)
		if code == microdrop.EINTERNAL {
			s.log.Error("redeem failed", "err", err)
		}
		v.Error, v.ErrorKind = microdrop.ErrorMessage(err), refusalKind(err)
		if errors.Is(err, claims.ErrTokenUsed) && !red.RedeemedAt.IsZero() {
			v.Error = "this pickup code was already redeemed at " + deskTime(red.RedeemedAt) + " (winner " + winner(red) + ")"
		}
		render(w, r, microdrop.StatusOf(code), templates.RedeemPage(v))
		return
	}
	v.Done = &templates.RedeemDone{Title: red.Title, SKU: red.SKU, UserID: red.UserID, Login: winner(red), Unit: red.Unit,
		DropID: red.DropID, RedeemedAt: deskTime(red.RedeemedAt)}
	render(w, r, http.StatusOK, templates.RedeemPage(v))
}

// deskTime is how the desk shows a moment: the desk's local time, 24-hour
// like every time on the dashboard, with the day.
func deskTime(t time.Time) string { return t.Local().Format("Mon 2 Jan 15:04:05") }

// winner names the viewer as chat knows them, not by the internal id
// ("local-chatfan"); the id only when no login was recorded.
func winner(r claims.Redemption) string {
	if r.Login != "" {
		return r.Login
	}
	return r.UserID
}
