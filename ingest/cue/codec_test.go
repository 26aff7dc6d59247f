package cue

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/thesyncim/gopus"
)

// opusRoundTrip encodes mono 48 kHz PCM as Opus in 20 ms frames at bitrate and decodes it
// again, as the media relay's Opus path does.
func opusRoundTrip(tb testing.TB, x []float32, bitrate int, app gopus.Application) []float32 {
	tb.Helper()
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: SampleRate, Channels: 1, Application: app})
	if err != nil {
		tb.Fatal(err)
	}
	if err := enc.SetBitrate(bitrate); err != nil {
		tb.Fatal(err)
	}
	cfg := gopus.DefaultDecoderConfig(SampleRate, 1)
	dec, err := gopus.NewDecoder(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	const frame = SampleRate / 50
	packet := make([]byte, 4000)
	pcm := make([]float32, cfg.MaxPacketSamples)
	out := make([]float32, 0, len(x))
	for i := 0; i+frame <= len(x); i += frame {
		n, err := enc.Encode(x[i:i+frame], packet)
		if err != nil {
			tb.Fatal(err)
		}
		m, err := dec.Decode(packet[:n], pcm)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, pcm[:m]...)
	}
	return out
}

// opusDelay is the Opus encoder's lookahead (2.5 ms + 4 ms at 48 kHz) that every decoded
// sample lags its input by.
const opusDelay = 312 * time.Second / SampleRate

func TestOpusRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(31, 32))
	music := musicLike(33, 8*SampleRate, SampleRate)
	speech := speechLike(34, 8*SampleRate, SampleRate)
	for _, tc := range []struct {
		name     string
		profile  Profile
		bitrate  int
		app      gopus.Application
		prog     []float32
		required bool
	}{
		{"audible/32k/audio/music", Audible, 32000, gopus.ApplicationAudio, music, true},
		{"audible/32k/voip/speech", Audible, 32000, gopus.ApplicationVoIP, speech, true},
		{"ultrasonic/32k/audio/music", Ultrasonic, 32000, gopus.ApplicationAudio, music, false},
		{"ultrasonic/32k/audio/speech", Ultrasonic, 32000, gopus.ApplicationAudio, speech, false},
		{"ultrasonic/32k/voip/speech", Ultrasonic, 32000, gopus.ApplicationVoIP, speech, false},
		{"audible/16k/voip/speech", Audible, 16000, gopus.ApplicationVoIP, speech, false},
		{"ultrasonic/64k/audio/music", Ultrasonic, 64000, gopus.ApplicationAudio, music, true},
		{"ultrasonic/96k/audio/speech", Ultrasonic, 96000, gopus.ApplicationAudio, speech, true},
	} {
		cues := spread(rng, tc.profile, 4, SampleRate, 0.3, 0.98)
		x := opusRoundTrip(t, withCues(t, tc.prog, cues, -20), tc.bitrate, tc.app)
		got := DetectAll(x, SampleRate)
		if tc.required {
			worst := matchDetections(t, got, cues, SampleRate, opusDelay)
			t.Logf("%s: %d/%d cues read, worst start error %v after removing the %v codec delay, SNR %s",
				tc.name, len(got), len(cues), worst, opusDelay, snrs(got))
			continue
		}
		// Not required to survive, but whatever is heard must be right: a wrong code
		// would be worse than none.
		for _, d := range got {
			if !containsCode(cues, d.Code) {
				t.Errorf("%s: detected code %#08x that was never sent", tc.name, d.Code)
			}
		}
		t.Logf("%s (not required): %d/%d cues read, SNR %s", tc.name, len(got), len(cues), snrs(got))
	}
}

func containsCode(cues []placed, code uint32) bool {
	for _, c := range cues {
		if c.code == code {
			return true
		}
	}
	return false
}

func snrs(ds []Detection) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%.0f ", d.SNRDB)
	}
	return strings.TrimSpace(b.String()) + " dB"
}

// needTool skips the test when an external tool is missing, except in CI, where missing
// tools mean the CI image is wrong.
func needTool(tb testing.TB, names ...string) {
	tb.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") == "true" {
				tb.Fatalf("%s not found in CI: %v", name, err)
			}
			tb.Skip("install with: apt-get install -y ffmpeg espeak-ng")
		}
	}
}

func run(tb testing.TB, stdin []byte, name string, args ...string) []byte {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

func wavBytes(tb testing.TB, x []float32, rate int) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := WriteWAV(&b, x, rate); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func readWAVBytes(tb testing.TB, b []byte) ([]float32, int) {
	tb.Helper()
	x, rate, err := ReadWAV(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	return x, rate
}

// aacRoundTrip runs the real ffmpeg AAC encoder at bitrate and decodes the ADTS stream back.
func aacRoundTrip(tb testing.TB, x []float32, bitrate string) []float32 {
	tb.Helper()
	adts := run(tb, wavBytes(tb, x, SampleRate), "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "wav", "-i", "-", "-c:a", "aac", "-b:a", bitrate, "-f", "adts", "-")
	out := run(tb, adts, "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "aac", "-i", "-", "-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le", "-f", "wav", "-")
	y, rate := readWAVBytes(tb, out)
	if rate != SampleRate {
		tb.Fatalf("ffmpeg returned %d Hz", rate)
	}
	return y
}

// aacDelay is the AAC encoder's priming: ADTS carries no edit list, so the decoded audio
// starts 1024 samples late.
const aacDelay = 1024 * time.Second / SampleRate

func TestAACRoundTrip(t *testing.T) {
	t.Parallel()
	needTool(t, "ffmpeg")
	rng := rand.New(rand.NewPCG(41, 42))
	prog := musicLike(43, 12*SampleRate, SampleRate)
	Mix(prog, speechLike(44, len(prog), SampleRate), -3)
	for _, tc := range []struct {
		profile Profile
		bitrate string
	}{{Audible, "128k"}, {Ultrasonic, "128k"}, {Audible, "64k"}} {
		cues := spread(rng, tc.profile, 5, SampleRate, 0.5, 1.05)
		got := DetectAll(aacRoundTrip(t, withCues(t, prog, cues, -20), tc.bitrate), SampleRate)
		worst := matchDetections(t, got, cues, SampleRate, aacDelay)
		t.Logf("%s AAC %s: %d/%d cues read, worst start error %v after removing the %v priming, SNR %s",
			tc.profile, tc.bitrate, len(got), len(cues), worst, aacDelay, snrs(got))
	}
}

// TestRealSpeechAndMusic uses espeak-ng speech and an ffmpeg-synthesised chord progression
// (harmonics, vibrato, tremolo and pink noise) as programme, both at broadcast-like level.
func TestRealSpeechAndMusic(t *testing.T) {
	t.Parallel()
	needTool(t, "ffmpeg", "espeak-ng")
	dir := t.TempDir()
	speechWAV := dir + "/speech.wav"
	run(t, nil, "espeak-ng", "-s", "170", "-w", speechWAV,
		"Welcome back everyone. The hoodie drop opens right now, fifty pieces, ninety seconds. "+
			"Type claim in chat to get in line. Remember, the code is on screen and in the sound. "+
			"Good luck, and thanks for hanging out tonight, this has been a wild stream.")
	speech, _ := readWAVBytes(t, run(t, nil, "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-i", speechWAV, "-af", "loudnorm=I=-18:TP=-1", "-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le", "-f", "wav", "-"))
	chord := "0.12*sin(2*PI*t*220*(1+0.005*sin(2*PI*5*t)))+0.06*sin(4*PI*t*220)+0.04*sin(6*PI*t*220)+" +
		"0.1*sin(2*PI*t*277.2*(1+0.004*sin(2*PI*6*t)))+0.05*sin(4*PI*t*277.2)+0.03*sin(8*PI*t*277.2)+" +
		"0.1*sin(2*PI*t*329.6)*(0.7+0.3*sin(2*PI*3*t))+0.05*sin(6*PI*t*329.6)+0.03*sin(10*PI*t*329.6)+" +
		"0.06*sin(2*PI*t*(880+110*(floor(2*t)-4*floor(t/2))))"
	music, _ := readWAVBytes(t, run(t, nil, "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "aevalsrc="+chord+":s=48000:d=14",
		"-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.05:d=14:r=48000",
		"-filter_complex", "amix=inputs=2:normalize=0", "-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le", "-f", "wav", "-"))
	rng := rand.New(rand.NewPCG(51, 52))
	for _, prog := range []struct {
		name string
		x    []float32
	}{{"espeak-ng speech", speech}, {"ffmpeg lavfi music", music}} {
		if len(prog.x) < 8*SampleRate {
			t.Fatalf("%s: only %d samples", prog.name, len(prog.x))
		}
		for _, p := range Profiles() {
			n := (len(prog.x)/SampleRate - 1) / 2
			cues := spread(rng, p, n, SampleRate, 0.3, 1.0)
			got := DetectAll(withCues(t, prog.x, cues, -20), SampleRate)
			matchDetections(t, got, cues, SampleRate, 0)
			margin := detectionMargin(t, prog.x, cues)
			t.Logf("%s (RMS %.1f dBFS), %s: %d/%d read at -20 dB, margin %.0f dB, SNR %s",
				prog.name, rmsDB(prog.x), p, len(got), len(cues), margin, snrs(got))
		}
	}
}
