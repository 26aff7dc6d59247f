package overlay_test

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/microdrop/microdrop/claims"
)

// TestDeskShowsLoginAndLocalTime: the pickup desk names the winner as chat
// knows them (not the internal id local-chatfan) and shows times in the
// desk's local 24-hour clock, also when a code was already used.
func TestDeskShowsLoginAndLocalTime(t *testing.T) {
	e := newEnv(t)
	dr := e.openDrop(`{"channel":"streamer","sku":"CAP","title":"Cap","stock":2,"duration":"60s"}`)
	res, err := e.svc.Claim(context.Background(), claims.ClaimRequest{DropID: dr.Drop.ID,
		Viewer: claims.Viewer{UserID: "local-chatfan", Login: "chatfan"}})
	if err != nil || res.Token == "" {
		t.Fatalf("claim: %+v %v", res, err)
	}
	jar, _ := cookiejar.New(nil)
	desk := &http.Client{Jar: jar}
	post := func(u string, form url.Values) string {
		t.Helper()
		resp, err := desk.PostForm(u, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	csrf := hiddenCSRF.FindStringSubmatch(post(e.ts.URL+"/dashboard/login", url.Values{"token": {testAdminTok}, "next": {"/redeem"}}))
	if csrf == nil {
		t.Fatal("no desk login")
	}
	local := regexp.MustCompile(`[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2} \d\d:\d\d:\d\d`)
	rfc3339 := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`)
	page := post(e.ts.URL+"/redeem", url.Values{"token": {res.Token}, "csrf": {csrf[1]}})
	if !strings.Contains(page, `id="redeem-ok"`) || !regexp.MustCompile(`id="redeem-winner"[^>]*>chatfan<`).MatchString(page) {
		t.Fatalf("desk after redeeming:\n%s", page)
	}
	if !local.MatchString(page) || rfc3339.MatchString(page) {
		t.Fatalf("redeemed time not in local 24-hour form:\n%s", page)
	}
	page = post(e.ts.URL+"/redeem", url.Values{"token": {res.Token}, "csrf": {csrf[1]}})
	if !strings.Contains(page, "already redeemed at") || !local.MatchString(page) || rfc3339.MatchString(page) || !strings.Contains(page, "chatfan") {
		t.Fatalf("used code:\n%s", page)
	}
}

// TestDashboardReadable: links are readable on the dark panels (WCAG AA
// contrast, 4.5:1) and the live feed uses the 24-hour clock the server
// renders, not the browser's 12-hour default.
func TestDashboardReadable(t *testing.T) {
	css, err := os.ReadFile("assets/app.css")
	if err != nil {
		t.Fatal(err)
	}
	hex := func(re string) [3]float64 {
		m := regexp.MustCompile(re).FindSubmatch(css)
		if m == nil {
			t.Fatalf("app.css has no %s", re)
		}
		var c [3]float64
		for i := range c {
			v, _ := strconv.ParseUint(string(m[1][2*i:2*i+2]), 16, 8)
			s := float64(v) / 255
			if s <= 0.03928 {
				c[i] = s / 12.92
			} else {
				c[i] = math.Pow((s+0.055)/1.055, 2.4)
			}
		}
		return c
	}
	lum := func(c [3]float64) float64 { return 0.2126*c[0] + 0.7152*c[1] + 0.0722*c[2] }
	link := lum(hex(`(?m)^a, a:visited \{ color: #([0-9a-fA-F]{6})`))
	for _, bg := range []string{`--bg: #([0-9a-fA-F]{6})`, `--panel: #([0-9a-fA-F]{6})`} {
		b := lum(hex(bg))
		if ratio := (link + 0.05) / (b + 0.05); ratio < 4.5 {
			t.Errorf("link contrast %.1f:1 on %s", ratio, bg)
		}
	}
	js, err := os.ReadFile("assets/dashboard.js")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), "toLocaleTimeString(") {
		t.Error("dashboard.js formats times with the browser's locale (6:26:24 PM beside 18:31:24)")
	}
}
