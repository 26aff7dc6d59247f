package highlight_test

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/ingest/highlight"
)

const adminToken = "editor-admin-token-0123456789"

// checkEditorHTTP drives /editor as an editor would: sign in, list, play a
// clip with Range, trim (bad trims refused and nothing changed), export.
func checkEditorHTTP(t *testing.T, r *rig, x *highlight.Exporter, session, clipID string) {
	t.Helper()
	admin := microdrop.NewAdmin(adminToken, false, nil)
	ts := httptest.NewServer(highlight.NewHandler(highlight.HandlerDeps{Store: r.store, Exporter: x, Admin: admin, Dir: r.clipDir}))
	defer ts.Close()
	do := func(method, path string, form url.Values, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, ts.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	bearer := map[string]string{"Authorization": "Bearer " + adminToken}

	if resp, body := do("GET", "/editor", nil, nil); resp.StatusCode != http.StatusUnauthorized || !bytes.Contains(body, []byte(`action="/editor/login"`)) {
		t.Errorf("GET /editor without sign-in: %d", resp.StatusCode)
	}
	if resp, _ := do("GET", "/editor/clips/"+clipID+".mp4", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("clip without sign-in: %d", resp.StatusCode)
	}
	resp, _ := do("POST", "/editor/login", url.Values{"token": {adminToken}}, nil)
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) == 0 {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	withCookie := map[string]string{"Cookie": cookies[0].Name + "=" + cookies[0].Value}

	if resp, body := do("GET", "/editor", nil, withCookie); resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(session)) {
		t.Errorf("session list: %d", resp.StatusCode)
	}
	resp, body := do("GET", "/editor/sessions/"+session, nil, withCookie)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`<video controls preload="metadata"`)) ||
		!bytes.Contains(body, []byte("/editor/clips/"+clipID+".mp4")) {
		t.Errorf("session page: %d", resp.StatusCode)
	}
	resp, body = do("GET", "/editor/clips/"+clipID+".mp4", nil, map[string]string{"Authorization": "Bearer " + adminToken, "Range": "bytes=0-99"})
	if resp.StatusCode != http.StatusPartialContent || len(body) != 100 || !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes 0-99/") ||
		resp.Header.Get("Content-Type") != "video/mp4" || string(body[4:8]) != "ftyp" {
		t.Errorf("range request: %d %q %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
	}
	for _, bad := range []string{"/editor/clips/..%2F..%2Fledger.db", "/editor/clips/h0000000000000000.mp4", "/editor/sessions/nope-20200101T000000Z", "/editor/sessions/..%2F.."} {
		if resp, _ := do("GET", bad, nil, bearer); resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 400 or 404", bad, resp.StatusCode)
		}
	}

	before, _ := r.store.Highlight(context.Background(), clipID)
	// Cookie sessions need the CSRF token; bearer scripts do not.
	if resp, _ := do("POST", "/editor/highlights/"+clipID+"/trim", url.Values{"in": {"1"}, "out": {"2"}}, withCookie); resp.StatusCode != http.StatusForbidden {
		t.Errorf("trim without CSRF: %d", resp.StatusCode)
	}
	for _, form := range []url.Values{{"in": {"0"}, "out": {"999"}}, {"in": {"3"}, "out": {"1"}}, {"in": {"abc"}, "out": {"1"}}} {
		if resp, _ := do("POST", "/editor/highlights/"+clipID+"/trim", form, bearer); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("bad trim %v: %d, want 400", form, resp.StatusCode)
		}
	}
	if after, _ := r.store.Highlight(context.Background(), clipID); after.TrimIn != before.TrimIn || after.TrimOut != before.TrimOut {
		t.Errorf("a refused trim changed the highlight")
	}
	cookieReq := httptest.NewRequest("GET", "/", nil)
	cookieReq.AddCookie(cookies[0])
	form := url.Values{"in": {"0.5"}, "out": {"3"}, "csrf": {admin.CSRFToken(cookieReq)}}
	if resp, _ := do("POST", "/editor/highlights/"+clipID+"/trim", form, withCookie); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("trim: %d", resp.StatusCode)
	}
	if h, _ := r.store.Highlight(context.Background(), clipID); h.TrimIn != 500*time.Millisecond || h.TrimOut != 3*time.Second {
		t.Errorf("trim stored as [%s, %s)", h.TrimIn, h.TrimOut)
	}
	// The saved trim shows in the clip's header.
	if resp, body := do("GET", "/editor/sessions/"+session, nil, withCookie); resp.StatusCode != http.StatusOK ||
		!bytes.Contains(body, []byte(`id="trimmed-`+clipID+`">trimmed to 0.5–3.0 s of `)) {
		t.Errorf("session page after a trim: %d, the clip's header does not show the trim", resp.StatusCode)
	}
	resp, body = do("POST", "/editor/sessions/"+session+"/export", url.Values{"h": {clipID}}, bearer)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/zip" {
		t.Fatalf("export: %d %s", resp.StatusCode, body)
	}
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range zr.File {
		names[f.Name] = true
	}
	if !names["clips/"+clipID+".mp4"] || !names["manifest.json"] || !names["claims.csv"] || len(names) != 1+1+1+1+3 {
		t.Errorf("exported bundle holds %v", names)
	}
	if resp, _ := do("POST", "/editor/sessions/"+session+"/export", url.Values{"h": {"../../x"}}, bearer); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("export of a bad selection: %d", resp.StatusCode)
	}
}
