package main

import (
	"context"
	"strings"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/overlay/viewer"
)

// startViewers wires viewer sign-in: /auth/... routes, the identity every
// web claim carries, and the log lines that say what to register at each
// provider. With no provider configured it says plainly that local mode is
// for trying microdrop out.
func (m *Main) startViewers(context.Context) error {
	a, err := viewer.New(viewer.Deps{Providers: m.Config.viewerProviders(), PublicURL: m.publicURL(),
		Sessions: microdrop.NewSessions(m.Now), Logger: m.Logger, Now: m.Now})
	if err != nil {
		return err
	}
	m.Viewers = a
	m.api.SetIdentity(a)
	a.Routes(m.Mux)
	log := m.Logger.With("component", "viewer")
	if a.Local() {
		log.Warn("local mode: no viewer sign-in provider is configured, so a browser is an identity; fine for trying microdrop out, not for real drops (set twitch.client_id and twitch.client_secret, or signin.providers)")
		return nil
	}
	for _, l := range a.Links("/") {
		log.Info("viewer sign-in on; register this redirect URI with the provider", "provider", l.Name, "redirect_uri", a.RedirectURI(l.Name))
	}
	if !strings.HasPrefix(m.publicURL(), "https://") {
		log.Warn("public_url is not https: session cookies are not Secure; use https in production")
	}
	return nil
}
