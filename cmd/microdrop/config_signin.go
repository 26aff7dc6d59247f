package main

import (
	"net"
	"net/netip"
	"strings"

	"github.com/microdrop/microdrop/overlay/viewer"
)

// SignInConfig is viewer sign-in on the claim page. Twitch is built in: it
// is on when twitch.client_id and twitch.client_secret are set (issuer
// twitch.auth_url). Any other OpenID Connect provider is added by issuer,
// client id and secret. With no provider at all microdrop is in local mode.
type SignInConfig struct {
	// DisableTwitch keeps Twitch sign-in off although its client is set.
	DisableTwitch bool `yaml:"disable_twitch" env:"SIGNIN_DISABLE_TWITCH"`
	// Providers are further OpenID Connect providers (Google for YouTube
	// viewers: issuer https://accounts.google.com).
	Providers []OIDCProviderConfig `yaml:"providers"`
	// One more provider from the environment, for containers.
	EnvName         string `yaml:"-" env:"SIGNIN_NAME"`
	EnvIssuer       string `yaml:"-" env:"SIGNIN_ISSUER"`
	EnvClientID     string `yaml:"-" env:"SIGNIN_CLIENT_ID"`
	EnvClientSecret string `yaml:"-" env:"SIGNIN_CLIENT_SECRET"`
}

// OIDCProviderConfig is one OpenID Connect provider.
type OIDCProviderConfig struct {
	// Name is the short name in the redirect URI: {public_url}/auth/{name}/callback.
	Name         string   `yaml:"name"`
	Label        string   `yaml:"label"`
	Issuer       string   `yaml:"issuer"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret string   `yaml:"client_secret"`
	Scopes       []string `yaml:"scopes"`
	// UsernameClaim is the ID token claim shown as the viewer's name
	// (default "name" for generic providers).
	UsernameClaim string `yaml:"username_claim"`
}

// FrontConfig is the HTTP front door: timeouts and per-client limits.
type FrontConfig struct {
	// TrustedProxies are the addresses (IPs or CIDRs) whose
	// X-Forwarded-For is believed; from anyone else it is ignored.
	TrustedProxies []string `yaml:"trusted_proxies" env:"TRUSTED_PROXIES"`
	// MaxConnsPerIP caps open connections per client address.
	MaxConnsPerIP int `yaml:"max_conns_per_ip" env:"MAX_CONNS_PER_IP"`
	// RatePerIP and BurstPerIP bound requests per second per client on
	// public routes; SignInRate and ClaimRate bound sign-in starts and web
	// claims per minute per client.
	RatePerIP  float64 `yaml:"rate_per_ip" env:"RATE_PER_IP"`
	BurstPerIP int     `yaml:"burst_per_ip" env:"BURST_PER_IP"`
	SignInRate float64 `yaml:"signin_per_minute" env:"SIGNIN_PER_MINUTE"`
	ClaimRate  float64 `yaml:"claims_per_minute" env:"CLAIMS_PER_MINUTE"`
	// MaxOverlayClients caps the overlay WebSocket connections (OBS
	// sources and viewers' overlays) across all channels.
	MaxOverlayClients int `yaml:"max_overlay_clients" env:"MAX_OVERLAY_CLIENTS"`
}

// viewerProviders lists the sign-in providers the config turns on.
func (c *Config) viewerProviders() []viewer.Provider {
	var ps []viewer.Provider
	t := c.Twitch
	if t.ClientID != "" && t.ClientSecret != "" && !c.SignIn.DisableTwitch {
		issuer := t.AuthURL
		if issuer == "" {
			issuer = "https://id.twitch.tv/oauth2"
		}
		tp := viewer.Twitch(issuer, t.ClientID, t.ClientSecret)
		if t.APIURL != "" {
			tp.HelixURL = t.APIURL
		}
		ps = append(ps, tp)
	}
	all := c.SignIn.Providers
	if c.SignIn.EnvIssuer != "" {
		name := c.SignIn.EnvName
		if name == "" {
			name = "oidc"
		}
		all = append(all, OIDCProviderConfig{Name: name, Issuer: c.SignIn.EnvIssuer, ClientID: c.SignIn.EnvClientID, ClientSecret: c.SignIn.EnvClientSecret})
	}
	for _, p := range all {
		claim := p.UsernameClaim
		if claim == "" {
			claim = "name"
		}
		scopes := p.Scopes
		if len(scopes) == 0 {
			scopes = []string{"profile"}
		}
		ps = append(ps, viewer.Provider{Name: p.Name, Label: p.Label, Issuer: strings.TrimRight(p.Issuer, "/"), ClientID: p.ClientID,
			ClientSecret: p.ClientSecret, Scopes: scopes, UsernameClaim: claim})
	}
	return ps
}

func (c *Config) validateSignIn(bad func(string, ...any)) {
	for i, p := range c.viewerProviders() {
		switch {
		case p.Name == "" || strings.Trim(p.Name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "":
			bad("signin.providers[%d].name: lowercase letters, digits, _ or - (it goes into the redirect URI)", i)
		case !strings.HasPrefix(p.Issuer, "https://") && !strings.HasPrefix(p.Issuer, "http://127.0.0.1") && !strings.HasPrefix(p.Issuer, "http://localhost"):
			bad("signin %s: issuer %q must be an https:// URL", p.Name, p.Issuer)
		case p.ClientID == "" || p.ClientSecret == "":
			bad("signin %s: client_id and client_secret are both needed", p.Name)
		}
	}
	for _, tp := range c.Front.TrustedProxies {
		if _, err := netip.ParsePrefix(tp); err != nil {
			if net.ParseIP(tp) == nil {
				bad("front.trusted_proxies: %q is not an IP address or CIDR", tp)
			}
		}
	}
	f := c.Front
	if f.MaxConnsPerIP < 1 || f.RatePerIP <= 0 || f.BurstPerIP < 1 || f.SignInRate <= 0 || f.ClaimRate <= 0 {
		bad("front: max_conns_per_ip, rate_per_ip, burst_per_ip, signin_per_minute and claims_per_minute must be above 0")
	}
	if f.MaxOverlayClients < 1 || f.MaxOverlayClients > 1_000_000 {
		bad("front.max_overlay_clients: between 1 and 1000000 (each is an open file: raise the process's open-file limit to match)")
	}
}
