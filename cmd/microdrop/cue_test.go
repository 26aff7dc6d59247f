package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/microdrop/microdrop/ingest/cue"
)

func TestCueEncodeThenDetect(t *testing.T) {
	dir := t.TempDir()
	wav := filepath.Join(dir, "cue.wav")
	var out, errOut bytes.Buffer
	if err := runCue(context.Background(), []string{"encode", "--code", "0x12345678", "--out", wav, "--profile", "ultrasonic", "--level", "-6"}, &out, &errOut); err != nil {
		t.Fatalf("encode: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "0x12345678") {
		t.Errorf("encode output %q does not name the code", out.String())
	}
	out.Reset()
	if err := runCue(context.Background(), []string{"detect", wav}, &out, &errOut); err != nil {
		t.Fatalf("detect: %v", err)
	}
	if got := out.String(); !strings.HasPrefix(got, "cue 0x12345678 (305419896) ultrasonic at 0.000s") || strings.Count(got, "\n") != 1 {
		t.Errorf("detect printed %q", got)
	}
	out.Reset()
	if err := runCue(context.Background(), []string{"detect", "--json", wav}, &out, &errOut); err != nil {
		t.Fatalf("detect --json: %v", err)
	}
	var line struct {
		Code    uint32  `json:"code"`
		StartMS float64 `json:"start_ms"`
		SNRDB   float64 `json:"snr_db"`
	}
	if err := json.Unmarshal(out.Bytes(), &line); err != nil || line.Code != 0x12345678 || line.StartMS > 20 || line.SNRDB < cue.MinSNRDB {
		t.Errorf("detect --json printed %q (%v)", out.String(), err)
	}
	// Flags after the file work too, and a profile filter hides the other profile.
	out.Reset()
	if err := runCue(context.Background(), []string{"detect", wav, "--profile", "audible"}, &out, &errOut); err != nil || out.Len() != 0 {
		t.Errorf("detect --profile audible: %v, printed %q; want nothing", err, out.String())
	}
}

func TestCueDetectViaFFmpeg(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg missing in CI")
		}
		t.Skip("install with: apt-get install -y ffmpeg espeak-ng")
	}
	dir := t.TempDir()
	wav, m4a := filepath.Join(dir, "cue.wav"), filepath.Join(dir, "cue.m4a")
	var out, errOut bytes.Buffer
	if err := runCue(context.Background(), []string{"encode", "--code", "77", "--out", wav, "--level", "-20"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	// Pad with a second of silence either side and encode as AAC in MP4.
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-i", wav,
		"-af", "adelay=1000,apad=pad_dur=1", "-c:a", "aac", "-b:a", "128k", m4a)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	out.Reset()
	if err := runCue(context.Background(), []string{"detect", "--json", m4a}, &out, &errOut); err != nil {
		t.Fatalf("detect m4a: %v\n%s", err, errOut.String())
	}
	var line struct {
		Code    uint32  `json:"code"`
		StartMS float64 `json:"start_ms"`
	}
	if err := json.Unmarshal(out.Bytes(), &line); err != nil || line.Code != 77 || line.StartMS < 980 || line.StartMS > 1020 {
		t.Errorf("detect m4a printed %q (%v), want code 77 at 1000±20 ms", out.String(), err)
	}
}

func TestCueBadInput(t *testing.T) {
	dir := t.TempDir()
	notWAV := filepath.Join(dir, "x.wav")
	os.WriteFile(notWAV, []byte("hello"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "encode or detect"},
		{[]string{"transmogrify"}, "unknown subcommand"},
		{[]string{"encode", "--out", filepath.Join(dir, "a.wav")}, "--code and --out are required"},
		{[]string{"encode", "--code", "1"}, "--code and --out are required"},
		{[]string{"encode", "--code", "4294967296", "--out", "a.wav"}, "not a 32-bit"},
		{[]string{"encode", "--code", "-1", "--out", "a.wav"}, "not a 32-bit"},
		{[]string{"encode", "--code", "1", "--out", "a.wav", "--profile", "loud"}, "unknown profile"},
		{[]string{"encode", "--code", "1", "--out", "a.wav", "--level", "6"}, "--level"},
		{[]string{"encode", "--code", "1", "--out", filepath.Join(dir, "no", "such", "a.wav")}, "no such file"},
		{[]string{"encode", "--bogus"}, "flag provided but not defined"},
		{[]string{"detect"}, "exactly one FILE"},
		{[]string{"detect", "a.wav", "b.wav"}, "exactly one FILE"},
		{[]string{"detect", filepath.Join(dir, "missing.wav")}, "no such file"},
		{[]string{"detect", "--profile", "x", "a.wav"}, "unknown profile"},
	} {
		var out, errOut bytes.Buffer
		err := runCue(context.Background(), tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("runCue(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	var out, errOut bytes.Buffer
	if err := runCue(context.Background(), []string{"encode", "-h"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("encode -h: %v, want flag.ErrHelp", err)
	}
	// A broken .wav goes to ffmpeg, which fails with a clear message (or, without ffmpeg,
	// the install hint).
	err := runCue(context.Background(), []string{"detect", notWAV}, &out, &errOut)
	if err == nil || !(strings.Contains(err.Error(), "ffmpeg could not decode") || strings.Contains(err.Error(), "apt-get install")) {
		t.Errorf("detect of a non-WAV: %v", err)
	}
}

func TestCueDetectWithoutFFmpeg(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := runCue(context.Background(), []string{"detect", "rtsp://127.0.0.1:1/live"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y ffmpeg") {
		t.Errorf("without ffmpeg: %v, want the install hint", err)
	}
}
