package microdrop

import (
	"crypto/subtle"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Admin checks the admin credential: a bearer token for scripts and the
// API, or a dashboard session started by the login form. The session lives
// server-side (Sessions): its cookie is a random id, it expires, logout
// revokes it, and it has its own CSRF token.
type Admin struct {
	Token string
	// Secure marks cookies Secure (set when served over HTTPS).
	Secure bool
	// Sessions holds dashboard sessions; without it only the bearer token
	// works.
	Sessions *Sessions
}

// AdminSessionTTL is how long a dashboard login lasts.
const AdminSessionTTL = 12 * time.Hour

// NewAdmin returns the admin check with its own session store.
func NewAdmin(token string, secure bool, now func() time.Time) Admin {
	return Admin{Token: token, Secure: secure, Sessions: NewSessions(now)}
}

// CookieName is the dashboard session cookie.
const CookieName = "microdrop_admin"

// CheckToken compares a presented token in constant time.
func (a Admin) CheckToken(tok string) bool {
	return a.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.Token)) == 1
}

// session returns the live dashboard session r carries.
func (a Admin) session(r *http.Request) (Session, bool) {
	if a.Sessions == nil || a.Token == "" {
		return Session{}, false
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		return Session{}, false
	}
	return a.Sessions.Get(c.Value, SessionAdmin)
}

// Allowed reports whether r carries the admin bearer token or a live
// dashboard session.
func (a Admin) Allowed(r *http.Request) bool {
	if a.Token == "" {
		return false
	}
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return a.CheckToken(strings.TrimPrefix(h, "Bearer "))
	}
	_, ok := a.session(r)
	return ok
}

// CookieAuth reports whether the request is authenticated by the session
// cookie (forms using it must also pass a CSRF check).
func (a Admin) CookieAuth(r *http.Request) bool {
	return r.Header.Get("Authorization") == "" && a.Allowed(r)
}

// SetCookie starts a new dashboard session. SameSite=Strict (stricter than
// the viewers' Lax: the admin never arrives by a link from elsewhere) keeps
// other sites' forms from riding on it.
func (a Admin) SetCookie(w http.ResponseWriter) {
	if a.Sessions == nil {
		return
	}
	s := a.Sessions.Create(Session{Kind: SessionAdmin, Subject: "admin"}, AdminSessionTTL)
	http.SetCookie(w, SessionCookie(CookieName, s.ID, s.Expires, a.Secure, http.SameSiteStrictMode))
}

// Logout revokes the request's dashboard session and clears its cookie: a
// copy of the cookie kept elsewhere stops working too.
func (a Admin) Logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(CookieName); err == nil && a.Sessions != nil {
		a.Sessions.Revoke(c.Value)
	}
	http.SetCookie(w, SessionCookie(CookieName, "", time.Time{}, a.Secure, http.SameSiteStrictMode))
}

// SameOrigin refuses a cookie-authenticated request sent from another site.
// SameSite=Strict already keeps the cookie off such requests; this is the
// second lock. Without an Origin header it trusts Sec-Fetch-Site.
func SameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	return r.Header.Get("Sec-Fetch-Site") != "cross-site"
}

// Check is the one admin check every edge makes: the request carries the
// admin bearer token or session cookie, and a cookie-authenticated request
// that changes something comes from our own pages (same origin) and, when it
// is a form, carries the session's CSRF token. It returns an EUNAUTHORIZED or
// EFORBIDDEN *Error; each edge renders that its own way.
func (a Admin) Check(r *http.Request) error {
	if !a.Allowed(r) {
		return Errorf(EUNAUTHORIZED, "this needs the admin token: Authorization: Bearer <token>")
	}
	if !a.CookieAuth(r) || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	if !SameOrigin(r) {
		return Errorf(EFORBIDDEN, "cross-site request refused")
	}
	if isForm(r) && !a.CheckCSRF(r, r.PostFormValue("csrf")) {
		return Errorf(EFORBIDDEN, "this form is stale or came from another site; reload the page and try again")
	}
	return nil
}

func isForm(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data"
}

// CSRFToken is the token forms carry in the request's dashboard session
// ("" without one).
func (a Admin) CSRFToken(r *http.Request) string {
	s, _ := a.session(r)
	return s.CSRF
}

// CheckCSRF verifies a form's CSRF token against the request's session.
func (a Admin) CheckCSRF(r *http.Request, tok string) bool {
	s, ok := a.session(r)
	return ok && s.CheckCSRF(tok)
}
