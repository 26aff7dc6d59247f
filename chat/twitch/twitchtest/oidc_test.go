package twitchtest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/microdrop/microdrop/chat/twitch/twitchtest"
)

// callback records what the provider redirected back with.
type callback struct{ got chan url.Values }

func (c callback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.got <- r.URL.Query()
	w.WriteHeader(http.StatusNoContent)
}

func setup(t *testing.T) (*twitchtest.Server, *oidc.Provider, *oauth2.Config, chan url.Values) {
	t.Helper()
	tw := twitchtest.New(t, twitchtest.Options{})
	tw.AddOIDCUser(twitchtest.OIDCUser{ID: "555", Login: "viewer1", DisplayName: "Viewer1"})
	cb := callback{got: make(chan url.Values, 1)}
	app := httptest.NewServer(cb)
	t.Cleanup(app.Close)
	tw.RegisterRedirect(app.URL + "/auth/callback")
	p, err := oidc.NewProvider(context.Background(), tw.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	cfg := &oauth2.Config{ClientID: tw.Options().ClientID, ClientSecret: tw.ClientSecret(), RedirectURL: app.URL + "/auth/callback",
		Scopes: []string{oidc.ScopeOpenID}, Endpoint: oauth2.Endpoint{AuthURL: p.Endpoint().AuthURL, TokenURL: p.Endpoint().TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	return tw, p, cfg, cb.got
}

func signIn(t *testing.T, tw *twitchtest.Server, authURL string, got chan url.Values) url.Values {
	t.Helper()
	res, err := tw.SignIn(http.DefaultClient, authURL, "555")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return <-got
}

func TestOIDCCodeFlowWithPKCEAndClaims(t *testing.T) {
	tw, p, cfg, got := setup(t)
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	claims := `{"id_token":{"preferred_username":null},"userinfo":{"preferred_username":null}}`
	authURL := cfg.AuthCodeURL("st-1", oidc.Nonce("n-1"), oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("claims", claims))
	q := signIn(t, tw, authURL, got)
	if q.Get("state") != "st-1" || q.Get("code") == "" {
		t.Fatalf("callback %v: want state echoed and a code", q)
	}
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := p.Verifier(&oidc.Config{ClientID: cfg.ClientID}).Verify(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Username string `json:"preferred_username"`
	}
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != "555" || idt.Nonce != "n-1" || c.Username != "viewer1" {
		t.Fatalf("id token sub=%q nonce=%q preferred_username=%q", idt.Subject, idt.Nonce, c.Username)
	}
	ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatal(err)
	}
	if ui.Subject != "555" {
		t.Fatalf("userinfo sub %q", ui.Subject)
	}
	// The code is spent.
	if _, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("a code worked twice")
	}
}

func TestOIDCPreferredUsernameOnlyWhenAsked(t *testing.T) {
	tw, p, cfg, got := setup(t)
	q := signIn(t, tw, cfg.AuthCodeURL("s"), got)
	tok, err := cfg.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: cfg.ClientID}).Verify(context.Background(), tok.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = idt.Claims(&m)
	if _, ok := m["preferred_username"]; ok {
		t.Fatalf("preferred_username present without the claims parameter: %v", m)
	}
}

func TestOIDCRefusals(t *testing.T) {
	tw, _, cfg, got := setup(t)
	ctx := context.Background()
	t.Run("unregistered redirect", func(t *testing.T) {
		c := *cfg
		c.RedirectURL += "/x"
		res, err := http.Get(c.AuthCodeURL("s"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", res.StatusCode)
		}
	})
	t.Run("wrong verifier", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		q := signIn(t, tw, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), got)
		if _, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
			t.Fatal("wrong code_verifier accepted")
		}
		if _, err := cfg.Exchange(ctx, q.Get("code")); err == nil {
			t.Fatal("missing code_verifier accepted")
		}
	})
	t.Run("secret in basic header", func(t *testing.T) {
		q := signIn(t, tw, cfg.AuthCodeURL("s"), got)
		c := *cfg
		c.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
		if _, err := c.Exchange(ctx, q.Get("code")); err == nil {
			t.Fatal("client secret in a Basic header accepted; Twitch reads it from the body")
		}
	})
	t.Run("redirect_uri differs at token", func(t *testing.T) {
		q := signIn(t, tw, cfg.AuthCodeURL("s"), got)
		c := *cfg
		c.RedirectURL = strings.TrimSuffix(c.RedirectURL, "/auth/callback") + "/other"
		if _, err := c.Exchange(ctx, q.Get("code")); err == nil {
			t.Fatal("token request with another redirect_uri accepted")
		}
	})
	t.Run("no openid scope", func(t *testing.T) {
		c := *cfg
		c.Scopes = []string{"user:read:email"}
		res, err := tw.SignIn(http.DefaultClient, c.AuthCodeURL("s"), "555")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if q := <-got; q.Get("error") != "invalid_scope" || q.Get("code") != "" {
			t.Fatalf("callback %v", q)
		}
	})
	t.Run("discovery", func(t *testing.T) {
		res, err := http.Get(tw.Issuer() + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var d map[string]any
		_ = json.NewDecoder(res.Body).Decode(&d)
		if d["issuer"] != tw.Issuer() || d["claims_parameter_supported"] != true {
			t.Fatalf("discovery %v", d)
		}
	})
}
