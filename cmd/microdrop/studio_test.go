package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/ingest/highlight"
)

func testPicture(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(255 * x / w), uint8(80 + 100*y/h), 160, 255})
		}
	}
	return img
}

// photoWithEXIF is a JPEG with an EXIF segment a phone would write.
func photoWithEXIF(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, testPicture(640, 640), nil); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	payload := []byte("Exif\x00\x00GPS 48.8566N 2.3522E")
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	return append(append(append(append([]byte{}, b[:2]...), seg...), payload...), b[2:]...)
}

// TestStudioInProcess drives the studio through the real server: bad
// image uploads are 400 and store nothing; a good one is stored without
// its EXIF, served immutable and signed, and linked to a drop; `export`
// then writes a bundle whose offer pages carry the image and the
// creator's branding and whose buy links answer on the real mux (never
// 404, also after the drop closed); `verify` passes it with the server's
// pinned key and catches a swapped file.
func TestStudioInProcess(t *testing.T) {
	data := t.TempDir()
	avatar := filepath.Join(data, "avatar.png")
	var ab bytes.Buffer
	if err := png.Encode(&ab, testPicture(64, 64)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(avatar, ab.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(data, "microdrop.yml")
	cfg := fmt.Sprintf("creators:\n  creator42:\n    name: \"Creator 42\"\n    color: \"#ff3d7f\"\n    avatar: %q\n  shopper:\n    name: Shop Person\n    shop_url: \"https://shop.example/p?ref=live\"\n", avatar)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	m := NewMain(io.Discard, io.Discard)
	env := func(k string) (string, bool) {
		if k == "MICRODROP_ADMIN_TOKEN" {
			return testAdminToken, true
		}
		return "", false
	}
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--rtsp", "off", "--data", data, "--config", cfgPath}, env); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.HTTPAddr

	upload := func(body []byte, multipartForm bool, token string) (*http.Response, []byte) {
		t.Helper()
		ct := "application/octet-stream"
		if multipartForm {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			fw, _ := mw.CreateFormFile("image", "hoodie.jpg")
			fw.Write(body)
			mw.Close()
			body, ct = buf.Bytes(), mw.FormDataContentType()
		}
		req, _ := http.NewRequest("POST", base+"/api/images", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	photo := photoWithEXIF(t)
	if resp, _ := upload(photo, true, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("upload without the admin token: %d", resp.StatusCode)
	}
	for name, c := range map[string]struct {
		body []byte
		mp   bool
		want string
	}{
		"not an image":  {[]byte("hello, this is text"), false, "not a JPEG, PNG or WebP"},
		"gif":           {[]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), true, "not a JPEG, PNG or WebP"},
		"too large":     {append(append([]byte{}, photo...), make([]byte, highlight.MaxImageBytes)...), false, "limit"},
		"empty":         {nil, false, "empty"},
		"no file field": {nil, true, "empty"},
	} {
		resp, body := upload(c.body, c.mp, testAdminToken)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %d %s, want 400 saying %q", name, resp.StatusCode, body, c.want)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(data, "images")); len(ents) != 0 {
		t.Errorf("bad uploads left %d files", len(ents))
	}
	resp, body := upload(photo, true, testAdminToken)
	var rec struct {
		SHA256 string `json:"sha256"`
		Type   string `json:"type"`
		URL    string `json:"url"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &rec) != nil || rec.Type != "image/jpeg" {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	resp, err := http.Get(base + rec.URL)
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || resp.Header.Get("Content-Type") != "image/jpeg" ||
		!strings.HasPrefix(resp.Header.Get("Microdrop-Image-Signature"), "ed25519 key=") || bytes.Contains(served, []byte("Exif")) {
		t.Errorf("GET %s: %d %v (EXIF left: %v)", rec.URL, resp.StatusCode, resp.Header, bytes.Contains(served, []byte("Exif")))
	}
	if resp, _ := http.Get(base + "/images/" + strings.Repeat("0", 64)); resp.StatusCode != 404 {
		t.Errorf("unknown image: %d", resp.StatusCode)
	}

	var open claims.DropResponse
	if st, err := api(t, "POST", base+"/api/drops", map[string]any{"channel": "streamer", "sku": "HOODIE-BLK-L", "title": "Black hoodie",
		"stock": 5, "duration": "1m", "grace": "0s", "policy": "fcfs", "price_minor": 4500, "currency": "EUR", "creator_id": "creator42"}, &open); st != 201 || err != nil {
		t.Fatalf("open: %d %v", st, err)
	}
	if st, _ := api(t, "PUT", base+"/api/drops/nope/image", map[string]string{"sha256": rec.SHA256}, nil); st != 404 {
		t.Errorf("image for an unknown drop: %d", st)
	}
	if st, _ := api(t, "PUT", base+"/api/drops/"+open.Drop.ID+"/image", map[string]string{"sha256": strings.Repeat("0", 64)}, nil); st != 404 {
		t.Errorf("an unknown image for a drop: %d", st)
	}
	if st, _ := api(t, "PUT", base+"/api/drops/"+open.Drop.ID+"/image", map[string]string{"sha256": rec.SHA256}, nil); st != 200 {
		t.Fatalf("image for the drop: %d", st)
	}
	for _, u := range []string{"u1", "u2"} {
		if st, err := api(t, "POST", base+"/api/drops/"+open.Drop.ID+"/claims", map[string]string{"user_id": u}, nil); st != 200 || err != nil {
			t.Fatalf("claim: %d %v", st, err)
		}
	}
	if st, _ := api(t, "POST", base+"/api/drops/"+open.Drop.ID+"/close", map[string]any{}, nil); st != 200 {
		t.Fatalf("close: %d", st)
	}
	var shopDrop claims.DropResponse
	// The channel is free once the closed drop's decider is done.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := api(t, "POST", base+"/api/drops", map[string]any{"channel": "streamer", "sku": "CAP", "title": "Cap",
			"stock": 2, "duration": "1m", "grace": "0s", "policy": "fcfs", "creator_id": "shopper", "price_minor": 1500, "currency": "EUR"}, &shopDrop)
		if st == 201 && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("open the second drop: %d %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, _ := api(t, "POST", base+"/api/drops/"+shopDrop.Drop.ID+"/close", map[string]any{}, nil); st != 200 {
		t.Fatalf("close: %d", st)
	}

	// A session to export: the stream that carried the drop.
	store, err := highlight.OpenSQLite(ctx, highlightsDB(data))
	if err != nil {
		t.Fatal(err)
	}
	start := open.Drop.OpensAt.Add(-time.Minute)
	session := highlight.Session{ID: highlight.SessionID("live", start), Path: "live", Channel: "streamer", StartedAt: start, EndedAt: time.Now().Add(time.Minute)}
	if err := store.SaveSession(ctx, session); err != nil {
		t.Fatal(err)
	}
	store.Close()
	bundle := filepath.Join(t.TempDir(), "bundle.zip")
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"export", "--data", data, "--config", cfgPath, "--session", session.ID, "--out", bundle, "--public-url", base}, &out, &errOut); err != nil {
		t.Fatalf("export: %v\n%s", err, errOut.String())
	}
	zr, err := zip.OpenReader(bundle)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		files[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	zr.Close()
	var man highlight.Manifest
	if err := json.Unmarshal(files["manifest.json"], &man); err != nil {
		t.Fatal(err)
	}
	if _, ok := files["images/"+rec.SHA256+".jpg"]; !ok || len(man.Offers) != 6 {
		t.Fatalf("bundle: %d offers, product image in it: %v", len(man.Offers), ok)
	}
	for _, o := range man.Offers {
		page := string(files[o.File])
		if o.DropID == shopDrop.Drop.ID {
			if !strings.HasPrefix(o.URL, "https://shop.example/p?") || !strings.Contains(o.URL, "ref=live") || !strings.Contains(page, "Buy in the shop") {
				t.Errorf("%s: the shop creator's link is %s", o.File, o.URL)
			}
			continue
		}
		for _, want := range []string{`src="../images/` + rec.SHA256 + `.jpg"`, "Creator 42", "--accent:#ff3d7f", `<img class="avatar"`,
			`<meta property="og:image" content="` + base + `/images/` + rec.SHA256 + `">`, `<p id="left">3 of 5 left</p>`} {
			if !strings.Contains(page, want) {
				t.Errorf("%s lacks %s", o.File, want)
			}
		}
		// The buy link and the share image answer on the real server.
		for _, link := range []string{o.URL, base + "/images/" + rec.SHA256} {
			u, err := url.Parse(link)
			if err != nil || u.Host != strings.TrimPrefix(base, "http://") {
				t.Fatalf("%s links off the server: %s", o.File, link)
			}
			resp, err := http.Get(link)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: GET %s = %d", o.File, link, resp.StatusCode)
			}
		}
	}

	pub := filepath.Join(data, imageSigningKeyFile+".pub")
	out.Reset()
	if err := run(ctx, []string{"verify", "--key", pub, bundle}, &out, &errOut); err != nil || !strings.Contains(out.String(), "ok: ") ||
		!strings.Contains(out.String(), "manifest signed by key") {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	// Swap the product image for the avatar, in a copy of the zip.
	swapped := filepath.Join(t.TempDir(), "swapped.zip")
	f, _ := os.Create(swapped)
	zw := zip.NewWriter(f)
	var avatarFile string
	for _, im := range man.Images {
		if im.Role == highlight.ImageAvatar {
			avatarFile = im.File
		}
	}
	for name, b := range files {
		if name == "images/"+rec.SHA256+".jpg" {
			b = files[avatarFile]
		}
		w, _ := zw.Create(name)
		w.Write(b)
	}
	zw.Close()
	f.Close()
	out.Reset()
	err = run(ctx, []string{"verify", "--key", pub, swapped}, &out, &errOut)
	if err == nil || !strings.Contains(out.String(), "FAIL images/"+rec.SHA256+".jpg") {
		t.Errorf("verify of a bundle with a swapped image: %v\n%s", err, out.String())
	}
}

// TestServeSaysVerticalExportIsOff: without ffmpeg on PATH, serve says at
// start that vertical export is off (and why), and still starts.
func TestServeSaysVerticalExportIsOff(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var logs bytes.Buffer
	m := NewMain(io.Discard, &lockedWriter{w: &logs})
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--rtsp", "off", "--data", t.TempDir()}, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out := fmt.Sprint(&logs)
	if !strings.Contains(out, "vertical 9:16 clip export is off") || !strings.Contains(out, "ffmpeg not found") {
		t.Errorf("serve without ffmpeg does not say vertical export is off:\n%s", out)
	}
}
