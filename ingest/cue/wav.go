package cue

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// maxWAVSamples caps how much audio ReadWAV will hold (one hour of 48 kHz stereo), so a
// hostile header cannot make it allocate without bound.
const maxWAVSamples = 3600 * 48000 * 2

// ReadWAV reads a 16-bit PCM WAV file (mono or stereo; stereo is averaged to mono) and
// returns its samples scaled to [-1, 1) and its sample rate. Streamed WAVs whose data chunk
// size is 0 or 0xFFFFFFFF (as ffmpeg writes to a pipe) are read to the end of the input.
func ReadWAV(r io.Reader) (samples []float32, rate int, err error) {
	br := bufio.NewReader(r)
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, 0, fmt.Errorf("%w: reading RIFF header: %w", ErrWAV, err)
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return nil, 0, fmt.Errorf("%w: not a RIFF/WAVE file", ErrWAV)
	}
	channels := 0
	for {
		var ch [8]byte
		if _, err := io.ReadFull(br, ch[:]); err != nil {
			return nil, 0, fmt.Errorf("%w: no data chunk: %w", ErrWAV, err)
		}
		id, size := string(ch[0:4]), binary.LittleEndian.Uint32(ch[4:8])
		switch id {
		case "fmt ":
			if size < 16 || size > 1<<16 {
				return nil, 0, fmt.Errorf("%w: fmt chunk of %d bytes", ErrWAV, size)
			}
			buf := make([]byte, size+size%2)
			if _, err := io.ReadFull(br, buf); err != nil {
				return nil, 0, fmt.Errorf("%w: reading fmt chunk: %w", ErrWAV, err)
			}
			format := binary.LittleEndian.Uint16(buf[0:2])
			channels = int(binary.LittleEndian.Uint16(buf[2:4]))
			rate = int(binary.LittleEndian.Uint32(buf[4:8]))
			bits := binary.LittleEndian.Uint16(buf[14:16])
			if format == 0xFFFE && size >= 40 { // WAVE_FORMAT_EXTENSIBLE: the subformat decides
				format = binary.LittleEndian.Uint16(buf[24:26])
			}
			if format != 1 || bits != 16 {
				return nil, 0, fmt.Errorf("%w: format %d with %d bits (want 16-bit PCM)", ErrWAV, format, bits)
			}
			if channels != 1 && channels != 2 {
				return nil, 0, fmt.Errorf("%w: %d channels (want 1 or 2)", ErrWAV, channels)
			}
			if rate <= 0 || rate > 768000 {
				return nil, 0, fmt.Errorf("%w: sample rate %d", ErrWAV, rate)
			}
		case "data":
			if channels == 0 {
				return nil, 0, fmt.Errorf("%w: data chunk before fmt chunk", ErrWAV)
			}
			var body io.Reader = br
			if size != 0 && size != 0xFFFFFFFF {
				body = io.LimitReader(br, int64(size))
			}
			samples, err := readPCM16(body, channels)
			if err != nil {
				return nil, 0, err
			}
			return samples, rate, nil
		default:
			if _, err := io.CopyN(io.Discard, br, int64(size)+int64(size%2)); err != nil {
				return nil, 0, fmt.Errorf("%w: skipping %q chunk: %w", ErrWAV, id, err)
			}
		}
	}
}

func readPCM16(r io.Reader, channels int) ([]float32, error) {
	frame := 2 * channels
	buf := make([]byte, 64*1024*frame)
	var out []float32
	for {
		n, err := io.ReadFull(r, buf)
		n -= n % frame // a torn last frame is dropped, not an error: pipes end where they end
		for i := 0; i < n; i += frame {
			v := float32(int16(binary.LittleEndian.Uint16(buf[i:])))
			if channels == 2 {
				v = (v + float32(int16(binary.LittleEndian.Uint16(buf[i+2:])))) / 2
			}
			out = append(out, v/32768)
		}
		if len(out) > maxWAVSamples {
			return nil, fmt.Errorf("%w: longer than %d samples", ErrWAV, maxWAVSamples)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading samples: %w", ErrWAV, err)
		}
	}
}

// WriteWAV writes mono samples as a 16-bit PCM WAV at rate. Samples outside [-1, 1] are
// clamped; ±1 maps to ±32767.
func WriteWAV(w io.Writer, samples []float32, rate int) error {
	if rate <= 0 {
		return fmt.Errorf("%w: sample rate %d", ErrWAV, rate)
	}
	if len(samples) > (math.MaxUint32-36)/2 {
		return fmt.Errorf("%w: %d samples do not fit a WAV file", ErrWAV, len(samples))
	}
	bw := bufio.NewWriter(w)
	dataLen := uint32(2 * len(samples))
	var h [44]byte
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], 36+dataLen)
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], uint32(rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(rate)*2)
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], dataLen)
	if _, err := bw.Write(h[:]); err != nil {
		return err
	}
	var s [2]byte
	for _, x := range samples {
		v := math.Round(float64(x) * 32767)
		if v != v {
			v = 0
		}
		binary.LittleEndian.PutUint16(s[:], uint16(int16(max(-32768, min(32767, v)))))
		if _, err := bw.Write(s[:]); err != nil {
			return err
		}
	}
	return bw.Flush()
}
