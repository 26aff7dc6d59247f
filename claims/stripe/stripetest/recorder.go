package stripetest

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
)

// Request is one API call the recorder saw.
type Request struct {
	Method, Path   string
	IdempotencyKey string
	Status         int
}

// Recorder stands between a client and stripe-mock and records every
// call, so a test can count what was sent (stripe-mock itself keeps no
// state to ask).
type Recorder struct {
	URL        string
	mu         sync.Mutex
	onResponse func(Request)
	reqs       []Request
}

// OnResponse sets f to run after stripe-mock answered a call and before
// the answer goes back (nil: none).
func (r *Recorder) OnResponse(f func(Request)) {
	r.mu.Lock()
	r.onResponse = f
	r.mu.Unlock()
}

// Record starts a recorder in front of the stripe-mock at base.
func Record(tb testing.TB, base string) *Recorder {
	tb.Helper()
	target, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	rec := &Recorder{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		r := Request{Method: resp.Request.Method, Path: resp.Request.URL.Path, IdempotencyKey: resp.Request.Header.Get("Idempotency-Key"), Status: resp.StatusCode}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r)
		on := rec.onResponse
		rec.mu.Unlock()
		if on != nil {
			on(r)
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	tb.Cleanup(srv.Close)
	rec.URL = srv.URL
	return rec
}

// Requests is every call seen so far.
func (r *Recorder) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}
