package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/microdrop/microdrop"
)

// rawConn is one keep-alive HTTP/1.1 connection to one server, one request
// in flight. Claims go over these rather than net/http's client: that client
// cost more CPU than the server it was measuring, on the same two cores.
type rawConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	host string
	buf  []byte
}

// errNoLength is a response this client cannot frame: neither a length nor
// chunked, so the connection cannot be reused.
var errNoLength = errors.New("response without a length")

func dialRaw(base string) (*rawConn, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" {
		return nil, fmt.Errorf("loadgen speaks plain http to %q", base)
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{conn: c, r: bufio.NewReaderSize(c, 4096), w: bufio.NewWriterSize(c, 4096), host: u.Host}, nil
}

// post sends one request and reads one response (Content-Length or
// chunked). The body it returns is valid until the next post.
func (c *rawConn) post(path, token string, body []byte) (int, []byte, error) {
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c.w, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		path, c.host, token, len(body))
	_, _ = c.w.Write(body)
	if err := c.w.Flush(); err != nil {
		return 0, nil, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, err = strconv.Atoi(string(v))
			if err != nil || length < 0 {
				return 0, nil, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")) && bytes.EqualFold(v, []byte("chunked")):
			chunked = true
		}
	}
	c.buf = c.buf[:0]
	switch {
	case status == http.StatusNoContent || status == http.StatusNotModified || status < 200:
		// These never carry a body, whatever the headers say (RFC 9112 6.3).
		return status, c.buf, nil
	case chunked:
		for {
			h, err := c.r.ReadSlice('\n')
			if err != nil {
				return 0, nil, err
			}
			size, _, _ := bytes.Cut(bytes.TrimSpace(h), []byte(";")) // chunk extensions
			n, err := strconv.ParseInt(string(size), 16, 32)
			if err != nil || n < 0 {
				return 0, nil, fmt.Errorf("bad chunk size %q", h)
			}
			if n == 0 {
				// Trailers, if any, end with an empty line.
				for {
					t, err := c.r.ReadSlice('\n')
					if err != nil {
						return 0, nil, err
					}
					if len(bytes.TrimRight(t, "\r\n")) == 0 {
						return status, c.buf, nil
					}
				}
			}
			start := len(c.buf)
			c.buf = append(c.buf, make([]byte, n)...)
			if _, err := io.ReadFull(c.r, c.buf[start:]); err != nil {
				return 0, nil, err
			}
			if _, err := c.r.ReadSlice('\n'); err != nil {
				return 0, nil, err
			}
		}
	case length >= 0:
		c.buf = append(c.buf, make([]byte, length)...)
		_, err := io.ReadFull(c.r, c.buf)
		return status, c.buf, err
	}
	return 0, nil, errNoLength
}

// apiClient speaks to running servers' JSON API: net/http for the few
// control calls (open, close, audit, entries), pooled raw connections for
// the claims.
type apiClient struct {
	urls   []string
	token  string
	client *http.Client
	conns  chan *rawConn
}

func newAPIClient(urls []string, token string, conc int) *apiClient {
	clean := make([]string, len(urls))
	for i, u := range urls {
		clean[i] = strings.TrimRight(strings.TrimSpace(u), "/")
	}
	tr := &http.Transport{MaxIdleConns: 16, MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute}
	return &apiClient{urls: clean, token: token, client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		conns: make(chan *rawConn, conc)}
}

// postRaw sends a POST over a pooled raw connection to base; a broken
// connection is dropped, never reused. The body it returns is a copy.
func (a *apiClient) postRaw(base, path string, body []byte) (int, []byte, error) {
	var c *rawConn
	select {
	case c = <-a.conns:
		if c.host != strings.TrimPrefix(base, "http://") {
			c.conn.Close()
			c = nil
		}
	default:
	}
	if c == nil {
		var err error
		if c, err = dialRaw(base); err != nil {
			return 0, nil, err
		}
	}
	status, resp, err := c.post(path, a.token, body)
	if err != nil {
		c.conn.Close()
		return 0, nil, err
	}
	resp = append([]byte(nil), resp...)
	select {
	case a.conns <- c:
	default:
		c.conn.Close()
	}
	return status, resp, nil
}

// do sends one JSON request with the admin bearer; an answer of 300 or more
// comes back as the server's *microdrop.Error.
func (a *apiClient) do(ctx context.Context, method, url string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		var eb microdrop.ErrorBody
		_ = json.Unmarshal(raw, &eb)
		return resp.StatusCode, &microdrop.Error{Code: eb.Code, Reason: eb.Reason, Message: eb.Message}
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

func (a *apiClient) close() {
	a.client.CloseIdleConnections()
	for {
		select {
		case c := <-a.conns:
			c.conn.Close()
		default:
			return
		}
	}
}
