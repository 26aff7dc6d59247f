package microdrop_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
)

func login(t *testing.T, a microdrop.Admin) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	a.SetCookie(rec)
	cs := rec.Result().Cookies()
	if len(cs) != 1 || !cs[0].HttpOnly || cs[0].Value == "" || cs[0].SameSite == http.SameSiteNoneMode {
		t.Fatalf("session cookie %+v", cs)
	}
	if strings.Contains(cs[0].Value, a.Token) {
		t.Fatal("the cookie carries the token")
	}
	return cs[0]
}

func withCookie(c *http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "/dashboard", nil)
	r.AddCookie(c)
	return r
}

func TestAdminSessionRevokedOnLogout(t *testing.T) {
	a := microdrop.NewAdmin("admin-token-0123456789", true, nil)
	c := login(t, a)
	if !c.Secure {
		t.Fatal("cookie not Secure behind https")
	}
	if err := a.Check(withCookie(c)); err != nil {
		t.Fatalf("fresh session refused: %v", err)
	}
	a.Logout(httptest.NewRecorder(), withCookie(c))
	if err := a.Check(withCookie(c)); microdrop.ErrorCode(err) != microdrop.EUNAUTHORIZED {
		t.Fatalf("a logged-out cookie still works: %v", err)
	}
}

func TestAdminSessionExpires(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	a := microdrop.NewAdmin("admin-token-0123456789", false, func() time.Time { return now })
	c := login(t, a)
	now = now.Add(microdrop.AdminSessionTTL - time.Second)
	if !a.Allowed(withCookie(c)) {
		t.Fatal("session ended early")
	}
	now = now.Add(2 * time.Second)
	if a.Allowed(withCookie(c)) {
		t.Fatal("session outlived its expiry")
	}
}

func TestAdminCSRFPerSession(t *testing.T) {
	a := microdrop.NewAdmin("admin-token-0123456789", false, nil)
	c1, c2 := login(t, a), login(t, a)
	t1, t2 := a.CSRFToken(withCookie(c1)), a.CSRFToken(withCookie(c2))
	if t1 == "" || t1 == t2 {
		t.Fatalf("CSRF tokens %q %q: want one per session", t1, t2)
	}
	post := func(c *http.Cookie, tok string) error {
		r := httptest.NewRequest("POST", "/dashboard/drops", strings.NewReader(url.Values{"csrf": {tok}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(c)
		return a.Check(r)
	}
	if err := post(c1, t1); err != nil {
		t.Fatalf("own CSRF refused: %v", err)
	}
	if err := post(c1, t2); microdrop.ErrorCode(err) != microdrop.EFORBIDDEN {
		t.Fatalf("another session's CSRF token: %v", err)
	}
	a.Logout(httptest.NewRecorder(), withCookie(c1))
	if err := post(c1, t1); err == nil {
		t.Fatal("form accepted after logout")
	}
}
