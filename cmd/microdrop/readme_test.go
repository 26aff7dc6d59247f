package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// readmeCommands returns the shell commands in README.md's indented code
// blocks, with backslash continuations and multi-line quoted arguments
// joined into one command each.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	cur := ""
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "    ") {
			if cur != "" {
				cmds = append(cmds, cur)
				cur = ""
			}
			continue
		}
		l := strings.TrimSpace(line)
		if cur != "" {
			cur += " " + l
		} else {
			cur = l
		}
		// Keep joining while the command continues or a quote is open.
		if strings.HasSuffix(cur, "\\") {
			cur = strings.TrimSuffix(cur, "\\")
			continue
		}
		if strings.Count(cur, "'")%2 == 1 {
			continue
		}
		cmds = append(cmds, cur)
		cur = ""
	}
	return cmds
}

var curlBody = regexp.MustCompile(`-d '([^']*)'`)

// TestReadmeCurlExamplesSendJSON: every README curl that sends a body says
// it is JSON; the API refuses it otherwise.
func TestReadmeCurlExamplesSendJSON(t *testing.T) {
	n := 0
	for _, c := range readmeCommands(t) {
		if !strings.HasPrefix(c, "curl ") || !curlBody.MatchString(c) {
			continue
		}
		n++
		if !strings.Contains(c, "-H 'Content-Type: application/json'") {
			t.Errorf("README curl without the JSON content type (400 \"send the body as application/json\"):\n%s", c)
		}
	}
	if n < 4 {
		t.Fatalf("found only %d curl commands with a body in README.md", n)
	}
}

// TestReadmeFollowedLiterally runs the README's API example against serve
// with its defaults: the drop opens on a channel that has an overlay, the
// claim is accepted, the ffmpeg example's path feeds that channel, every
// serve flag is documented, and the binary the commands assume is built
// as the README says.
func TestReadmeFollowedLiterally(t *testing.T) {
	cmds := readmeCommands(t)
	var open, claim, publish string
	for _, c := range cmds {
		switch {
		case strings.HasPrefix(c, "curl ") && strings.Contains(c, "/api/drops -d"):
			open = c
		case strings.HasPrefix(c, "curl ") && strings.Contains(c, "/claims -d"):
			claim = c
		case strings.HasPrefix(c, "ffmpeg ") && strings.Contains(c, "-f rtsp"):
			publish = c
		}
	}
	if open == "" || claim == "" || publish == "" {
		t.Fatalf("README examples not found: open %q claim %q publish %q", open, claim, publish)
	}

	m := NewMain(io.Discard, io.Discard)
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--rtsp", "off", "--data", t.TempDir()},
		func(k string) (string, bool) {
			if k == "MICRODROP_ADMIN_TOKEN" {
				return testAdminToken, true
			}
			return "", false
		}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	base := "http://" + m.HTTPAddr
	send := func(cmd, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(curlBody.FindStringSubmatch(cmd)[1]))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // what curl -d sends unless told
		for _, h := range regexp.MustCompile(`-H ["']([^:]+): ([^"']+)["']`).FindAllStringSubmatch(cmd, -1) {
			req.Header.Set(h[1], strings.ReplaceAll(h[2], "$TOKEN", testAdminToken))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := send(open, "/api/drops")
	if code != http.StatusCreated {
		t.Fatalf("README's open-a-drop example: %d %s", code, body)
	}
	id := regexp.MustCompile(`"id":\s*"([^"]+)"`).FindStringSubmatch(body)
	channel := regexp.MustCompile(`"channel":\s*"([^"]+)"`).FindStringSubmatch(curlBody.FindStringSubmatch(open)[1])
	if id == nil || channel == nil {
		t.Fatalf("open answered %s", body)
	}
	// Inside the example's first stage the README says to expect not_eligible.
	if code, body := send(claim, "/api/drops/"+id[1]+"/claims"); code/100 != 2 &&
		!(code == http.StatusForbidden && strings.Contains(body, `"not_eligible"`)) {
		t.Fatalf("README's claim example: %d %s", code, body)
	}
	d := get(t, base+"/dashboard", true)
	if !strings.Contains(d, "/overlay/"+channel[1]+"?") {
		t.Fatalf("the README's channel %q has no overlay with the defaults", channel[1])
	}
	if !strings.Contains(d, base+"/whip/live") || !strings.Contains(d, "(RTSP is off)") || strings.Contains(d, "rtsp://HOST") {
		t.Fatal("the dashboard's publish hint does not name the real addresses")
	}
	path := regexp.MustCompile(`rtsp://(?:[^@/\s]+@)?localhost:\d+/(\w+)`).FindStringSubmatch(publish)
	if path == nil {
		t.Fatalf("no publish URL in %q", publish)
	}
	if got := streamPaths(DefaultConfig())[path[1]]; got != channel[1] {
		t.Fatalf("the README publishes to /%s, which feeds channel %q by default, not the example's %q", path[1], got, channel[1])
	}

	readme, _ := os.ReadFile("../../README.md")
	var usage bytes.Buffer
	_ = NewMain(io.Discard, &usage).ParseFlags([]string{"-h"}, func(string) (string, bool) { return "", false })
	for _, f := range regexp.MustCompile(`(?m)^  -(\S+)`).FindAllStringSubmatch(usage.String(), -1) {
		if !bytes.Contains(readme, []byte("`--"+f[1])) {
			t.Errorf("serve flag --%s is not in the README", f[1])
		}
	}
	for _, want := range []string{"go build -o microdrop ./cmd/microdrop", "takes a few minutes"} {
		if !bytes.Contains(readme, []byte(want)) {
			t.Errorf("README lacks %q", want)
		}
	}
}

// TestDefaultStreamPath: /live feeds the default channel unless a binding
// or a channel named live says otherwise.
func TestDefaultStreamPath(t *testing.T) {
	c := DefaultConfig()
	if p := streamPaths(c); p["live"] != "local" {
		t.Fatalf("default: %v", p)
	}
	c.Twitch = TwitchConfig{ClientID: "x", UserToken: "y", Channel: "Streamer"}
	if p := streamPaths(c); p["live"] != "streamer" {
		t.Fatalf("with Twitch: %v", p)
	}
	c.Channels = map[string]ChannelConfig{"other": {Streams: []string{"live"}}}
	if p := streamPaths(c); p["live"] != "other" {
		t.Fatalf("bound: %v", p)
	}
	c.Channels = map[string]ChannelConfig{"live": {}}
	if p := streamPaths(c); p["live"] != "" {
		t.Fatalf("a channel named live: %v", p)
	}
}

// TestDashboardPublishHint: the hint names the RTSP address serve really
// listens on, for the documented path.
func TestDashboardPublishHint(t *testing.T) {
	m := NewMain(io.Discard, io.Discard)
	if rtsp, whip := m.publishURLs(); rtsp != "rtsp://localhost:8554/live" || whip != "http://localhost:8080/whip/live" {
		t.Fatalf("defaults: %q %q", rtsp, whip)
	}
	m.Config.PublicURL, m.Config.Ingest.RTSP = "https://drops.example", ":9554"
	if rtsp, _ := m.publishURLs(); rtsp != "rtsp://drops.example:9554/live" {
		t.Fatalf("public URL and port: %q", rtsp)
	}
	m.Config.Ingest.RTSP = "127.0.0.1:7554"
	if rtsp, _ := m.publishURLs(); rtsp != "rtsp://127.0.0.1:7554/live" {
		t.Fatalf("one address: %q", rtsp)
	}
	m.Config.Ingest.RTSP = ""
	if rtsp, _ := m.publishURLs(); rtsp != "" {
		t.Fatalf("off: %q", rtsp)
	}
}
