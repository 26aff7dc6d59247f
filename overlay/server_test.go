package overlay_test

import (
	"encoding/base64"
	"image"
	"image/color"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/overlay"
)

// decodeQRBits draws the frame's QR modules as an image and reads it back
// with a real QR decoder.
func decodeQRBits(t *testing.T, q *overlay.QRBits) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(q.Bits)
	if err != nil {
		t.Fatal(err)
	}
	const px = 8
	img := image.NewGray(image.Rect(0, 0, q.Size*px, q.Size*px))
	for i := 0; i < q.Size*q.Size; i++ {
		c := color.Gray{255}
		if raw[i/8]&(0x80>>(i%8)) != 0 {
			c = color.Gray{0}
		}
		x, y := i%q.Size, i/q.Size
		for dy := 0; dy < px; dy++ {
			for dx := 0; dx < px; dx++ {
				img.SetGray(x*px+dx, y*px+dy, c)
			}
		}
	}
	return decodeQR(t, img)
}

func decodeQR(t *testing.T, img image.Image) string {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("decode QR: %v", err)
	}
	return res.GetText()
}

// The overlay feed: an empty snapshot, the open with the claim link's QR,
// coalesced stock with winners, the close, a fresh snapshot for a new
// connection, and clock probes answered.
func TestOverlayFeedFollowsADrop(t *testing.T) {
	e := newEnv(t)
	c := e.dial(nil)
	snap := next(t, c, func(f overlay.Frame) bool { return true })
	if snap.Type != overlay.FrameSnapshot || snap.Drop != nil || snap.ServerMS == 0 {
		t.Fatalf("first frame = %+v, want an empty snapshot with the server time", snap)
	}

	dr := e.openDrop(`{"channel":"streamer","sku":"HOODIE-1","title":"Hoodie","stock":5,"price_minor":2500,"duration":"60s","claim_code":"MOON"}`)
	opened := next(t, c, func(f overlay.Frame) bool { return f.Type == overlay.FrameEvent })
	if opened.Kind != microdrop.DropOpened || opened.Drop.ID != dr.Drop.ID || opened.ClaimURL != dr.ClaimURL || opened.AtMS == 0 {
		t.Fatalf("open frame = %+v, want drop %s with claim URL %s", opened, dr.Drop.ID, dr.ClaimURL)
	}
	if !strings.Contains(dr.ClaimURL, "code=MOON") {
		t.Fatalf("claim URL %q should carry the claim code", dr.ClaimURL)
	}
	if got := decodeQRBits(t, opened.QR); got != dr.ClaimURL {
		t.Fatalf("QR reads %q, want %q", got, dr.ClaimURL)
	}

	for _, u := range []string{"alice", "bob", "carol"} {
		e.claim(dr.Drop.ID, u, "MOON")
	}
	stock := next(t, c, func(f overlay.Frame) bool { return f.Type == overlay.FrameStock && f.Drop.Remaining == 2 })
	if len(stock.Winners) != 3 || stock.Winners[0].Name != "carol" || stock.QR != nil {
		t.Fatalf("stock frame = %+v, want 3 winners, newest first, no QR", stock)
	}

	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"time","client":12345.5}`)); err != nil {
		t.Fatal(err)
	}
	tf := next(t, c, func(f overlay.Frame) bool { return f.Type == overlay.FrameTime })
	if tf.Client != 12345.5 || tf.ServerMS < snap.ServerMS {
		t.Fatalf("time frame = %+v", tf)
	}

	if _, err := e.svc.CloseDrop(t.Context(), dr.Drop.ID, "test"); err != nil {
		t.Fatal(err)
	}
	closed := next(t, c, func(f overlay.Frame) bool { return f.Type == overlay.FrameEvent })
	if closed.Kind != microdrop.DropClosed || closed.Drop.State != string(claims.Grace) {
		t.Fatalf("close frame = %+v, want drop.closed in grace", closed)
	}

	// A page that connects now resyncs from the snapshot alone.
	c2 := e.dial(nil)
	s2 := next(t, c2, func(f overlay.Frame) bool { return true })
	if s2.Type != overlay.FrameSnapshot || s2.Drop == nil || s2.Drop.Remaining != 2 || s2.Drop.State != string(claims.Grace) ||
		len(s2.Winners) != 3 || s2.ClaimURL != dr.ClaimURL || decodeQRBits(t, s2.QR) != dr.ClaimURL {
		t.Fatalf("snapshot after close = %+v", s2)
	}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Keys, origins and layout options are checked before anything is served.
func TestOverlayRefusesBadKeyOriginAndLayout(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		path   string
		status int
		says   string
	}{
		{"/overlay/streamer", http.StatusForbidden, "overlay key"},
		{"/overlay/streamer?key=wrong-key-000000", http.StatusForbidden, "overlay key"},
		{"/overlay/nobody?key=" + testKey, http.StatusNotFound, "no overlay for channel"},
		{"/overlay/streamer?key=" + testKey + "&corner=middle", http.StatusBadRequest, "corner must be"},
		{"/overlay/streamer?key=" + testKey + "&scale=9", http.StatusBadRequest, "scale must be"},
		{"/overlay/streamer?key=" + testKey + "&volume=-1", http.StatusBadRequest, "volume must be"},
		{"/overlay/streamer?key=" + testKey + "&theme=plaid", http.StatusBadRequest, "theme must be"},
		{"/overlay/streamer?key=" + testKey + "&corner=tl&scale=1.5&theme=light&volume=0.2&cue=ultrasonic", http.StatusOK, `data-cue="ultrasonic"`},
		{"/overlay/assets/cue.js", http.StatusOK, "0x9e3779b9"},
	} {
		status, body := get(t, http.DefaultClient, e.ts.URL+tc.path)
		if status != tc.status || !strings.Contains(body, tc.says) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, status, body, tc.status, tc.says)
		}
	}

	for _, tc := range []struct {
		url    string
		origin string
		status int
	}{
		{e.wsURL(testChannel, "wrong-key-000000"), "", http.StatusForbidden},
		{e.wsURL("nobody", testKey), "", http.StatusNotFound},
		{e.wsURL(testChannel, testKey), "https://evil.example", http.StatusForbidden},
	} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		_, resp, err := websocket.DefaultDialer.Dial(tc.url, h)
		if err == nil || resp == nil || resp.StatusCode != tc.status {
			t.Errorf("dial %s origin %q: err %v, resp %v; want status %d", tc.url, tc.origin, err, resp, tc.status)
		}
	}
	c := e.dial(http.Header{"Origin": {e.ts.URL}})
	if f := next(t, c, func(overlay.Frame) bool { return true }); f.Type != overlay.FrameSnapshot {
		t.Fatalf("own-origin client got %+v first", f)
	}
}

var hiddenCSRF = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// The claim page gives a pickup token once per viewer; the desk redeems it
// exactly once and tells forged, malformed, used and unknown codes apart.
func TestClaimPageAndPickupDesk(t *testing.T) {
	e := newEnv(t)
	dr := e.openDrop(`{"channel":"streamer","sku":"CAP","title":"Cap","stock":2,"duration":"60s","claim_code":"MOON"}`)
	// Local mode: the browser (its device cookie) is the identity.
	annJar, _ := cookiejar.New(nil)
	ann := &http.Client{Jar: annJar}
	code, page := get(t, ann, dr.ClaimURL)
	if code != http.StatusOK || !strings.Contains(page, `id="claim-form"`) || !strings.Contains(page, `value="MOON"`) || !strings.Contains(page, `id="claim-local"`) {
		t.Fatalf("claim page: %d\n%s", code, page)
	}
	csrf := hiddenCSRF.FindStringSubmatch(page)
	if csrf == nil {
		t.Fatalf("claim form without a CSRF token:\n%s", page)
	}
	if code, page := get(t, http.DefaultClient, e.ts.URL+"/c/nosuchdrop"); code != http.StatusNotFound || !strings.Contains(page, "No such drop") {
		t.Fatalf("unknown drop: %d %s", code, page)
	}

	post := func(c *http.Client, u string, form url.Values) (int, string) {
		t.Helper()
		resp, err := c.PostForm(u, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	claimURL := e.ts.URL + "/c/" + dr.Drop.ID
	if code, page := post(ann, claimURL, url.Values{"csrf": {csrf[1]}, "code": {"WRONG"}}); code == http.StatusOK || !strings.Contains(page, `id="claim-error"`) {
		t.Fatalf("wrong code accepted: %d", code)
	}
	if code, _ := post(ann, claimURL, url.Values{"csrf": {"0123"}, "code": {"MOON"}}); code != http.StatusForbidden {
		t.Fatalf("a claim without the form's CSRF token: %d, want 403", code)
	}
	if code, _ := post(http.DefaultClient, claimURL, url.Values{"name": {"Ann Lee"}, "code": {"MOON"}}); code != http.StatusUnauthorized {
		t.Fatalf("a claim from a browser without an identity: %d, want 401", code)
	}
	code, page = post(ann, claimURL, url.Values{"csrf": {csrf[1]}, "code": {"MOON"}})
	tokRe := regexp.MustCompile(`id="pickup-token">([0-9A-Z]{16})<`)
	m := tokRe.FindStringSubmatch(page)
	if code != http.StatusOK || m == nil || !strings.Contains(page, `/api/tokens/`+m[1]+`/qr.svg`) {
		t.Fatalf("claim: %d\n%s", code, page)
	}
	token := m[1]
	// A reload shows the same code to the same browser, and to no other.
	if _, page := get(t, ann, claimURL); !strings.Contains(page, token) {
		t.Fatalf("reload lost the pickup code:\n%s", page)
	}
	otherJar, _ := cookiejar.New(nil)
	other := &http.Client{Jar: otherJar}
	if _, page := get(t, other, claimURL); strings.Contains(page, token) || strings.Contains(page, "pickup-token") {
		t.Fatalf("another browser sees the pickup code:\n%s", page)
	}
	// Claiming again shows the same token instead of a second unit.
	_, page = post(ann, claimURL, url.Values{"csrf": {csrf[1]}, "code": {"MOON"}})
	if m := tokRe.FindStringSubmatch(page); m == nil || m[1] != token {
		t.Fatalf("second claim should show the same token %s:\n%s", token, page)
	}

	jar, _ := cookiejar.New(nil)
	desk := &http.Client{Jar: jar}
	if code, page := post(desk, e.ts.URL+"/redeem", url.Values{"token": {token}}); code != http.StatusUnauthorized || !strings.Contains(page, "login-form") {
		t.Fatalf("redeem without signing in: %d", code)
	}
	if code, _ := post(desk, e.ts.URL+"/dashboard/login", url.Values{"token": {"not-the-token"}, "next": {"/redeem"}}); code != http.StatusUnauthorized {
		t.Fatalf("bad login: %d", code)
	}
	code, page = post(desk, e.ts.URL+"/dashboard/login", url.Values{"token": {testAdminTok}, "next": {"/redeem"}})
	csrf = hiddenCSRF.FindStringSubmatch(page)
	if code != http.StatusOK || csrf == nil || !strings.Contains(page, `id="redeem-form"`) {
		t.Fatalf("login to the desk: %d\n%s", code, page)
	}
	if code, _ := post(desk, e.ts.URL+"/redeem", url.Values{"token": {token}}); code != http.StatusForbidden {
		t.Fatalf("redeem without the CSRF token: %d, want 403", code)
	}
	kind := regexp.MustCompile(`data-kind="(\w+)"`)
	for _, tc := range []struct {
		token string
		ok    bool
		kind  string
	}{
		{token, true, ""},
		{strings.ToLower(token), false, "used"},
		{"0000000000000000", false, "forged"},
		{"short", false, "malformed"},
	} {
		code, page := post(desk, e.ts.URL+"/redeem", url.Values{"token": {tc.token}, "csrf": {csrf[1]}})
		switch {
		case tc.ok && (code != http.StatusOK || !strings.Contains(page, `id="redeem-ok"`)):
			t.Errorf("redeem %s: %d, want success\n%s", tc.token, code, page)
		case !tc.ok && (code == http.StatusOK || kind.FindStringSubmatch(page) == nil || kind.FindStringSubmatch(page)[1] != tc.kind):
			t.Errorf("redeem %s: %d, want refusal %q\n%s", tc.token, code, tc.kind, page)
		}
	}
}

// A dashboard form with a bad field or without its CSRF token changes nothing.
func TestDashboardFormsRefuseBadInput(t *testing.T) {
	e := newEnv(t)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	if code, page := get(t, c, e.ts.URL+"/dashboard"); code != http.StatusOK || !strings.Contains(page, "login-form") {
		t.Fatalf("dashboard before login: %d", code)
	}
	resp, err := c.PostForm(e.ts.URL+"/dashboard/login", url.Values{"token": {testAdminTok}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := hiddenCSRF.FindStringSubmatch(string(b))
	if csrf == nil || !strings.Contains(string(b), e.srv.OverlayURL(testChannel)) || !strings.Contains(string(b), `id="local-mode"`) {
		t.Fatalf("dashboard should show the overlay URL with its key:\n%s", b)
	}
	good := url.Values{"channel": {testChannel}, "sku": {"TEE"}, "stock": {"10"}, "duration": {"90s"}, "price": {"19.99"}, "csrf": {csrf[1]}}
	for _, tc := range []struct {
		change func(url.Values)
		status int
		says   string
	}{
		{func(v url.Values) { v.Del("csrf") }, http.StatusForbidden, "stale"},
		{func(v url.Values) { v.Set("stock", "ten") }, http.StatusBadRequest, "stock must be a whole number"},
		{func(v url.Values) { v.Set("price", "1.999") }, http.StatusBadRequest, "at most two decimals"},
		{func(v url.Values) { v.Set("duration", "soon") }, http.StatusBadRequest, "not a duration"},
		{func(v url.Values) { v.Set("sku", "bad sku!") }, http.StatusBadRequest, "sku must be"},
		{func(v url.Values) { v.Set("duration", "500ms") }, http.StatusBadRequest, "between 1s and"},
		{func(v url.Values) { v.Set("duration", "1ns") }, http.StatusBadRequest, "between 1s and"},
		{func(v url.Values) { v.Set("title", "Cap\u202eevil") }, http.StatusBadRequest, "title holds a control, bidi or invisible character"},
		{func(v url.Values) { v.Set("budget", "soon") }, http.StatusBadRequest, "budget:"},
		{func(v url.Values) { v.Set("policy", "fcfs"); v.Set("budget", "5s") }, http.StatusBadRequest, "window policy only"},
	} {
		v := url.Values{}
		for k, vs := range good {
			v[k] = append([]string(nil), vs...)
		}
		tc.change(v)
		resp, err := c.PostForm(e.ts.URL+"/dashboard/drops", v)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.says) {
			t.Errorf("open with %v: %d, want %d saying %q\n%s", v, resp.StatusCode, tc.status, tc.says, b)
		}
	}
	if ds, err := e.svc.Recent(t.Context(), "", 10); err != nil || len(ds) != 0 {
		t.Fatalf("refused forms opened drops: %v %v", ds, err)
	}
	// A window drop with the moderator's own budget, shown on the dashboard.
	good.Set("policy", "window")
	good.Set("budget", "7s")
	resp, err = c.PostForm(e.ts.URL+"/dashboard/drops", good)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ds, err := e.svc.Recent(t.Context(), "", 10)
	if err != nil || len(ds) != 1 || ds[0].PriceMinor != 1999 || ds[0].Stock != 10 || ds[0].Listening() {
		t.Fatalf("the good form should open one drop: %v %v", ds, err)
	}
	if ds[0].Policy != claims.Window || ds[0].Budget != 7*time.Second || ds[0].BudgetBasis != "set by dashboard" {
		t.Fatalf("window drop from the form: %s %s %q", ds[0].Policy, ds[0].Budget, ds[0].BudgetBasis)
	}
	if code, page := get(t, c, e.ts.URL+"/dashboard"); code != http.StatusOK || !strings.Contains(page, "window 7s") || !strings.Contains(page, "set by dashboard") {
		t.Fatalf("dashboard does not show the drop's budget: %d", code)
	}
	// Closed twice: the second close ends the grace (and the window) at once.
	for range 2 {
		if _, err := e.svc.CloseDrop(t.Context(), ds[0].ID, "test"); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, live := e.svc.Live(testChannel); !live {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("drop still live")
		}
	}
	listen := url.Values{"listen": {"on"}}
	for k, vs := range good {
		if k != "policy" && k != "budget" {
			listen[k] = vs
		}
	}
	resp, err = c.PostForm(e.ts.URL+"/dashboard/drops", listen)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d, ok := e.svc.Live(testChannel); !ok || !d.Listening() || d.ListenStep != claims.DefaultListenStep {
		t.Fatalf("the listen box should open a listen drop: %+v %v", d, ok)
	}
}

// The claim page of a window drop says what the window promises.
func TestClaimPageSaysTheWindow(t *testing.T) {
	e := newEnv(t)
	dr := e.openDrop(`{"channel":"` + testChannel + `","sku":"TEE","stock":1,"duration":"90s","policy":"window","budget":"6s"}`)
	if dr.Drop.BudgetMS != 6000 || dr.Drop.WindowEndsAt.IsZero() {
		t.Fatalf("drop view: %+v", dr.Drop)
	}
	code, page := get(t, http.DefaultClient, e.ts.URL+"/c/"+dr.Drop.ID)
	if code != http.StatusOK || !strings.Contains(page, `id="claim-window">Everyone who claims in the first 6 s has the same chance — results at 0:06<`) {
		t.Fatalf("claim page: %d\n%s", code, page)
	}
}
