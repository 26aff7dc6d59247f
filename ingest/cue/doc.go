// Package cue is microdrop's audio cue codec: it turns a 32-bit cue code into a short
// 16-FSK tone burst (Encode), mixes that burst into programme audio (Mix), and hears cues
// again in a programme feed (Detector, DetectAll), so microdrop can measure how late the
// stream reaches viewers.
//
// The signal is specified in SPEC.md, which is shared with the overlay's WebAudio
// JavaScript; any change to the waveform is a change to SPEC.md first. The package also
// reads and writes 16-bit PCM WAV files, the format its tests and the `microdrop cue`
// command exchange with ffmpeg.
//
// The package owns only signal processing. It must never do I/O beyond the io.Reader and
// io.Writer it is handed, never start processes (ffmpeg lives in cmd/ and tests), never
// log, and never keep package-level mutable state: a Detector is the only thing that
// remembers anything, and it remembers a bounded window of audio.
package cue
