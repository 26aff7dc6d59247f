package loadgen

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/microdrop/microdrop"
)

// echoServer answers POST /len with the body's length and the request's
// headers, POST /chunked with the body in several flushed chunks, and
// counts the connections it accepted.
func echoServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/len":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, r.Header.Get("Authorization")+"|"+r.Header.Get("Content-Type")+"|"+string(body))
		case "/chunked":
			for _, part := range strings.SplitAfter(string(body), ",") {
				_, _ = io.WriteString(w, part)
				w.(http.Flusher).Flush()
			}
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/error":
			microdrop.WriteError(w, microdrop.Errorf(microdrop.ECONFLICT, "sold out"))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func TestRawConnContentLengthKeepAlive(t *testing.T) {
	srv, conns := echoServer(t)
	c, err := dialRaw(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	for _, body := range []string{`{"user_id":"u1"}`, `{"user_id":"u22"}`, ""} {
		status, resp, err := c.post("/len", "tok", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if want := "Bearer tok|application/json|" + body; status != http.StatusCreated || string(resp) != want {
			t.Errorf("post %q: %d %q, want 201 %q", body, status, resp, want)
		}
	}
	if status, resp, err := c.post("/empty", "tok", nil); err != nil || status != http.StatusNoContent || len(resp) != 0 {
		t.Errorf("204: %d %q %v", status, resp, err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for four requests, want one kept alive", n)
	}
}

func TestRawConnChunked(t *testing.T) {
	srv, _ := echoServer(t)
	c, err := dialRaw(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	body := strings.Repeat("abcdefgh,", 1000) // larger than the read buffer
	for range 2 {                             // and the connection still lines up after it
		status, resp, err := c.post("/chunked", "tok", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusOK || string(resp) != body {
			t.Errorf("chunked: %d, %d bytes, want 200 and %d bytes", status, len(resp), len(body))
		}
	}
}

// rawServer answers every request on a connection with the bytes reply.
func rawServer(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := http.ReadRequest(r); err != nil {
						return
					}
					if _, err := io.WriteString(c, reply); err != nil {
						return
					}
					if strings.Contains(reply, "Connection: close") {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestRawConnBadResponses(t *testing.T) {
	for name, reply := range map[string]string{
		"status line":    "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
		"garbage":        "hello\r\n\r\n",
		"status code":    "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
		"length":         "HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
		"chunk size":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"no length":      "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close",
		"short body":     "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort",
		"closed headers": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := dialRaw(rawServer(t, reply))
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			if status, resp, err := c.post("/x", "tok", []byte("{}")); err == nil {
				t.Errorf("accepted %q as %d %q", reply, status, resp)
			}
		})
	}
	if _, err := dialRaw("https://127.0.0.1:1"); err == nil {
		t.Error("dialled https")
	}
}

// TestPostRawDropsBrokenConns: a connection that failed is closed, not
// pooled, and the next request dials afresh.
func TestPostRawDropsBrokenConns(t *testing.T) {
	srv, conns := echoServer(t)
	a := newAPIClient([]string{srv.URL + "/"}, "tok", 4)
	defer a.close()
	base := a.urls[0]
	if base != srv.URL {
		t.Fatalf("base %q, want the URL without its slash", base)
	}
	for range 3 {
		if status, _, err := a.postRaw(base, "/len", []byte("x")); err != nil || status != http.StatusCreated {
			t.Fatalf("%d %v", status, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for three sequential claims, want one pooled", n)
	}
	srv.CloseClientConnections()
	// The pooled connection is dead now: the request on it fails...
	if _, _, err := a.postRaw(base, "/len", []byte("x")); err == nil {
		t.Log("the server's close had not arrived yet; the request went through")
	}
	// ...and the next one works over a new connection.
	if status, _, err := a.postRaw(base, "/len", []byte("x")); err != nil || status != http.StatusCreated {
		t.Fatalf("after a broken connection: %d %v", status, err)
	}
	if n := conns.Load(); n < 2 {
		t.Errorf("%d connections, want a new one after the break", n)
	}
}

func TestAPIClientDo(t *testing.T) {
	srv, _ := echoServer(t)
	a := newAPIClient([]string{srv.URL}, "tok", 1)
	defer a.close()
	var out string
	if _, err := a.do(t.Context(), "POST", srv.URL+"/len", map[string]string{"a": "b"}, nil); err != nil {
		t.Fatal(err)
	}
	status, err := a.do(t.Context(), "POST", srv.URL+"/error", nil, &out)
	var me *microdrop.Error
	if !errors.As(err, &me) || me.Code != microdrop.ECONFLICT || status != http.StatusConflict {
		t.Errorf("error answer: %d %v, want the server's ECONFLICT", status, err)
	}
}
