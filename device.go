package microdrop

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// Local mode (no sign-in provider configured) still needs "the same viewer"
// to mean something: a random device secret in a cookie binds an identity to
// one browser. It is for trying microdrop out, never for real drops: anyone
// can make as many browsers as they like. A typed name never is an identity.

// DeviceCookie holds the browser's device secret.
const DeviceCookie = "microdrop_device"

// DeviceTTL is how long a browser keeps its local identity.
const DeviceTTL = 30 * 24 * time.Hour

// Device is a browser's local identity.
type Device struct {
	// UserID is "local-" and 20 hex digits derived from the secret.
	UserID string
	// Login is a display name derived from it, like guest_1a2b3c.
	Login string
	// CSRF is the token this browser's forms carry.
	CSRF string
}

func deviceOf(secret string) Device {
	id := sha256.Sum256([]byte("microdrop device id v1\x00" + secret))
	csrf := sha256.Sum256([]byte("microdrop device csrf v1\x00" + secret))
	h := hex.EncodeToString(id[:])
	return Device{UserID: "local-" + h[:20], Login: "guest_" + h[:6], CSRF: hex.EncodeToString(csrf[:16])}
}

// DeviceOf returns the local identity r's browser carries.
func DeviceOf(r *http.Request) (Device, bool) {
	c, err := r.Cookie(DeviceCookie)
	if err != nil || len(c.Value) != 64 {
		return Device{}, false
	}
	if _, err := hex.DecodeString(c.Value); err != nil {
		return Device{}, false
	}
	return deviceOf(c.Value), true
}

// EnsureDevice returns r's local identity, giving the browser one (a new
// cookie on w) when it has none. now dates the cookie's expiry.
func EnsureDevice(w http.ResponseWriter, r *http.Request, secure bool, now time.Time) Device {
	if d, ok := DeviceOf(r); ok {
		return d
	}
	secret := RandomID()
	http.SetCookie(w, SessionCookie(DeviceCookie, secret, now.Add(DeviceTTL), secure, http.SameSiteLaxMode))
	// The handler that follows reads the identity from r too.
	r.AddCookie(&http.Cookie{Name: DeviceCookie, Value: secret})
	return deviceOf(secret)
}
