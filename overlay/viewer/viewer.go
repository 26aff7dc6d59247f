package viewer

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

// Provider is one OpenID Connect provider viewers may sign in with.
type Provider struct {
	// Name is the short name in URLs: /auth/{name}/callback.
	Name string
	// Label is what the sign-in button says: "Sign in with {Label}".
	Label        string
	Issuer       string
	ClientID     string
	ClientSecret string
	// Scopes beyond openid (Google: "profile").
	Scopes []string
	// UsernameClaim is the claim shown as the viewer's name:
	// preferred_username for Twitch (asked for through the claims
	// parameter, as Twitch adds only what is asked), name for Google.
	UsernameClaim string
	// ClaimsParameter requests UsernameClaim through OIDC's claims
	// parameter (Twitch needs it).
	ClaimsParameter bool
	// BareSubject uses the provider's sub as the user id unprefixed (Twitch:
	// the same id its chat carries).
	BareSubject bool
	// HelixURL, for Twitch, is where the account's age is asked (Get Users
	// with the viewer's own token): the ID token does not carry it, and the
	// caller never gets to say it.
	HelixURL string
	// SecretInBody sends the client secret in the token request's form body
	// (Twitch documents only that); otherwise the library detects the style.
	SecretInBody bool
}

// Twitch is the built-in Twitch provider: issuer is twitch.auth_url
// (https://id.twitch.tv/oauth2 unless overridden).
func Twitch(issuer, clientID, clientSecret string) Provider {
	return Provider{Name: "twitch", Label: "Twitch", Issuer: strings.TrimRight(issuer, "/"), ClientID: clientID,
		ClientSecret: clientSecret, UsernameClaim: "preferred_username", ClaimsParameter: true, SecretInBody: true, BareSubject: true,
		HelixURL: "https://api.twitch.tv/helix"}
}

// Deps is what the sign-in needs.
type Deps struct {
	Providers []Provider
	// PublicURL is where viewers reach microdrop; redirect URIs are
	// {PublicURL}/auth/{name}/callback and must be registered as such.
	PublicURL string
	// Sessions is the store viewer sessions live in.
	Sessions *microdrop.Sessions
	// SessionTTL is how long a sign-in lasts: 12h when zero.
	SessionTTL time.Duration
	// HTTPClient talks to the providers (tests point it anywhere).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// Cookie names.
const (
	SessionCookie = "microdrop_viewer"
	PendingCookie = "microdrop_signin"
)

// PendingTTL bounds how long a sign-in may take at the provider.
const PendingTTL = 10 * time.Minute

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// Auth is viewer sign-in and identity.
type Auth struct {
	d      Deps
	log    *slog.Logger
	secure bool
	byName map[string]*provider
	order  []string
}

type provider struct {
	cfg Provider
	mu  sync.Mutex
	op  *oidc.Provider // discovered on first use, so a provider down at start does not stop serve
}

// New checks deps.
func New(d Deps) (*Auth, error) {
	if d.Sessions == nil {
		return nil, errors.New("viewer: a session store is required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.SessionTTL == 0 {
		d.SessionTTL = 12 * time.Hour
	}
	if d.HTTPClient == nil {
		d.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	d.PublicURL = strings.TrimRight(d.PublicURL, "/")
	if !strings.HasPrefix(d.PublicURL, "http://") && !strings.HasPrefix(d.PublicURL, "https://") {
		return nil, fmt.Errorf("viewer: public URL %q must start with http:// or https://", d.PublicURL)
	}
	a := &Auth{d: d, log: d.Logger.With("component", "viewer"), secure: strings.HasPrefix(d.PublicURL, "https://"),
		byName: make(map[string]*provider)}
	for _, p := range d.Providers {
		switch {
		case !namePattern.MatchString(p.Name) || p.Name == "local":
			return nil, fmt.Errorf("viewer: provider name %q must be lowercase letters, digits, _ or -", p.Name)
		case a.byName[p.Name] != nil:
			return nil, fmt.Errorf("viewer: provider %q configured twice", p.Name)
		case !strings.HasPrefix(p.Issuer, "https://") && !strings.HasPrefix(p.Issuer, "http://"):
			return nil, fmt.Errorf("viewer: provider %s: issuer %q must be an http(s) URL", p.Name, p.Issuer)
		case p.ClientID == "" || p.ClientSecret == "":
			return nil, fmt.Errorf("viewer: provider %s needs a client id and a client secret", p.Name)
		}
		if p.Label == "" {
			p.Label = p.Name
		}
		if p.UsernameClaim == "" {
			p.UsernameClaim = "preferred_username"
		}
		a.byName[p.Name] = &provider{cfg: p}
		a.order = append(a.order, p.Name)
	}
	return a, nil
}

// Local reports local mode: no provider, so identities are per browser and
// the drops are not for real.
func (a *Auth) Local() bool { return len(a.order) == 0 }

// Secure reports whether cookies are marked Secure.
func (a *Auth) Secure() bool { return a.secure }

// Link is a sign-in button.
type Link struct{ Name, Label, URL string }

// Links are the sign-in buttons for a page at next.
func (a *Auth) Links(next string) []Link {
	out := make([]Link, 0, len(a.order))
	for _, n := range a.order {
		out = append(out, Link{Name: n, Label: a.byName[n].cfg.Label, URL: "/auth/" + n + "/start?next=" + url.QueryEscape(next)})
	}
	return out
}

// RedirectURI is what to register with the provider named name.
func (a *Auth) RedirectURI(name string) string { return a.d.PublicURL + "/auth/" + name + "/callback" }

// Routes registers /auth/{provider}/start, /auth/{provider}/callback and
// POST /auth/signout.
func (a *Auth) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /auth/{provider}/start", a.start)
	mux.HandleFunc("GET /auth/{provider}/callback", a.callback)
	mux.HandleFunc("POST /auth/signout", a.signout)
}

// Identity is who a request comes from on the web.
type Identity struct {
	Viewer claims.Viewer
	// CSRF is the token the caller's forms must carry.
	CSRF string
	// Verified is true for a provider sign-in, false for a local device.
	Verified bool
	// Provider names where the sign-in came from ("" for a device).
	Provider  string
	SessionID string
}

// Session returns the signed-in viewer r carries.
func (a *Auth) Session(r *http.Request) (Identity, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return Identity{}, false
	}
	s, ok := a.d.Sessions.Get(c.Value, microdrop.SessionViewer)
	if !ok {
		return Identity{}, false
	}
	v := claims.Viewer{UserID: s.Subject, Login: s.Login}
	if c, err := time.Parse(time.RFC3339, s.Data["account_created"]); err == nil {
		v.AccountCreated = c
	}
	return Identity{Viewer: v, CSRF: s.CSRF, Verified: true, Provider: s.Provider, SessionID: s.ID}, true
}

// Identify names the caller: a signed-in viewer, or in local mode the
// browser's device. ok is false for a stranger.
func (a *Auth) Identify(r *http.Request) (Identity, bool) {
	if id, ok := a.Session(r); ok {
		return id, true
	}
	if a.Local() {
		if d, ok := microdrop.DeviceOf(r); ok {
			return Identity{Viewer: claims.Viewer{UserID: d.UserID, Login: d.Login}, CSRF: d.CSRF}, true
		}
	}
	return Identity{}, false
}

// Viewer is the claims API's identity hook (claims.Identity).
func (a *Auth) Viewer(r *http.Request) (claims.Viewer, bool) {
	id, ok := a.Identify(r)
	return id.Viewer, ok
}

// EnsureLocal gives a browser its device identity in local mode.
func (a *Auth) EnsureLocal(w http.ResponseWriter, r *http.Request) {
	if a.Local() {
		microdrop.EnsureDevice(w, r, a.secure, a.d.Now())
	}
}

// safeNext keeps the return address on our own claim pages.
func safeNext(next string) string {
	if strings.HasPrefix(next, "/c/") && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return "/"
}

var userIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// subject is the claims user id of a provider's sub. Twitch's sub is the
// Twitch user id EventSub names in chat, so a viewer is one person in chat
// and on the web (one per-user cap). Other providers are prefixed with their
// name; a sub that is not a plain id is hashed.
func (p *provider) subject(sub string) string {
	if p.cfg.BareSubject && userIDPattern.MatchString(sub) {
		return sub
	}
	if id := p.cfg.Name + "-" + sub; userIDPattern.MatchString(id) {
		return id
	}
	h := sha256.Sum256([]byte(sub))
	return p.cfg.Name + "-" + hex.EncodeToString(h[:12])
}

func (a *Auth) discover(ctx context.Context, p *provider) (*oidc.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.op != nil {
		return p.op, nil
	}
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, a.d.HTTPClient), p.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	p.op = op
	return op, nil
}

func (a *Auth) oauth(p *provider, op *oidc.Provider) *oauth2.Config {
	ep := op.Endpoint()
	if p.cfg.SecretInBody {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, Endpoint: ep,
		RedirectURL: a.RedirectURI(p.cfg.Name), Scopes: append([]string{oidc.ScopeOpenID}, p.cfg.Scopes...)}
}

func (a *Auth) fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}

func (a *Auth) start(w http.ResponseWriter, r *http.Request) {
	p := a.byName[r.PathValue("provider")]
	if p == nil {
		a.fail(w, http.StatusNotFound, "no sign-in provider "+strings.ToValidUTF8(r.PathValue("provider"), "")+" is configured")
		return
	}
	op, err := a.discover(r.Context(), p)
	if err != nil {
		a.log.Warn("provider discovery failed", "provider", p.cfg.Name, "err", err)
		a.fail(w, http.StatusBadGateway, "sign-in with "+p.cfg.Label+" is unavailable right now; try again in a minute")
		return
	}
	state, nonce, verifier := microdrop.RandomID(), microdrop.RandomID(), oauth2.GenerateVerifier()
	pend := a.d.Sessions.Create(microdrop.Session{Kind: microdrop.SessionPending, Provider: p.cfg.Name,
		Data: map[string]string{"state": state, "nonce": nonce, "verifier": verifier, "next": safeNext(r.URL.Query().Get("next"))}}, PendingTTL)
	http.SetCookie(w, microdrop.SessionCookie(PendingCookie, pend.ID, pend.Expires, a.secure, http.SameSiteLaxMode))
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	if p.cfg.ClaimsParameter {
		c := fmt.Sprintf(`{"id_token":{%q:null},"userinfo":{%q:null}}`, p.cfg.UsernameClaim, p.cfg.UsernameClaim)
		opts = append(opts, oauth2.SetAuthURLParam("claims", c))
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, a.oauth(p, op).AuthCodeURL(state, opts...), http.StatusFound)
}

func (a *Auth) callback(w http.ResponseWriter, r *http.Request) {
	p := a.byName[r.PathValue("provider")]
	if p == nil {
		a.fail(w, http.StatusNotFound, "no such sign-in provider")
		return
	}
	c, err := r.Cookie(PendingCookie)
	if err != nil {
		a.fail(w, http.StatusBadRequest, "this sign-in did not start in this browser (or took longer than 10 minutes); start again from the claim page")
		return
	}
	// The pending sign-in is used once, whatever happens next.
	pend, ok := a.d.Sessions.Take(c.Value, microdrop.SessionPending)
	http.SetCookie(w, microdrop.SessionCookie(PendingCookie, "", time.Time{}, a.secure, http.SameSiteLaxMode))
	if !ok || pend.Provider != p.cfg.Name {
		a.fail(w, http.StatusBadRequest, "this sign-in expired or was already used; start again from the claim page")
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pend.Data["state"])) != 1 {
		a.log.Warn("sign-in state mismatch", "provider", p.cfg.Name, "remote", r.RemoteAddr)
		a.fail(w, http.StatusBadRequest, "the sign-in answer does not belong to this browser's sign-in; start again from the claim page")
		return
	}
	if e := q.Get("error"); e != "" {
		a.fail(w, http.StatusUnauthorized, "sign-in with "+p.cfg.Label+" was not completed ("+strings.ToValidUTF8(e, "")[:min(len(e), 64)]+"); start again from the claim page")
		return
	}
	if q.Get("code") == "" || len(q.Get("code")) > 2048 {
		a.fail(w, http.StatusBadRequest, "the sign-in answer carries no code")
		return
	}
	op, err := a.discover(r.Context(), p)
	if err != nil {
		a.fail(w, http.StatusBadGateway, "sign-in with "+p.cfg.Label+" is unavailable right now")
		return
	}
	ctx := oidc.ClientContext(r.Context(), a.d.HTTPClient)
	tok, err := a.oauth(p, op).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pend.Data["verifier"]))
	if err != nil {
		a.log.Warn("code exchange failed", "provider", p.cfg.Name, "err", err)
		a.fail(w, http.StatusUnauthorized, "sign-in with "+p.cfg.Label+" failed: the provider refused the code; start again")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		a.fail(w, http.StatusBadGateway, p.cfg.Label+" sent no ID token")
		return
	}
	idt, err := op.VerifierContext(ctx, &oidc.Config{ClientID: p.cfg.ClientID, Now: a.d.Now}).Verify(ctx, raw)
	if err != nil {
		a.log.Warn("id token refused", "provider", p.cfg.Name, "err", err)
		a.fail(w, http.StatusUnauthorized, "the sign-in could not be verified; start again")
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pend.Data["nonce"])) != 1 {
		a.log.Warn("id token nonce mismatch", "provider", p.cfg.Name)
		a.fail(w, http.StatusUnauthorized, "the sign-in could not be verified (replayed ID token); start again")
		return
	}
	var all map[string]any
	if err := idt.Claims(&all); err != nil {
		a.fail(w, http.StatusBadGateway, "the ID token could not be read")
		return
	}
	name, _ := all[p.cfg.UsernameClaim].(string)
	subject := p.subject(idt.Subject)
	if idt.Subject == "" {
		a.fail(w, http.StatusBadGateway, "the provider's user id is unusable")
		return
	}
	name = microdrop.DisplayText(name, 25)
	if name == "" {
		name = p.cfg.Label + " viewer"
	}
	// A fresh session id at sign-in: nothing planted before it carries over.
	if old, err := r.Cookie(SessionCookie); err == nil {
		a.d.Sessions.Revoke(old.Value)
	}
	data := map[string]string{}
	if p.cfg.HelixURL != "" {
		if created, err := a.accountCreated(ctx, p, tok.AccessToken, idt.Subject); err != nil {
			// Without it the viewer is still who they are; stages that need
			// an account age just do not admit them.
			a.log.Warn("account age unavailable", "provider", p.cfg.Name, "err", err)
		} else {
			data["account_created"] = created.UTC().Format(time.RFC3339)
		}
	}
	s := a.d.Sessions.Create(microdrop.Session{Kind: microdrop.SessionViewer, Subject: subject, Provider: p.cfg.Name,
		Login: name, Data: data}, a.d.SessionTTL)
	http.SetCookie(w, microdrop.SessionCookie(SessionCookie, s.ID, s.Expires, a.secure, http.SameSiteLaxMode))
	a.log.Info("viewer signed in", "provider", p.cfg.Name)
	http.Redirect(w, r, pend.Data["next"], http.StatusSeeOther)
}

// accountCreated asks Twitch's Get Users, with the viewer's own token, when
// their account was made.
func (a *Auth) accountCreated(ctx context.Context, p *provider, accessToken, sub string) (time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(p.cfg.HelixURL, "/")+"/users", nil)
	if err != nil {
		return time.Time{}, err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Client-Id", p.cfg.ClientID)
	resp, err := a.d.HTTPClient.Do(req)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("get users: %s", resp.Status)
	}
	var body struct {
		Data []struct {
			ID        string    `json:"id"`
			CreatedAt time.Time `json:"created_at"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return time.Time{}, fmt.Errorf("get users: %w", err)
	}
	for _, u := range body.Data {
		if u.ID == sub && !u.CreatedAt.IsZero() {
			return u.CreatedAt, nil
		}
	}
	return time.Time{}, errors.New("get users: the token's own user is not in the answer")
}

func (a *Auth) signout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		a.fail(w, http.StatusBadRequest, "the form could not be read")
		return
	}
	id, ok := a.Session(r)
	if !ok {
		http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
		return
	}
	if !microdrop.SameOrigin(r) || !(microdrop.Session{CSRF: id.CSRF}).CheckCSRF(r.PostFormValue("csrf")) {
		a.fail(w, http.StatusForbidden, "sign out from this site's own page")
		return
	}
	a.d.Sessions.Revoke(id.SessionID)
	http.SetCookie(w, microdrop.SessionCookie(SessionCookie, "", time.Time{}, a.secure, http.SameSiteLaxMode))
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}
