// The audio cue, exactly as ingest/cue/SPEC.md (version 1) says: 16-FSK,
// 4 preamble + 12 data symbols of 60 ms, raised-cosine ramps, built as a
// 48 kHz AudioBuffer so it is sample-exact. microdrop's Go detector hears it.
(function () {
  "use strict";
  var FS = 48000, N = 2880, R = 240, A = 0.891251;

  function crc16ccittFalse(bytes) {
    var c = 0xffff;
    for (var k = 0; k < bytes.length; k++) {
      c ^= bytes[k] << 8;
      for (var i = 0; i < 8; i++) c = (c & 0x8000) ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    }
    return c;
  }

  function symbols(code) {
    code = code >>> 0;
    var check = crc16ccittFalse([code >>> 24, (code >>> 16) & 255, (code >>> 8) & 255, code & 255]);
    var hi = (code ^ 0x9e3779b9) >>> 0;
    var lo = check ^ 0x7f4a;
    var s = [0, 15, 5, 10];
    for (var i = 0; i < 8; i++) s.push((hi >>> (28 - 4 * i)) & 15);
    for (var j = 0; j < 4; j++) s.push((lo >>> (12 - 4 * j)) & 15);
    return s;
  }

  function tone(profile, k) {
    return profile === "ultrasonic" ? 16000 + 100 * k : 1600 + 200 * k;
  }

  // buffer returns the cue as a mono AudioBuffer at 48 kHz, whatever the
  // context's own rate (WebAudio resamples; the tones keep their frequencies).
  function buffer(ctx, code, profile) {
    var s = symbols(code);
    var buf = ctx.createBuffer(1, 16 * N, FS);
    var x = buf.getChannelData(0);
    for (var j = 0; j < 16; j++) {
      var F = tone(profile, s[j]);
      for (var m = 0; m < N; m++) {
        var w = 1;
        if (m < R) w = 0.5 * (1 - Math.cos(Math.PI * (m + 0.5) / R));
        else if (m >= N - R) w = 0.5 * (1 - Math.cos(Math.PI * (N - m - 0.5) / R));
        x[j * N + m] = A * w * Math.sin(2 * Math.PI * F * m / FS);
      }
    }
    return buf;
  }

  // play schedules the cue at ctx time `when` through a GainNode of `gain`
  // (0.1 = the spec's -20 dB) and nothing else: no compressor, no reverb.
  function play(ctx, code, profile, gain, when) {
    var src = ctx.createBufferSource();
    src.buffer = buffer(ctx, code, profile);
    var g = ctx.createGain();
    g.gain.value = gain;
    src.connect(g);
    g.connect(ctx.destination);
    src.start(when);
    return src;
  }

  window.MicrodropCue = { symbols: symbols, buffer: buffer, play: play, crc16: crc16ccittFalse };
})();
