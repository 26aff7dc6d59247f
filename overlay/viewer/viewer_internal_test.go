package viewer

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
)

func TestSafeNextStaysOnClaimPages(t *testing.T) {
	for in, want := range map[string]string{
		"/c/abc?code=X":        "/c/abc?code=X",
		"//evil.example/c/x":   "/",
		"https://evil.example": "/",
		"/c/\\evil":            "/",
		"/dashboard":           "/",
		"/c/x\r\nSet-Cookie:":  "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSubjects(t *testing.T) {
	tw := &provider{cfg: Twitch("https://id.twitch.tv/oauth2", "c", "s")}
	if got := tw.subject("12345"); got != "12345" {
		t.Errorf("twitch subject %q: want the bare Twitch user id", got)
	}
	g := &provider{cfg: Provider{Name: "google"}}
	if got := g.subject("10769150350006150715113082367"); got != "google-10769150350006150715113082367" {
		t.Errorf("google subject %q", got)
	}
	if got := g.subject("a|b c"); !strings.HasPrefix(got, "google-") || len(got) != len("google-")+24 {
		t.Errorf("odd sub mapped to %q", got)
	}
	if got := tw.subject("x:y"); !strings.HasPrefix(got, "twitch-") {
		t.Errorf("a non-id Twitch sub %q must not pass bare", got)
	}
}

func TestLocalDeviceCookie(t *testing.T) {
	a, err := New(Deps{PublicURL: "https://drops.example", Sessions: microdrop.NewSessions(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Local() {
		t.Fatal("no provider should mean local mode")
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/c/x", nil)
	a.EnsureLocal(w, r)
	cs := w.Result().Cookies()
	if len(cs) != 1 || !cs[0].HttpOnly || !cs[0].Secure || cs[0].SameSite != http.SameSiteLaxMode || cs[0].Expires.Before(time.Now()) {
		t.Fatalf("device cookie %+v", cs)
	}
	id, ok := a.Identify(r)
	if !ok || !strings.HasPrefix(id.Viewer.UserID, "local-") || id.Verified || id.CSRF == "" {
		t.Fatalf("local identity %+v %v", id, ok)
	}
	// Another browser is another identity.
	r2 := httptest.NewRequest("GET", "/c/x", nil)
	a.EnsureLocal(httptest.NewRecorder(), r2)
	if id2, _ := a.Identify(r2); id2.Viewer.UserID == id.Viewer.UserID {
		t.Fatal("two browsers share a local identity")
	}
	// With a provider configured, a device cookie names nobody.
	b, err := New(Deps{PublicURL: "https://drops.example", Sessions: microdrop.NewSessions(nil),
		Providers: []Provider{Twitch("https://id.twitch.tv/oauth2", "cid", "secret")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Identify(r); ok {
		t.Fatal("a device cookie identified a viewer although sign-in is configured")
	}
}
