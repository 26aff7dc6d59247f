// "Listen to claim" on the claim page: the phone listens to the stream,
// hears the rotating code in the audio cue (ingest/cue/SPEC.md section 10)
// and claims with it. The microphone's audio is analysed only on this
// device, in an AudioWorklet running cuedetect.js; the only thing sent is
// the claim form (the session's CSRF token) with the 8 hex digits heard.
(function () {
  "use strict";
  var box = document.getElementById("claim-listen-box");
  var form = document.getElementById("claim-form");
  if (!box || !form) return;
  var btn = document.getElementById("claim-listen"), status = document.getElementById("listen-status");
  var heard = document.getElementById("claim-heard");
  var QUIET_MS = 15000;
  var ctx = null, stream = null, quietTimer = null, done = false;

  function say(text, kind) {
    status.textContent = text;
    status.dataset.kind = kind || "info";
  }

  function stop() {
    if (quietTimer) clearTimeout(quietTimer);
    if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
    if (ctx) ctx.close();
    ctx = stream = quietTimer = null;
  }

  function onHeard(code) {
    if (done) return;
    done = true;
    var hex = window.MicrodropCueDetector.hex(code);
    say("Heard code " + hex + ": claiming…", "heard");
    box.dataset.heard = hex;
    heard.value = hex;
    stop();
    form.requestSubmit ? form.requestSubmit() : form.submit();
  }

  function quiet() {
    say("Nothing heard in 15 seconds. Turn the stream up, hold the phone near the speaker and keep the page open; still listening…", "quiet");
    box.dataset.quiet = "1";
  }

  function start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioContext) {
      say("This browser cannot listen (it needs microphone access over https). Claim from chat with the code instead.", "error");
      return;
    }
    btn.disabled = true;
    say("Asking for the microphone…");
    navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 }
    }).then(function (s) {
      stream = s;
      ctx = new AudioContext();
      var base = "/overlay/assets/";
      return ctx.audioWorklet.addModule(base + "cuedetect.js")
        .then(function () { return ctx.audioWorklet.addModule(base + "cueworklet.js"); })
        .then(function () {
          var src = ctx.createMediaStreamSource(stream);
          var node = new AudioWorkletNode(ctx, "microdrop-listener", { numberOfInputs: 1, numberOfOutputs: 0 });
          node.port.onmessage = function (e) {
            if (e.data.ready) box.dataset.rate = e.data.rate;
            if (e.data.code !== undefined) onHeard(e.data.code);
          };
          src.connect(node);
          box.dataset.listening = "1";
          say("Listening… hold the phone near the stream. Audio stays on this phone.", "listening");
          quietTimer = setTimeout(quiet, QUIET_MS);
          return ctx.resume();
        });
    }).catch(function (err) {
      stop();
      btn.disabled = false;
      var refused = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
      say(refused ? "The microphone was refused. Allow it for this site (the lock icon in the address bar) and tap Listen again."
                  : "Could not listen: " + (err && err.message ? err.message : err), "error");
      box.dataset.refused = refused ? "1" : "0";
    });
  }

  btn.addEventListener("click", start);
})();
