package twitchtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// The OpenID provider follows Twitch's "Using OIDC to get OAuth Access
// Tokens" guide (authorization code grant flow):
//
//   - discovery at {AuthURL}/.well-known/openid-configuration, issuer
//     {AuthURL} (Twitch: https://id.twitch.tv/oauth2, no trailing slash);
//   - GET {AuthURL}/authorize with client_id, redirect_uri (exactly a
//     registered one), response_type=code, scope containing openid, and
//     optional state, nonce, claims (a JSON object naming the id_token and
//     userinfo claims wanted) and, beyond Twitch, code_challenge with
//     code_challenge_method=S256; the user picks an account on a page and is
//     redirected back with code and the state echoed;
//   - POST {AuthURL}/token with client_id, client_secret, code,
//     grant_type=authorization_code and redirect_uri in the form body
//     (client_secret_post: a Basic header is not read); a code works once;
//   - the id_token is an RS256 JWT signed with the key at {AuthURL}/keys,
//     carrying iss, sub, aud, azp, exp, iat, nonce (when sent) and only the
//     optional claims asked for (preferred_username, picture);
//   - GET {AuthURL}/userinfo with "Authorization: Bearer <access token>".

// OIDCUser is an account that can sign in at the provider's authorize page.
type OIDCUser struct {
	ID          string // sub
	Login       string // preferred_username
	DisplayName string
	// CreatedAt is the account's creation, as Get Users reports it to the
	// user's own access token (zero: 2021-01-01).
	CreatedAt time.Time
}

// CodeTTL is how long an authorization code stays usable.
const CodeTTL = 10 * time.Minute

type authCode struct {
	user                  OIDCUser
	clientID, redirectURI string
	nonce                 string
	challenge             string
	idClaims, infoClaims  []string
	expires               time.Time
}

type accessGrant struct {
	user       OIDCUser
	clientID   string
	infoClaims []string
	expires    time.Time
}

type idProvider struct {
	mu        sync.Mutex
	key       *rsa.PrivateKey
	kid       string
	secret    string
	redirects []string
	users     []OIDCUser
	codes     map[string]*authCode
	grants    map[string]*accessGrant
	tokenReqs int
}

func newIDProvider(secret string) *idProvider {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err) // crypto/rand failing is not a test outcome
	}
	if secret == "" {
		secret = "testclientsecret"
	}
	return &idProvider{key: key, kid: newID(), secret: secret,
		codes: make(map[string]*authCode), grants: make(map[string]*accessGrant)}
}

func (s *Server) mountOIDC(mux *http.ServeMux) {
	mux.HandleFunc("GET /oauth2/.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("GET /oauth2/authorize", s.authorizePage)
	mux.HandleFunc("POST /oauth2/authorize", s.authorizeSubmit)
	mux.HandleFunc("GET /oauth2/keys", s.jwks)
	mux.HandleFunc("GET /oauth2/userinfo", s.userinfo)
	mux.HandleFunc("POST /oauth2/userinfo", s.userinfo)
}

// withOIDC answers Get Users for access tokens the OpenID provider issued
// (a signed-in viewer asking about themself, as Twitch allows any user
// token to); every other request goes to next.
func (s *Server) withOIDC(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.idp.mu.Lock()
		g := s.idp.grants[tok]
		s.idp.mu.Unlock()
		if r.Method != http.MethodGet || r.URL.Path != "/helix/users" || !bearer || g == nil {
			next.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("Client-Id") != g.clientID || time.Now().After(g.expires) {
			helixError(w, http.StatusUnauthorized, "Client ID and OAuth token do not match")
			return
		}
		q := r.URL.Query()
		u := g.user
		if (len(q["id"]) > 0 && !slices.Contains(q["id"], u.ID)) || (len(q["login"]) > 0 && !slices.Contains(q["login"], u.Login)) {
			writeJSON(w, http.StatusOK, map[string]any{"data": []any{}})
			return
		}
		created := u.CreatedAt
		if created.IsZero() {
			created = time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": []map[string]any{{"id": u.ID, "login": u.Login, "display_name": u.DisplayName,
			"type": "", "broadcaster_type": "", "description": "", "profile_image_url": "", "offline_image_url": "",
			"view_count": 0, "created_at": created.UTC().Format(time.RFC3339)}}})
	})
}

// ClientSecret is the OAuth client secret the token endpoint expects.
func (s *Server) ClientSecret() string { return s.idp.secret }

// Issuer is the id_token issuer, which is also the discovery base.
func (s *Server) Issuer() string { return s.AuthURL() }

// RegisterRedirect adds an OAuth redirect URI, as the Twitch developer
// console does; authorize and token accept only exact matches.
func (s *Server) RegisterRedirect(uri string) {
	s.idp.mu.Lock()
	s.idp.redirects = append(s.idp.redirects, uri)
	s.idp.mu.Unlock()
}

// AddOIDCUser makes an account available on the authorize page.
func (s *Server) AddOIDCUser(u OIDCUser) {
	s.idp.mu.Lock()
	s.idp.users = append(s.idp.users, u)
	s.idp.mu.Unlock()
}

// TokenRequests counts calls to the token endpoint with grant_type=authorization_code.
func (s *Server) TokenRequests() int {
	s.idp.mu.Lock()
	defer s.idp.mu.Unlock()
	return s.idp.tokenReqs
}

func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) {
	base := s.AuthURL()
	writeJSON(w, http.StatusOK, map[string]any{
		"authorization_endpoint":                base + "/authorize",
		"claims_parameter_supported":            true,
		"claims_supported":                      []string{"aud", "exp", "iat", "iss", "sub", "azp", "nonce", "preferred_username", "picture", "updated_at", "email", "email_verified"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"issuer":                                base,
		"jwks_uri":                              base + "/keys",
		"response_types_supported":              []string{"id_token", "code", "token", "code id_token", "token id_token"},
		"scopes_supported":                      []string{"openid"},
		"subject_types_supported":               []string{"public"},
		"token_endpoint":                        base + "/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post"},
		"userinfo_endpoint":                     base + "/userinfo",
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	pub := s.idp.key.PublicKey
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": s.idp.kid,
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// authRequest is a checked authorize request.
type authRequest struct {
	q                    url.Values
	idClaims, infoClaims []string
}

// checkAuthorize validates an authorize request. A bad client or redirect
// URI is shown to the user (never redirected to an unregistered place);
// other errors go back to the redirect URI as error=... .
func (s *Server) checkAuthorize(q url.Values) (authRequest, string, string) {
	ar := authRequest{q: q}
	if q.Get("client_id") != s.opt.ClientID {
		return ar, "invalid client", ""
	}
	s.idp.mu.Lock()
	registered := slices.Contains(s.idp.redirects, q.Get("redirect_uri"))
	s.idp.mu.Unlock()
	if !registered {
		return ar, "redirect mismatch: " + q.Get("redirect_uri") + " is not registered for this client", ""
	}
	if q.Get("response_type") != "code" {
		return ar, "", "unsupported_response_type"
	}
	if !slices.Contains(strings.Fields(q.Get("scope")), "openid") {
		return ar, "", "invalid_scope"
	}
	if c := q.Get("code_challenge"); c != "" {
		if q.Get("code_challenge_method") != "S256" || len(c) < 43 || len(c) > 128 {
			return ar, "", "invalid_request"
		}
	}
	if raw := q.Get("claims"); raw != "" {
		var cl struct {
			IDToken  map[string]json.RawMessage `json:"id_token"`
			Userinfo map[string]json.RawMessage `json:"userinfo"`
		}
		if err := json.Unmarshal([]byte(raw), &cl); err != nil {
			return ar, "", "invalid_request"
		}
		for k := range cl.IDToken {
			ar.idClaims = append(ar.idClaims, k)
		}
		for k := range cl.Userinfo {
			ar.infoClaims = append(ar.infoClaims, k)
		}
	}
	return ar, "", ""
}

func redirectError(w http.ResponseWriter, r *http.Request, q url.Values, code string) {
	u, _ := url.Parse(q.Get("redirect_uri"))
	v := u.Query()
	v.Set("error", code)
	v.Set("error_description", "the request was refused: "+code)
	if st := q.Get("state"); st != "" {
		v.Set("state", st)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

var authorizeTmpl = template.Must(template.New("authorize").Parse(`<!doctype html>
<html><head><meta name="viewport" content="width=device-width"><title>Sign in (test provider)</title></head>
<body><h1>Sign in to continue</h1>
{{range .Users}}<form method="post" action="authorize">
{{range $k, $vs := $.Params}}{{range $vs}}<input type="hidden" name="{{$k}}" value="{{.}}">{{end}}{{end}}
<input type="hidden" name="user" value="{{.ID}}">
<button type="submit" id="signin-{{.Login}}">Sign in as {{.DisplayName}}</button></form>
{{end}}
<form method="post" action="authorize">
{{range $k, $vs := $.Params}}{{range $vs}}<input type="hidden" name="{{$k}}" value="{{.}}">{{end}}{{end}}
<button type="submit" name="deny" value="1" id="deny">Cancel</button></form>
</body></html>`))

func (s *Server) authorizePage(w http.ResponseWriter, r *http.Request) {
	ar, bad, redirErr := s.checkAuthorize(r.URL.Query())
	if bad != "" {
		http.Error(w, bad, http.StatusBadRequest)
		return
	}
	if redirErr != "" {
		redirectError(w, r, ar.q, redirErr)
		return
	}
	s.idp.mu.Lock()
	users := slices.Clone(s.idp.users)
	s.idp.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = authorizeTmpl.Execute(w, map[string]any{"Users": users, "Params": ar.q})
}

func (s *Server) authorizeSubmit(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	q := url.Values{}
	for k, v := range r.PostForm {
		if k != "user" && k != "deny" {
			q[k] = v
		}
	}
	ar, bad, redirErr := s.checkAuthorize(q)
	if bad != "" {
		http.Error(w, bad, http.StatusBadRequest)
		return
	}
	if redirErr == "" && r.PostForm.Get("deny") != "" {
		redirErr = "access_denied"
	}
	s.idp.mu.Lock()
	var user *OIDCUser
	for i := range s.idp.users {
		if s.idp.users[i].ID == r.PostForm.Get("user") {
			user = &s.idp.users[i]
		}
	}
	if redirErr == "" && user == nil {
		redirErr = "access_denied"
	}
	if redirErr != "" {
		s.idp.mu.Unlock()
		redirectError(w, r, q, redirErr)
		return
	}
	code := newID()
	s.idp.codes[code] = &authCode{user: *user, clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"),
		nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), idClaims: ar.idClaims, infoClaims: ar.infoClaims,
		expires: time.Now().Add(CodeTTL)}
	s.idp.mu.Unlock()
	u, _ := url.Parse(q.Get("redirect_uri"))
	v := u.Query()
	v.Set("code", code)
	v.Set("scope", q.Get("scope"))
	if st := q.Get("state"); st != "" {
		v.Set("state", st)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// token: POST /oauth2/token. grant_type=refresh_token keeps the bot's
// refresh behaviour; authorization_code is the OIDC exchange.
func (s *Server) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err == nil && r.PostForm.Get("grant_type") == "authorization_code" {
		s.exchangeCode(w, r)
		return
	}
	s.refresh(w, r)
}

func tokenError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"status": status, "message": msg})
}

func (s *Server) exchangeCode(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm // body only: Twitch reads the client and secret from the form
	s.idp.mu.Lock()
	s.idp.tokenReqs++
	c, ok := s.idp.codes[f.Get("code")]
	// A code is spent by its first presentation, right or wrong, so a
	// stolen code raced against its owner works at most once.
	delete(s.idp.codes, f.Get("code"))
	s.idp.mu.Unlock()
	switch {
	case f.Get("client_id") != s.opt.ClientID || subtle.ConstantTimeCompare([]byte(f.Get("client_secret")), []byte(s.idp.secret)) != 1:
		tokenError(w, http.StatusForbidden, "invalid client secret")
	case !ok || time.Now().After(c.expires) || c.clientID != f.Get("client_id"):
		tokenError(w, http.StatusBadRequest, "Invalid authorization code")
	case c.redirectURI != f.Get("redirect_uri"):
		tokenError(w, http.StatusBadRequest, "Parameter redirect_uri does not match registered URI")
	case c.challenge != "" && pkceS256(f.Get("code_verifier")) != c.challenge:
		tokenError(w, http.StatusBadRequest, "code_verifier does not match the code_challenge")
	case c.challenge == "" && f.Get("code_verifier") != "":
		tokenError(w, http.StatusBadRequest, "code_verifier sent without a code_challenge")
	default:
		now := time.Now()
		claims := map[string]any{"iss": s.AuthURL(), "sub": c.user.ID, "aud": c.clientID, "azp": c.clientID,
			"exp": now.Add(15 * time.Minute).Unix(), "iat": now.Unix()}
		if c.nonce != "" {
			claims["nonce"] = c.nonce
		}
		addClaims(claims, c.user, c.idClaims)
		idToken, err := s.sign(claims)
		if err != nil {
			tokenError(w, http.StatusInternalServerError, err.Error())
			return
		}
		access := newID()
		s.idp.mu.Lock()
		s.idp.grants[access] = &accessGrant{user: c.user, clientID: c.clientID, infoClaims: c.infoClaims, expires: now.Add(4 * time.Hour)}
		s.idp.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"access_token": access, "expires_in": 14400, "id_token": idToken,
			"refresh_token": newID(), "scope": []string{"openid"}, "token_type": "bearer"})
	}
}

func pkceS256(verifier string) string {
	if len(verifier) < 43 || len(verifier) > 128 {
		return "" // RFC 7636: a verifier is 43 to 128 characters
	}
	sum := sha256.Sum256([]byte(verifier))
	return b64(sum[:])
}

// addClaims adds only the optional claims asked for: Twitch leaves out
// everything not requested through the claims parameter.
func addClaims(m map[string]any, u OIDCUser, wanted []string) {
	for _, k := range wanted {
		switch k {
		case "preferred_username":
			m[k] = u.Login
		case "picture":
			m[k] = "https://static-cdn.example/" + u.Login + ".png"
		case "updated_at":
			m[k] = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
		}
	}
}

func (s *Server) sign(claims map[string]any) (string, error) {
	h, err := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": s.idp.kid})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := b64(h) + "." + b64(p)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.idp.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign id token: %w", err)
	}
	return input + "." + b64(sig), nil
}

func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.idp.mu.Lock()
	g := s.idp.grants[tok]
	s.idp.mu.Unlock()
	if !ok || g == nil || time.Now().After(g.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		tokenError(w, http.StatusUnauthorized, "invalid access token")
		return
	}
	now := time.Now()
	m := map[string]any{"aud": g.clientID, "exp": g.expires.Unix(), "iat": now.Unix(), "iss": s.AuthURL(), "sub": g.user.ID}
	addClaims(m, g.user, g.infoClaims)
	writeJSON(w, http.StatusOK, m)
}

// SignIn plays the user at the authorize page: authorizeURL is where the
// app sent the browser; the form is posted as userID picking their account,
// and client follows the redirect back to the app (its cookie jar carries
// the app's sign-in state). It returns the app's final answer.
func (s *Server) SignIn(client *http.Client, authorizeURL, userID string) (*http.Response, error) {
	u, err := url.Parse(authorizeURL)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(authorizeURL, s.AuthURL()+"/authorize") {
		return nil, fmt.Errorf("twitchtest: %s is not this provider's authorize endpoint", authorizeURL)
	}
	form := u.Query()
	form.Set("user", userID)
	return client.PostForm(s.AuthURL()+"/authorize", form)
}
