package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/microdrop/microdrop/ingest/cue"
)

const cueUsage = `Usage:
  microdrop cue encode --code N --out cue.wav [--profile audible|ultrasonic] [--level DB]
  microdrop cue detect [--json] [--profile audible|ultrasonic] FILE|URL

encode writes one cue carrying code N (decimal or 0x hex, 32 bits) as a 48 kHz 16-bit WAV,
at --level dB relative to full scale (default 0: the cue's own -1 dBFS peak).
detect prints one line per cue heard: a 16-bit WAV is read directly; any other file or URL
(rtsp://, http://, mp4, aac, ...) is decoded through ffmpeg. With --json each cue is one JSON
line {"code": N, "start_ms": T, "snr_db": S}.
`

func runCue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, cueUsage)
		return errors.New("cue: say encode or detect")
	}
	switch args[0] {
	case "encode":
		return runCueEncode(args[1:], stdout, stderr)
	case "detect":
		return runCueDetect(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, cueUsage)
		return nil
	}
	fmt.Fprint(stderr, cueUsage)
	return fmt.Errorf("cue: unknown subcommand %q (want encode or detect)", args[0])
}

func runCueEncode(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop cue encode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	codeStr := fs.String("code", "", "cue code, 0..4294967295 (decimal or 0x hex)")
	out := fs.String("out", "", "WAV file to write")
	profile := fs.String("profile", string(cue.Audible), "audible or ultrasonic")
	level := fs.Float64("level", 0, "level in dB relative to the cue's full level (0 or less)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cue encode: unexpected argument %q", fs.Arg(0))
	}
	if *codeStr == "" || *out == "" {
		return errors.New("cue encode: --code and --out are required")
	}
	code, err := strconv.ParseUint(*codeStr, 0, 32)
	if err != nil {
		return fmt.Errorf("cue encode: --code %q is not a 32-bit unsigned number", *codeStr)
	}
	p, err := cue.ParseProfile(*profile)
	if err != nil {
		return fmt.Errorf("cue encode: --profile: %w", err)
	}
	if math.IsNaN(*level) || *level > 0 || *level < -120 {
		return fmt.Errorf("cue encode: --level %v must be between -120 and 0 dB", *level)
	}
	x, err := cue.Encode(uint32(code), p)
	if err != nil {
		return err
	}
	scaled := make([]float32, len(x))
	cue.Mix(scaled, x, *level)
	var buf bytes.Buffer
	if err := cue.WriteWAV(&buf, scaled, cue.SampleRate); err != nil {
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("cue encode: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: cue %#08x (%d), %s profile, %v at %.1f dB\n",
		*out, code, code, p, cue.Duration(p), *level)
	return nil
}

func runCueDetect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop cue detect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object per cue")
	profile := fs.String("profile", "", "listen for only this profile (default: both)")
	// Accept flags before and after the input, as people type them both ways.
	var inputs []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		inputs = append(inputs, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(inputs) != 1 {
		return fmt.Errorf("cue detect: want exactly one FILE or URL, got %d", len(inputs))
	}
	var profiles []cue.Profile
	if *profile != "" {
		p, err := cue.ParseProfile(*profile)
		if err != nil {
			return fmt.Errorf("cue detect: --profile: %w", err)
		}
		profiles = append(profiles, p)
	}
	input := inputs[0]
	report := func(d cue.Detection) error {
		var err error
		if *asJSON {
			err = json.NewEncoder(stdout).Encode(struct {
				Code    uint32  `json:"code"`
				StartMS float64 `json:"start_ms"`
				SNRDB   float64 `json:"snr_db"`
			}{d.Code, math.Round(float64(d.Start)/float64(time.Millisecond)*10) / 10, math.Round(d.SNRDB*10) / 10})
		} else {
			_, err = fmt.Fprintf(stdout, "cue %#08x (%d) %s at %.3fs snr %.1f dB\n",
				d.Code, d.Code, d.Profile, d.Start.Seconds(), d.SNRDB)
		}
		return err
	}

	if strings.HasSuffix(strings.ToLower(input), ".wav") && !strings.Contains(input, "://") {
		f, err := os.Open(input)
		if err != nil {
			return fmt.Errorf("cue detect: %w", err)
		}
		samples, rate, err := cue.ReadWAV(f)
		f.Close()
		switch {
		case err == nil:
			d := cue.NewDetector(rate, profiles...)
			if len(d.Profiles()) == 0 {
				return fmt.Errorf("cue detect: %s is %d Hz, too low for the requested profiles", input, rate)
			}
			n := 0
			for _, det := range append(d.Write(samples), d.Flush()...) {
				if err := report(det); err != nil {
					return err
				}
				n++
			}
			fmt.Fprintf(stderr, "%d cue(s) in %.1fs of audio\n", n, float64(len(samples))/float64(rate))
			return nil
		case !errors.Is(err, cue.ErrWAV):
			return fmt.Errorf("cue detect: %w", err)
		}
		// Not a WAV we read ourselves (float, 24-bit, ...): ffmpeg can.
	}
	return detectViaFFmpeg(ctx, input, profiles, report, stderr)
}

// detectViaFFmpeg decodes any input ffmpeg understands to 48 kHz mono s16le and feeds it to
// a Detector as it arrives, so live URLs report cues while they play.
func detectViaFFmpeg(ctx context.Context, input string, profiles []cue.Profile, report func(cue.Detection) error, stderr io.Writer) error {
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		return fmt.Errorf("cue detect: reading %s needs ffmpeg, which is not installed (apt-get install -y ffmpeg), or give a 16-bit PCM WAV file", input)
	}
	if !strings.Contains(input, "://") {
		if _, err := os.Stat(input); err != nil {
			return fmt.Errorf("cue detect: %w", err)
		}
	}
	ffArgs := []string{"-nostdin", "-hide_banner", "-loglevel", "error"}
	if strings.HasPrefix(strings.ToLower(input), "rtsp://") || strings.HasPrefix(strings.ToLower(input), "rtsps://") {
		ffArgs = append(ffArgs, "-rtsp_transport", "tcp")
	}
	ffArgs = append(ffArgs, "-i", input, "-vn", "-f", "s16le", "-ac", "1", "-ar", "48000", "-")
	cmd := exec.CommandContext(ctx, bin, ffArgs...)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cue detect: starting ffmpeg: %w", err)
	}
	d := cue.NewDetector(cue.SampleRate, profiles...)
	r := bufio.NewReaderSize(out, 64*1024)
	raw := make([]byte, 9600) // 100 ms
	pcm := make([]float32, 0, len(raw)/2)
	var total int64
	n := 0
	var reportErr error
	emit := func(ds []cue.Detection) {
		for _, det := range ds {
			if reportErr == nil {
				reportErr = report(det)
			}
			n++
		}
	}
	for reportErr == nil {
		k, err := io.ReadFull(r, raw)
		k -= k % 2
		pcm = pcm[:0]
		for i := 0; i < k; i += 2 {
			pcm = append(pcm, float32(int16(binary.LittleEndian.Uint16(raw[i:])))/32768)
		}
		total += int64(len(pcm))
		emit(d.Write(pcm))
		if err != nil {
			break
		}
	}
	emit(d.Flush())
	if reportErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	if reportErr != nil {
		return reportErr
	}
	if ctx.Err() != nil {
		return nil // interrupted: what was heard has been printed
	}
	if waitErr != nil {
		msg := strings.TrimSpace(errBuf.String())
		if len(msg) > 500 {
			msg = msg[len(msg)-500:]
		}
		return fmt.Errorf("cue detect: ffmpeg could not decode %s: %v: %s", input, waitErr, msg)
	}
	fmt.Fprintf(stderr, "%d cue(s) in %.1fs of audio\n", n, float64(total)/cue.SampleRate)
	return nil
}
