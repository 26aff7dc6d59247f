// Package viewer signs viewers in on the pages they see (the claim page)
// through OpenID Connect: the authorization code flow with state, nonce and
// PKCE, the ID token verified by go-oidc (signature, issuer, audience,
// expiry) and the state and nonce checked here, then a server-side session.
// Twitch is one provider among any others configured by issuer.
//
// It also answers "who is this?" for every web claim path: a signed-in
// viewer, or, in local mode only (no provider configured), the browser's
// device identity. It never takes a typed name as an identity, and it never
// hands out pickup codes itself: it only names the caller.
package viewer
