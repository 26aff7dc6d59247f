package overlay_test

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/ingest/cue"
)

// listenBrowser starts Chromium as a phone whose microphone hears wav (on a
// loop): the flags of browser() plus Chromium's fake capture devices.
func listenBrowser(t *testing.T, wav string, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required in CI: %v", err)
		}
		t.Skip("install with: apt-get install -y chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(390, 844),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-audio-capture", wav),
	)
	if len(extra) == 0 {
		opts = append(opts, chromedp.Flag("use-fake-ui-for-media-stream", true))
	}
	opts = append(opts, extra...)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// programmeWAV writes 6 s of programme (chords and hiss, RMS about
// −20 dBFS) with the cue of each code mixed in at −20 dB, one every 3 s.
func programmeWAV(t *testing.T, codes ...uint32) string {
	t.Helper()
	const rate, seconds = cue.SampleRate, 6
	rng := rand.New(rand.NewPCG(16, 1))
	x := make([]float32, seconds*rate)
	notes := []float64{220, 277.2, 329.6, 440, 554.4}
	for i := range x {
		tt := float64(i) / rate
		var v float64
		for k, f := range notes {
			v += 0.04 / float64(k+1) * math.Sin(2*math.Pi*f*tt*(1+0.003*math.Sin(2*math.Pi*5*tt)))
		}
		x[i] = float32(v + 0.01*(2*rng.Float64()-1))
	}
	for i, c := range codes {
		s, err := cue.Encode(c, cue.Audible)
		if err != nil {
			t.Fatal(err)
		}
		cue.Mix(x[rate/2+i*3*rate:], s, -20)
	}
	var b bytes.Buffer
	if err := cue.WriteWAV(&b, x, rate); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "room.wav")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// requestLog records every request the page makes, with its body size, so
// the test can show that no audio ever leaves the phone.
type requestLog struct {
	mu   sync.Mutex
	reqs []*network.Request
}

func (l *requestLog) listen(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			l.mu.Lock()
			l.reqs = append(l.reqs, e.Request)
			l.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
}

// check fails unless every request is a page or asset GET or the claim
// form, whose body is only the session's CSRF token and the 8 hex digits
// heard.
func (l *requestLog) check(t *testing.T, dropID string) (posts int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.reqs {
		if r.Method == "GET" {
			continue
		}
		posts++
		body := ""
		for _, e := range r.PostDataEntries {
			body += string(e.Bytes)
		}
		if r.Method != "POST" || !strings.HasSuffix(r.URL, "/c/"+dropID) || len(body) > 300 {
			t.Errorf("request %s %s with %d bytes of body", r.Method, r.URL, len(body))
		}
	}
	return posts
}

// openClaimPage opens the claim page as a phone that scanned the QR code,
// signs in there as login with the test Twitch, and taps Listen. Requests
// are logged from then on: sign-in is not the listening page's doing.
func openClaimPage(t *testing.T, ctx context.Context, e *env, dropID, login string) *requestLog {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(c,
		chromedp.Navigate(e.ts.URL+"/c/"+dropID),
		chromedp.WaitVisible(chromedp.ID("signin-twitch")),
		chromedp.Click(chromedp.ID("signin-twitch")),
		chromedp.WaitVisible(chromedp.ID("signin-"+login)), // the provider's page
		chromedp.Click(chromedp.ID("signin-"+login)),
		chromedp.WaitVisible(chromedp.ID("claim-listen")),
	); err != nil {
		t.Fatal(err)
	}
	if who := eval[string](t, ctx, `document.getElementById("claim-who").textContent`); who != login {
		t.Fatalf("signed in as %q, want %q", who, login)
	}
	log := &requestLog{}
	log.listen(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("claim-listen"))); err != nil {
		t.Fatal(err)
	}
	return log
}

// waitAcross is waitFor for a condition on a page that submits a form
// meanwhile: a poll cut off by the navigation is tried again.
func waitAcross(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := chromedp.Run(c, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			// What the page told the viewer, to tell a deaf page from a slow one.
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			status, _ := chromedp.Run(c, chromedp.Evaluate[string](`(document.getElementById("listen-status") || document.body).textContent`))
			cancel()
			t.Fatalf("waiting for %s (%s): %v; the page says %q", what, expr, err, strings.TrimSpace(status))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestListenToClaimInChromium(t *testing.T) {
	t.Run("HearsTheCurrentStep", func(t *testing.T) {
		e := newSignedInEnv(t)
		dr := e.openDrop(`{"channel":"streamer","sku":"hoodie","stock":5,"duration":"5m","listen":true,"listen_step":"60s","policy":"fcfs"}`)
		d, err := e.svc.Drop(context.Background(), dr.Drop.ID)
		if err != nil || dr.Drop.ListenStepMS != 60000 {
			t.Fatalf("drop %+v, %v", dr.Drop, err)
		}
		// Step 1 lasts a minute: the file carries its code, as the overlay plays it.
		ctx := listenBrowser(t, programmeWAV(t, d.CueCodeAt(1), d.CueCodeAt(1)))
		log := openClaimPage(t, ctx, e, d.ID, "viewer1")
		waitAcross(t, ctx, "the claim result", `!!document.getElementById("claim-result")`)
		if got := eval[string](t, ctx, `document.getElementById("claim-result").dataset.outcome`); got != claims.OutcomeWon {
			t.Fatalf("outcome %q, want won (page: %s)", got, eval[string](t, ctx, `document.body.innerText`))
		}
		if !strings.Contains(eval[string](t, ctx, `document.body.innerText`), "Pickup code") {
			t.Fatal("no pickup code on the page")
		}
		es, err := e.svc.Audit(context.Background(), d.ID)
		if err != nil || es.Awarded != 1 {
			t.Fatalf("audit %+v, %v", es, err)
		}
		ps, err := e.svc.Status(context.Background(), d.ID, "555") // viewer1's Twitch id
		if err != nil || len(ps) != 1 {
			t.Fatalf("pickups of the phone's viewer: %v %v", ps, err)
		}
		if posts := log.check(t, d.ID); posts != 1 {
			t.Fatalf("%d requests with a body, want the one claim", posts)
		}
		closeDrop(t, e, d.ID)
	})
	t.Run("RefusesAStaleCode", func(t *testing.T) {
		e := newSignedInEnv(t)
		dr := e.openDrop(`{"channel":"streamer","sku":"cap","stock":5,"duration":"5m","listen":true,"listen_step":"2s","grace":"0s","policy":"fcfs"}`)
		d, err := e.svc.Drop(context.Background(), dr.Drop.ID)
		if err != nil {
			t.Fatal(err)
		}
		// The file replays step 1's code; by the time the phone hears it
		// the drop is at least in step 3: two steps stale, no grace.
		wav := programmeWAV(t, d.CueCodeAt(1), d.CueCodeAt(1))
		for d.StepAt(time.Now()) < 3 {
			time.Sleep(100 * time.Millisecond)
		}
		ctx := listenBrowser(t, wav)
		log := openClaimPage(t, ctx, e, d.ID, "viewer2")
		waitAcross(t, ctx, "the refusal", `!!document.getElementById("claim-error")`)
		msg := eval[string](t, ctx, `document.getElementById("claim-error").textContent`)
		if !strings.Contains(msg, "too late") {
			t.Fatalf("refusal %q, want it to say the code was heard too late", msg)
		}
		if a, err := e.svc.Audit(context.Background(), d.ID); err != nil || a.Entries != 0 {
			t.Fatalf("audit after a stale code: %+v %v", a, err)
		}
		log.check(t, d.ID)
		closeDrop(t, e, d.ID)
	})
	t.Run("TellsWhenTheMicrophoneIsRefused", func(t *testing.T) {
		e := newSignedInEnv(t)
		dr := e.openDrop(`{"channel":"streamer","sku":"pin","stock":5,"duration":"5m","listen":true,"policy":"fcfs"}`)
		ctx := listenBrowser(t, programmeWAV(t), chromedp.Flag("deny-permission-prompts", true))
		log := openClaimPage(t, ctx, e, dr.Drop.ID, "viewer1")
		waitFor(t, ctx, "the refusal hint", `document.getElementById("claim-listen-box").dataset.refused === "1"`)
		if txt := eval[string](t, ctx, `document.getElementById("listen-status").textContent`); !strings.Contains(txt, "microphone was refused") {
			t.Fatalf("status %q", txt)
		}
		if posts := log.check(t, dr.Drop.ID); posts != 0 {
			t.Fatalf("%d requests with a body after the microphone was refused", posts)
		}
		closeDrop(t, e, dr.Drop.ID)
	})
	t.Run("NoCueClaimsNothing", func(t *testing.T) {
		e := newSignedInEnv(t)
		dr := e.openDrop(`{"channel":"streamer","sku":"mug","stock":5,"duration":"5m","listen":true,"policy":"fcfs"}`)
		ctx := listenBrowser(t, programmeWAV(t))
		log := openClaimPage(t, ctx, e, dr.Drop.ID, "viewer2")
		waitFor(t, ctx, "the nothing-heard hint", `document.getElementById("claim-listen-box").dataset.quiet === "1"`)
		if txt := eval[string](t, ctx, `document.getElementById("listen-status").textContent`); !strings.Contains(txt, "Nothing heard") {
			t.Fatalf("status %q", txt)
		}
		if posts := log.check(t, dr.Drop.ID); posts != 0 {
			t.Fatalf("%d requests with a body from a page that heard nothing", posts)
		}
		if a, err := e.svc.Audit(context.Background(), dr.Drop.ID); err != nil || a.Entries != 0 {
			t.Fatalf("audit after silence: %+v %v", a, err)
		}
		closeDrop(t, e, dr.Drop.ID)
	})
}

func closeDrop(t *testing.T, e *env, id string) {
	t.Helper()
	if _, err := e.svc.CloseDrop(context.Background(), id, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, live := e.svc.Live(testChannel); !live {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("drop %s still live", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
