package overlay

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/templates"
)

// MaxNameRunes bounds the name a viewer types on the claim page.
const MaxNameRunes = 25

// LocalUserID derives the user id of a viewer who claims in local mode
// (no platform login): "local-" and the name, lowercased, with everything
// but letters, digits and '_' dropped. It reports false when nothing is left.
func LocalUserID(name string) (string, bool) {
	var b strings.Builder
	n := 0
	for _, r := range strings.ToLower(strings.TrimSpace(name)) {
		if n >= MaxNameRunes {
			break
		}
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_') {
			b.WriteRune(r)
			n++
		}
	}
	if b.Len() == 0 {
		return "", false
	}
	return "local-" + b.String(), true
}

func (s *Server) claimView(r *http.Request, id string) (templates.ClaimPageView, int) {
	v := templates.ClaimPageView{DropID: id, LocalMode: true, Code: r.URL.Query().Get("code")}
	if len(v.Code) > 16 {
		v.Code = ""
	}
	d, err := s.claims.Drop(r.Context(), id)
	if err != nil {
		v.Error = microdrop.ErrorMessage(err)
		return v, microdrop.StatusOf(microdrop.ErrorCode(err))
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
	return v, http.StatusOK
}

func (s *Server) claimPage(w http.ResponseWriter, r *http.Request) {
	v, status := s.claimView(r, r.PathValue("id"))
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
	v, status := s.claimView(r, r.PathValue("id"))
	if !v.Found {
		render(w, r, status, templates.ClaimPage(v))
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	v.Name = name
	if c := r.PostFormValue("code"); c != "" {
		v.Code = c
	}
	uid, ok := LocalUserID(name)
	if !ok {
		v.Error = "type a name with at least one letter or digit"
		render(w, r, http.StatusBadRequest, templates.ClaimPage(v))
		return
	}
	if rs := []rune(name); len(rs) > MaxNameRunes {
		name = string(rs[:MaxNameRunes])
	}
	res, err := s.claims.Claim(r.Context(), claims.ClaimRequest{
		DropID: v.DropID, Viewer: claims.Viewer{UserID: uid, Login: name}, Code: v.Code, RemoteIP: claims.RemoteIP(r),
	})
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
	render(w, r, http.StatusOK, templates.RedeemPage(templates.RedeemView{LoggedIn: true, CSRF: s.admin.CSRFToken()}))
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
	v := templates.RedeemView{LoggedIn: true, CSRF: s.admin.CSRFToken()}
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
