package microdrop

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"sync"
	"time"
)

// Session is one signed-in browser, held server-side: the cookie carries
// only its random id, so signing out (Revoke) ends it everywhere at once.
type Session struct {
	ID string
	// Kind separates admin sessions from viewer sessions and from the
	// short-lived state of a sign-in under way: one store, no crossover.
	Kind string
	// Subject is the verified user: for viewers "provider:sub".
	Subject  string
	Provider string
	Login    string
	Display  string
	// CSRF is this session's form token; it dies with the session.
	CSRF    string
	Expires time.Time
	// Data holds a pending sign-in's state, nonce and PKCE verifier.
	Data map[string]string
}

// Session kinds.
const (
	SessionAdmin   = "admin"
	SessionViewer  = "viewer"
	SessionPending = "pending"
	SessionDevice  = "device"
)

// MaxSessions bounds the store so a flood of sign-in starts cannot exhaust
// memory; past it the oldest-expiring pending entries go first.
const MaxSessions = 200_000

// Sessions is the in-memory session store. The zero value is not usable:
// make one with NewSessions.
type Sessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*Session
}

// NewSessions returns an empty store; now is the clock expiry follows.
func NewSessions(now func() time.Time) *Sessions {
	if now == nil {
		now = time.Now
	}
	return &Sessions{now: now, m: make(map[string]*Session)}
}

// RandomID returns 32 random bytes in hex.
func RandomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics on a broken source)
	return hex.EncodeToString(b)
}

// Create stores s with a fresh id and CSRF token, living ttl.
func (st *Sessions) Create(s Session, ttl time.Duration) Session {
	s.ID, s.CSRF = RandomID(), RandomID()[:32]
	s.Expires = st.now().Add(ttl)
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.m) >= MaxSessions {
		st.sweepLocked()
	}
	if len(st.m) >= MaxSessions {
		st.evictPendingLocked()
	}
	cp := s
	st.m[s.ID] = &cp
	return s
}

func (st *Sessions) sweepLocked() {
	now := st.now()
	for id, s := range st.m {
		if !now.Before(s.Expires) {
			delete(st.m, id)
		}
	}
}

func (st *Sessions) evictPendingLocked() {
	for id, s := range st.m {
		if s.Kind == SessionPending {
			delete(st.m, id)
			if len(st.m) < MaxSessions*9/10 {
				return
			}
		}
	}
}

// Get returns the live session id of the given kind.
func (st *Sessions) Get(id, kind string) (Session, bool) {
	if len(id) != 64 {
		return Session{}, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.m[id]
	if !ok || s.Kind != kind {
		return Session{}, false
	}
	if !st.now().Before(s.Expires) {
		delete(st.m, id)
		return Session{}, false
	}
	return *s, true
}

// Take returns and removes a session: a pending sign-in is used once.
func (st *Sessions) Take(id, kind string) (Session, bool) {
	s, ok := st.Get(id, kind)
	if ok {
		st.Revoke(id)
	}
	return s, ok
}

// Revoke ends a session.
func (st *Sessions) Revoke(id string) {
	st.mu.Lock()
	delete(st.m, id)
	st.mu.Unlock()
}

// Len counts stored sessions, expired ones not yet swept included.
func (st *Sessions) Len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.m)
}

// CheckCSRF compares a form's token with the session's in constant time.
func (s Session) CheckCSRF(tok string) bool {
	return s.CSRF != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) == 1
}

// SessionCookie is a session cookie as every edge sets it: HttpOnly,
// SameSite as given (Lax for viewers, who arrive by link from the QR or a
// provider's redirect; Strict for the admin), Secure on https.
func SessionCookie(name, value string, expires time.Time, secure bool, same http.SameSite) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: secure, SameSite: same}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	return c
}
