// The streaming cue detector of ingest/cue/SPEC.md section 9, in JavaScript:
// a line-by-line port of ingest/cue/detect.go (same grid, gates and
// thresholds), so the phone hears what the server hears. The Go tests run
// this file under Node on the shared vectors in ingest/cue/testdata/room/
// and require both detectors to agree.
//
// It runs anywhere: in an AudioWorklet (the claim page), in a page, under
// Node. It keeps per-tone sums, never the audio, and sends nothing anywhere.
(function (root) {
  "use strict";
  var NUM_TONES = 16, BLOCKS_PER_SECOND = 200, BLOCKS_PER_SYMBOL = 12;
  var PREAMBLE = [0, 15, 5, 10], PREAMBLE_SYMBOLS = 4, FRAME_SYMBOLS = 16;
  var FRAME_BLOCKS = FRAME_SYMBOLS * BLOCKS_PER_SYMBOL, RING = 256, LOOKAHEAD = 4;
  var MIN_PREAMBLE_SHARE = 0.3, MAX_PREAMBLE_MISSES = 1, MIN_SNR_DB = 8.0, MAX_NYQUIST_SHARE = 0.95;
  var WHITE_HI = 0x9e3779b9, WHITE_LO = 0x7f4a;

  function toneHz(profile, k) {
    return profile === "ultrasonic" ? 16000 + 100 * k : 1600 + 200 * k;
  }

  function crc16(bytes) {
    var c = 0xffff;
    for (var k = 0; k < bytes.length; k++) {
      c ^= bytes[k] << 8;
      for (var i = 0; i < 8; i++) c = (c & 0x8000) ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    }
    return c;
  }

  // decodeFrame turns 12 data symbols into the code, or -1 when the CRC fails.
  function decodeFrame(d) {
    var hi = 0, lo = 0;
    for (var i = 0; i < 8; i++) hi = ((hi << 4) | d[i]) >>> 0;
    for (var j = 8; j < 12; j++) lo = (lo << 4) | d[j];
    var code = (hi ^ WHITE_HI) >>> 0, check = lo ^ WHITE_LO;
    return crc16([code >>> 24, (code >>> 16) & 255, (code >>> 8) & 255, code & 255]) === check ? code : -1;
  }

  function blockStart(b, rate) { return Math.floor(b * rate / BLOCKS_PER_SECOND); }

  function Rx(profile, rate) {
    this.profile = profile;
    this.hz = new Float64Array(NUM_TONES);
    this.rotRe = new Float64Array(NUM_TONES);
    this.rotIm = new Float64Array(NUM_TONES);
    for (var k = 0; k < NUM_TONES; k++) {
      this.hz[k] = toneHz(profile, k);
      var a = -2 * Math.PI * this.hz[k] / rate;
      this.rotRe[k] = Math.cos(a);
      this.rotIm[k] = Math.sin(a);
    }
    this.sumRe = new Float64Array(RING * NUM_TONES);
    this.sumIm = new Float64Array(RING * NUM_TONES);
    this.energy = new Float64Array(RING * NUM_TONES);
    this.best = null;
    this.muteTo = 0;
  }

  // Detector hears cues in mono PCM at sampleRate fed in chunks of any size.
  function Detector(sampleRate, profiles) {
    profiles = profiles && profiles.length ? profiles : ["audible", "ultrasonic"];
    this.rate = sampleRate;
    this.rx = [];
    var seen = {};
    for (var i = 0; i < profiles.length; i++) {
      var p = profiles[i];
      if ((p !== "audible" && p !== "ultrasonic") || seen[p]) continue;
      if (toneHz(p, NUM_TONES - 1) > MAX_NYQUIST_SHARE * sampleRate / 2) continue;
      seen[p] = true;
      this.rx.push(new Rx(p, sampleRate));
    }
    this.block = 0;
    this.blockAt = 0;
    this.blockLen = blockStart(1, sampleRate);
    this.pending = new Float64Array(this.blockLen + 1);
    this.filled = 0;
  }

  Detector.prototype.profiles = function () { return this.rx.map(function (r) { return r.profile; }); };

  // write feeds samples (any array-like of numbers) and returns the cues
  // completed within them: [{code, profile, start (seconds), snrDB}].
  Detector.prototype.write = function (samples) {
    var out = [];
    if (!this.rx.length) return out;
    for (var i = 0; i < samples.length; i++) {
      this.pending[this.filled++] = samples[i];
      if (this.filled === this.blockLen) this.endBlock(out);
    }
    return out;
  };

  // flush ends the stream as if silence followed.
  Detector.prototype.flush = function () {
    var out = [];
    if (!this.rx.length) return out;
    for (var n = 0; n < FRAME_BLOCKS + LOOKAHEAD + 2; n++) {
      while (this.filled < this.blockLen) this.pending[this.filled++] = 0;
      this.endBlock(out);
    }
    return out;
  };

  Detector.prototype.endBlock = function (out) {
    var b = this.block, slot = b % RING, rate = this.rate, n = this.filled, x = this.pending;
    var oRe = new Float64Array(NUM_TONES), oIm = new Float64Array(NUM_TONES);
    var aRe = new Float64Array(NUM_TONES), aIm = new Float64Array(NUM_TONES);
    for (var r = 0; r < this.rx.length; r++) {
      var rx = this.rx[r], k;
      for (k = 0; k < NUM_TONES; k++) {
        var ph = (rx.hz[k] * this.blockAt) % rate;
        var ang = -2 * Math.PI * ph / rate;
        oRe[k] = Math.cos(ang);
        oIm[k] = Math.sin(ang);
        aRe[k] = 0;
        aIm[k] = 0;
      }
      var rRe = rx.rotRe, rIm = rx.rotIm;
      for (var i = 0; i < n; i++) {
        var v = x[i];
        for (k = 0; k < NUM_TONES; k++) {
          var re = oRe[k], im = oIm[k];
          aRe[k] += v * re;
          aIm[k] += v * im;
          oRe[k] = re * rRe[k] - im * rIm[k];
          oIm[k] = re * rIm[k] + im * rRe[k];
        }
      }
      for (k = 0; k < NUM_TONES; k++) {
        rx.sumRe[slot * NUM_TONES + k] = aRe[k];
        rx.sumIm[slot * NUM_TONES + k] = aIm[k];
      }
      var w = b - BLOCKS_PER_SYMBOL + 1;
      if (w >= 0) {
        var ws = w % RING;
        for (k = 0; k < NUM_TONES; k++) {
          var sRe = 0, sIm = 0;
          for (var j = 0; j < BLOCKS_PER_SYMBOL; j++) {
            var o = ((w + j) % RING) * NUM_TONES + k;
            sRe += rx.sumRe[o];
            sIm += rx.sumIm[o];
          }
          rx.energy[ws * NUM_TONES + k] = sRe * sRe + sIm * sIm;
        }
        var start = w - (FRAME_SYMBOLS - 1) * BLOCKS_PER_SYMBOL;
        if (start >= 0) search(rx, start, out);
      }
    }
    this.block++;
    this.blockAt += n;
    this.blockLen = blockStart(this.block + 1, rate) - this.blockAt;
    if (this.pending.length < this.blockLen) this.pending = new Float64Array(this.blockLen + 1);
    this.filled = 0;
  };

  function win(rx, start, sym) { return ((start + sym * BLOCKS_PER_SYMBOL) % RING) * NUM_TONES; }

  function argmax(e, o) {
    var k = 0, total = 0;
    for (var i = 0; i < NUM_TONES; i++) {
      total += e[o + i];
      if (e[o + i] > e[o + k]) k = i;
    }
    return [k, total];
  }

  function score(rx, start, syms) {
    var on = 0, all = 0;
    for (var j = 0; j < FRAME_SYMBOLS; j++) {
      var o = win(rx, start, j);
      on += rx.energy[o + syms[j]];
      for (var i = 0; i < NUM_TONES; i++) all += rx.energy[o + i];
    }
    return all === 0 ? 0 : on / all;
  }

  function evaluate(rx, start) {
    var share = 0, misses = 0, j, o, am;
    for (j = 0; j < PREAMBLE_SYMBOLS; j++) {
      o = win(rx, start, j);
      am = argmax(rx.energy, o);
      if (am[1] === 0) return null;
      if (am[0] !== PREAMBLE[j] && ++misses > MAX_PREAMBLE_MISSES) return null;
      share += rx.energy[o + PREAMBLE[j]] / am[1];
    }
    if (share / PREAMBLE_SYMBOLS < MIN_PREAMBLE_SHARE) return null;
    var syms = PREAMBLE.slice(), on = 0, off = 0;
    for (j = 0; j < FRAME_SYMBOLS; j++) {
      o = win(rx, start, j);
      am = argmax(rx.energy, o);
      if (j >= PREAMBLE_SYMBOLS) syms[j] = am[0];
      var s = rx.energy[o + syms[j]];
      on += s;
      off += (am[1] - s) / (NUM_TONES - 1);
    }
    var code = decodeFrame(syms.slice(PREAMBLE_SYMBOLS));
    if (code < 0) return null;
    var snr = 10 * Math.log10(on / Math.max(off, on * 1e-12));
    if (snr < MIN_SNR_DB) return null;
    return { block: start, code: code, syms: syms, score: on / (on + off * (NUM_TONES - 1)), snrDB: snr };
  }

  function search(rx, start, out) {
    if (rx.best && start > rx.best.block + LOOKAHEAD) out.push(emit(rx));
    if (start < rx.muteTo) return;
    var c = evaluate(rx, start);
    if (!c) return;
    if (!rx.best || (c.score > rx.best.score && c.block - rx.best.block <= LOOKAHEAD)) rx.best = c;
  }

  function emit(rx) {
    var c = rx.best;
    rx.best = null;
    rx.muteTo = c.block + FRAME_BLOCKS - BLOCKS_PER_SYMBOL / 2;
    var pos = c.block;
    if (c.block > 0) {
      var l = score(rx, c.block - 1, c.syms), m = c.score, r = score(rx, c.block + 1, c.syms);
      var den = l - 2 * m + r;
      if (den < 0) pos += Math.max(-0.5, Math.min(0.5, 0.5 * (l - r) / den));
    }
    return { code: c.code, profile: rx.profile, start: pos / BLOCKS_PER_SECOND, snrDB: c.snrDB };
  }

  // hex is how a heard code travels in a claim: 8 hex digits (SPEC.md section 10).
  function hex(code) { return ("0000000" + (code >>> 0).toString(16).toUpperCase()).slice(-8); }

  var api = { Detector: Detector, decodeFrame: decodeFrame, hex: hex };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  root.MicrodropCueDetector = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
