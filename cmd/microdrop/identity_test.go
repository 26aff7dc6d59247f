package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop/chat/twitch/twitchtest"
	"github.com/microdrop/microdrop/claims"
)

// identityRig is a Main with Twitch sign-in against the test provider.
type identityRig struct {
	t    *testing.T
	m    *Main
	tw   *twitchtest.Server
	base string
}

func newIdentityRig(t *testing.T) *identityRig {
	t.Helper()
	tw := twitchtest.New(t, twitchtest.Options{})
	tw.AddOIDCUser(twitchtest.OIDCUser{ID: "555", Login: "viewer1", DisplayName: "Viewer1", CreatedAt: time.Date(2016, 3, 1, 0, 0, 0, 0, time.UTC)})
	tw.AddOIDCUser(twitchtest.OIDCUser{ID: "666", Login: "viewer2", DisplayName: "Viewer2", CreatedAt: time.Now().Add(-48 * time.Hour)})
	tw.AddOIDCUser(twitchtest.OIDCUser{ID: "777", Login: "chatwinner", DisplayName: "ChatWinner"})
	env := map[string]string{"TWITCH_CLIENT_ID": tw.Options().ClientID, "TWITCH_CLIENT_SECRET": tw.ClientSecret(),
		"TWITCH_AUTH_URL": tw.AuthURL(), "TWITCH_API_URL": tw.APIURL(), "MICRODROP_ADMIN_TOKEN": testAdminToken,
		// Every browser of the test shares one address.
		"MICRODROP_SIGNIN_PER_MINUTE": "600", "MICRODROP_CLAIMS_PER_MINUTE": "600"}
	m := NewMain(io.Discard, io.Discard)
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--rtsp", "off", "--data", t.TempDir()}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	base := m.publicURL()
	tw.RegisterRedirect(base + "/auth/twitch/callback")
	return &identityRig{t: t, m: m, tw: tw, base: base}
}

func newBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

// signIn plays a viewer through Twitch sign-in from the claim page next.
func (r *identityRig) signIn(c *http.Client, userID, next string) string {
	r.t.Helper()
	noFollow := *c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Get(r.base + "/auth/twitch/start?next=" + url.QueryEscape(next))
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(authURL, r.tw.AuthURL()+"/authorize?") {
		r.t.Fatalf("sign-in start: %d %q", resp.StatusCode, authURL)
	}
	q, _ := url.ParseQuery(authURL[strings.IndexByte(authURL, '?')+1:])
	for _, k := range []string{"state", "nonce", "code_challenge", "claims"} {
		if q.Get(k) == "" {
			r.t.Fatalf("authorize request without %s: %s", k, authURL)
		}
	}
	res, err := r.tw.SignIn(c, authURL, userID)
	if err != nil {
		r.t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		r.t.Fatalf("sign-in ended %d: %s", res.StatusCode, b)
	}
	return string(b)
}

func (r *identityRig) openDrop(body string) string {
	r.t.Helper()
	var open claims.DropResponse
	if st, err := api(r.t, "POST", r.base+"/api/drops", json.RawMessage(body), &open); st != 201 || err != nil {
		r.t.Fatalf("open: %d %v", st, err)
	}
	return open.Drop.ID
}

func do(t *testing.T, c *http.Client, method, u, body string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var pickupRe = regexp.MustCompile(`id="pickup-token">([0-9A-Z]{16})<`)

// TestIdentityEveryClaimPath drives each impersonation and disclosure path
// of the issue against the built service with Twitch sign-in on.
func TestIdentityEveryClaimPath(t *testing.T) {
	r := newIdentityRig(t)
	id := r.openDrop(`{"channel":"streamer","sku":"cap","title":"Cap","stock":5,"duration":"5m","policy":"fcfs"}`)
	claimsURL := r.base + "/api/drops/" + id + "/claims"
	page := r.base + "/c/" + id

	// A bare user_id from nobody: 401, however many fresh ids.
	for _, u := range []string{"victim", "fresh1", "fresh2"} {
		if st, b := do(t, http.DefaultClient, "POST", claimsURL, `{"user_id":"`+u+`"}`); st != 401 {
			t.Fatalf("anonymous claim as %s: %d %s", u, st, b)
		}
	}
	// The claim page without sign-in: sign-in button, no form, no name box.
	if st, b := do(t, http.DefaultClient, "GET", page, ""); st != 200 || !strings.Contains(b, `id="signin-twitch"`) || strings.Contains(b, `id="claim-form"`) || strings.Contains(b, `name="name"`) {
		t.Fatalf("claim page for a stranger: %d\n%s", st, b)
	}

	alice := newBrowser()
	if b := r.signIn(alice, "555", "/c/"+id); !strings.Contains(b, `id="claim-who">viewer1<`) || !strings.Contains(b, `id="claim-form"`) {
		t.Fatalf("after sign-in the claim page should name viewer1 and offer the form:\n%s", b)
	}
	// A session cannot claim as someone else, nor say it is a subscriber.
	for _, body := range []string{`{"user_id":"666"}`, `{"user_id":"victim"}`, `{"subscriber":true}`, `{"account_created":"2001-01-01T00:00:00Z"}`} {
		if st, b := do(t, alice, "POST", claimsURL, body); st != 403 {
			t.Fatalf("session claim with %s: %d %s", body, st, b)
		}
	}
	// A cross-site page riding the session is refused.
	if st, _ := do(t, alice, "POST", claimsURL, `{}`, "Origin", "https://evil.example"); st != 403 {
		t.Fatalf("cross-site claim: %d", st)
	}
	st, b := do(t, alice, "POST", claimsURL, `{}`)
	var won claims.ClaimResult
	if st != 200 || json.Unmarshal([]byte(b), &won) != nil || won.Outcome != "won" || won.Token == "" {
		t.Fatalf("session claim: %d %s", st, b)
	}
	if st, b := do(t, alice, "POST", claimsURL, `{}`); st != 409 {
		t.Fatalf("second claim: %d %s", st, b)
	}
	// The owner sees the code after a reload; nobody else does.
	if _, b := do(t, alice, "GET", page, ""); !strings.Contains(b, won.Token) {
		t.Fatalf("the owner lost the code on reload:\n%s", b)
	}
	if _, b := do(t, http.DefaultClient, "GET", page, ""); strings.Contains(b, won.Token) || pickupRe.MatchString(b) {
		t.Fatal("a stranger sees the winner's code")
	}
	bob := newBrowser()
	b = r.signIn(bob, "666", "/c/"+id)
	if strings.Contains(b, won.Token) {
		t.Fatal("another signed-in viewer sees the winner's code")
	}
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(b)
	if csrf == nil {
		t.Fatalf("no CSRF token in the claim form:\n%s", b)
	}
	// Typing the winner's name (the old local-mode identity) changes nothing.
	resp, err := bob.PostForm(page, url.Values{"csrf": {csrf[1]}, "name": {"viewer1"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := pickupRe.FindStringSubmatch(string(body))
	if resp.StatusCode != 200 || m == nil || m[1] == won.Token {
		t.Fatalf("bob's claim: %d %v\n%s", resp.StatusCode, m, body)
	}
	if ps, err := r.m.Claims.Status(t.Context(), id, "666"); err != nil || len(ps) != 1 || ps[0].Token != m[1] {
		t.Fatalf("bob's claim is not under his verified id: %v %v", ps, err)
	}
	// Local chat is closed to viewers while sign-in is on: no !mytoken for anyone's id.
	if st, b := do(t, http.DefaultClient, "POST", r.base+"/api/chat", `{"user_id":"555","login":"x","text":"!mytoken"}`); st != 403 || strings.Contains(b, won.Token) {
		t.Fatalf("!mytoken through local chat: %d %s", st, b)
	}
	if st, b := do(t, http.DefaultClient, "POST", r.base+"/api/chat", `{"channel":"streamer","user_id":"555","text":"!mytoken"}`); st != 403 || strings.Contains(b, won.Token) {
		t.Fatalf("!mytoken into the Twitch channel: %d %s", st, b)
	}
	// The public drop answer carries no pickup code.
	if _, b := do(t, http.DefaultClient, "GET", r.base+"/api/drops/"+id, ""); strings.Contains(b, won.Token) {
		t.Fatal("GET /api/drops/{id} leaks a pickup code")
	}
	// Sign-out revokes the session: a copy of the cookie is dead too.
	u, _ := url.Parse(r.base)
	stolen := newBrowser()
	stolen.Jar.SetCookies(u, alice.Jar.Cookies(u))
	csrfA := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(func() string { _, b := do(t, alice, "GET", page, ""); return b }())
	resp, err = alice.PostForm(r.base+"/auth/signout", url.Values{"csrf": {csrfA[1]}, "next": {"/c/" + id}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, b := do(t, stolen, "GET", page, ""); strings.Contains(b, won.Token) || !strings.Contains(b, `id="signin-twitch"`) {
		t.Fatal("a revoked session still shows the code")
	}
	if st, _ := do(t, stolen, "POST", claimsURL, `{}`); st != 401 {
		t.Fatalf("a revoked session claims: %d", st)
	}
	// With sign-in on, the dashboard does not warn about local mode.
	if st, b := do(t, http.DefaultClient, "GET", r.base+"/dashboard", "", "Authorization", "Bearer "+testAdminToken); st != 200 || strings.Contains(b, `id="local-mode"`) || !strings.Contains(b, `id="open-form"`) {
		t.Fatalf("dashboard with sign-in on: %d", st)
	}
	// The admin bridge still names users (chat bridges, load tests).
	if st, err := api(t, "POST", claimsURL, claims.ClaimBody{UserID: "bridge_user", Subscriber: true}, nil); st != 200 || err != nil {
		t.Fatalf("admin bridge claim: %d %v", st, err)
	}
}

// TestSignInCallbackRefusals: the callback checks state (bound to this
// browser, used once) and the ID token's nonce.
func TestSignInCallbackRefusals(t *testing.T) {
	r := newIdentityRig(t)
	id := r.openDrop(`{"channel":"streamer","sku":"cap","stock":5,"duration":"5m"}`)
	start := func(c *http.Client) url.Values {
		nf := *c
		nf.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := nf.Get(r.base + "/auth/twitch/start?next=/c/" + id)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		q, _ := url.ParseQuery(loc[strings.IndexByte(loc, '?')+1:])
		return q
	}
	// codeFor signs 555 in at the provider with q and returns the code the
	// provider redirected with, without delivering it.
	codeFor := func(q url.Values) string {
		nf := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err := r.tw.SignIn(nf, r.tw.AuthURL()+"/authorize?"+q.Encode(), "555")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		loc, _ := url.Parse(res.Header.Get("Location"))
		return loc.Query().Get("code")
	}
	callback := func(c *http.Client, code, state string) (int, string) {
		return do(t, c, "GET", r.base+"/auth/twitch/callback?"+url.Values{"code": {code}, "state": {state}}.Encode(), "")
	}

	victim := newBrowser()
	qv := start(victim)
	// An attacker's own code, delivered into the victim's browser with the
	// victim's state (login CSRF): the PKCE challenge is copied so only the
	// nonce tells them apart.
	attacker := newBrowser()
	qa := start(attacker)
	qa.Set("code_challenge", qv.Get("code_challenge"))
	if st, b := callback(victim, codeFor(qa), qv.Get("state")); st != http.StatusUnauthorized || !strings.Contains(b, "replayed") {
		t.Fatalf("foreign code in the victim's sign-in: %d %s", st, b)
	}
	// Wrong state.
	qv = start(victim)
	if st, _ := callback(victim, codeFor(qv), "not-the-state"); st != http.StatusBadRequest {
		t.Fatalf("wrong state: %d", st)
	}
	// The callback in a browser that never started a sign-in.
	qv = start(victim)
	code := codeFor(qv)
	if st, _ := callback(newBrowser(), code, qv.Get("state")); st != http.StatusBadRequest {
		t.Fatalf("callback in another browser: %d", st)
	}
	// The right browser, used once: works, then a replay is refused.
	qv = start(victim)
	code = codeFor(qv)
	nf := *victim
	nf.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := nf.Get(r.base + "/auth/twitch/callback?" + url.Values{"code": {code}, "state": {qv.Get("state")}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "microdrop_viewer" {
			sess = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/c/"+id || sess == nil ||
		!sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || len(sess.Value) != 64 || sess.Expires.IsZero() {
		t.Fatalf("good callback: %d %q %+v", resp.StatusCode, resp.Header.Get("Location"), sess)
	}
	if st, _ := callback(victim, code, qv.Get("state")); st != http.StatusBadRequest {
		t.Fatalf("replayed callback: %d", st)
	}
	// An unknown provider.
	if st, _ := do(t, victim, "GET", r.base+"/auth/nope/start", ""); st != 404 {
		t.Fatalf("unknown provider: %d", st)
	}
}

// TestTwitchChatWinnerGetsCodeOnTheWeb: a Twitch viewer who won in chat
// (the bridge or EventSub names their Twitch id) and cannot get whispers
// signs in on the claim page and sees their own code there.
func TestTwitchChatWinnerGetsCodeOnTheWeb(t *testing.T) {
	r := newIdentityRig(t)
	id := r.openDrop(`{"channel":"streamer","sku":"cap","stock":5,"duration":"5m","policy":"fcfs"}`)
	var won claims.ClaimResult
	if st, err := api(t, "POST", r.base+"/api/drops/"+id+"/claims", claims.ClaimBody{UserID: "777", Login: "chatwinner"}, &won); st != 200 || err != nil || won.Token == "" {
		t.Fatalf("chat claim: %d %v", st, err)
	}
	b := r.signIn(newBrowser(), "777", "/c/"+id)
	if m := pickupRe.FindStringSubmatch(b); m == nil || m[1] != won.Token {
		t.Fatalf("the chat winner does not see their code after signing in:\n%s", b)
	}
}

// TestAccountAgeComesFromTwitch: a drop open only to accounts older than 30
// days admits the old account and refuses the two-day-old one, by what
// Twitch says (Get Users with the viewer's own token), never by the body.
func TestAccountAgeComesFromTwitch(t *testing.T) {
	r := newIdentityRig(t)
	id := r.openDrop(`{"channel":"streamer","sku":"cap","stock":5,"duration":"5m","policy":"fcfs",
		"stages":[{"offset":"0s","cap":1,"eligible":{"min_account_age_days":30}}]}`)
	claimsURL := r.base + "/api/drops/" + id + "/claims"
	old, young := newBrowser(), newBrowser()
	r.signIn(old, "555", "/c/"+id)
	r.signIn(young, "666", "/c/"+id)
	if st, b := do(t, young, "POST", claimsURL, `{}`); st == 200 {
		t.Fatalf("a two-day-old account passed a 30-day stage: %s", b)
	}
	if st, b := do(t, young, "POST", claimsURL, `{"account_created":"2010-01-01T00:00:00Z"}`); st != 403 {
		t.Fatalf("a viewer claiming an older account: %d %s", st, b)
	}
	if st, b := do(t, old, "POST", claimsURL, `{}`); st != 200 {
		t.Fatalf("the old account: %d %s", st, b)
	}
}
