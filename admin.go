package microdrop

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Admin checks the admin credential: a bearer token for scripts and the
// API, or a session cookie set by the dashboard's login form. The cookie
// holds an HMAC of the token, never the token itself.
type Admin struct {
	Token string
	// Secure marks cookies Secure (set when served over HTTPS).
	Secure bool
}

// CookieName is the dashboard session cookie.
const CookieName = "microdrop_admin"

func (a Admin) cookieValue() string {
	m := hmac.New(sha256.New, []byte(a.Token))
	m.Write([]byte("microdrop admin session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// CheckToken compares a presented token in constant time.
func (a Admin) CheckToken(tok string) bool {
	return a.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.Token)) == 1
}

// Allowed reports whether r carries the admin bearer token or session cookie.
func (a Admin) Allowed(r *http.Request) bool {
	if a.Token == "" {
		return false
	}
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return a.CheckToken(strings.TrimPrefix(h, "Bearer "))
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return subtle.ConstantTimeCompare([]byte(c.Value), []byte(a.cookieValue())) == 1
	}
	return false
}

// CookieAuth reports whether the request is authenticated by the session
// cookie (forms using it must also pass a CSRF check).
func (a Admin) CookieAuth(r *http.Request) bool {
	return r.Header.Get("Authorization") == "" && a.Allowed(r)
}

// SetCookie starts a dashboard session. SameSite=Strict keeps other sites'
// forms from riding on it.
func (a Admin) SetCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: a.cookieValue(), Path: "/", HttpOnly: true, Secure: a.Secure,
		SameSite: http.SameSiteStrictMode, Expires: time.Now().Add(12 * time.Hour),
	})
}

// ClearCookie ends a dashboard session.
func (a Admin) ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: a.Secure, SameSite: http.SameSiteStrictMode})
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
	if isForm(r) && !a.CheckCSRF(r.PostFormValue("csrf")) {
		return Errorf(EFORBIDDEN, "this form is stale or came from another site; reload the page and try again")
	}
	return nil
}

func isForm(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data"
}

// CSRFToken is the token forms carry when authenticated by cookie.
func (a Admin) CSRFToken() string {
	m := hmac.New(sha256.New, []byte(a.Token))
	m.Write([]byte("microdrop csrf v1"))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// CheckCSRF verifies a form's CSRF token.
func (a Admin) CheckCSRF(tok string) bool {
	return subtle.ConstantTimeCompare([]byte(tok), []byte(a.CSRFToken())) == 1
}
