// The OBS browser source. Everything shown comes from the WebSocket: a
// snapshot on every (re)connect, then events. The countdown follows the
// server clock: the offset is measured with clock probes over the socket.
(function () {
  "use strict";
  var body = document.body;
  var cfg = {
    channel: body.dataset.channel,
    key: body.dataset.key,
    scale: parseFloat(body.dataset.scale) || 1,
    volume: parseFloat(body.dataset.volume),
    cue: body.dataset.cue || "audible"
  };
  if (!(cfg.volume >= 0)) cfg.volume = 0.1;
  document.documentElement.style.setProperty("--scale", String(cfg.scale));

  var $ = function (id) { return document.getElementById(id); };
  var el = {
    card: $("card"), badge: $("badge"), price: $("price"), title: $("title"), qr: $("qr"),
    countdown: $("countdown"), phase: $("phase"), fill: $("stock-fill"), stockText: $("stock-text"),
    hint: $("claim-hint"), winners: $("winners"), result: $("result"), back: $("back"), conn: $("conn")
  };

  // Public for tests and for anyone debugging in OBS's "Interact" window.
  var st = window.microdropOverlay = {
    drop: null, claimURL: "", qr: null, winners: [], offset: 0, rtt: Infinity,
    connected: false, snapshots: 0, frames: 0, cuesPlayed: 0, lastCue: 0, hideAt: 0, backUntil: 0
  };

  function serverNow() { return Date.now() + st.offset; }

  // ---- audio ----------------------------------------------------------
  var audio = null;
  function playCue(code) {
    if (cfg.cue === "off" || !window.MicrodropCue) return;
    try {
      if (!audio) audio = new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
      window.MicrodropCue.play(audio, code, cfg.cue, cfg.volume, audio.currentTime + 0.05);
      st.cuesPlayed++;
      st.lastCue = code;
    } catch (e) { /* no audio device: the card still shows */ }
  }

  // ---- rendering ------------------------------------------------------
  function money(minor, cur) {
    if (!minor) return "FREE";
    try { return new Intl.NumberFormat(undefined, { style: "currency", currency: cur }).format(minor / 100); }
    catch (e) { return (minor / 100).toFixed(2) + " " + cur; }
  }

  function drawQR(q) {
    if (!q) { el.qr.innerHTML = ""; return; }
    var raw = atob(q.bits), n = q.size, d = "";
    for (var i = 0; i < n * n; i++) {
      if (raw.charCodeAt(i >> 3) & (0x80 >> (i & 7))) d += "M" + (i % n) + " " + Math.floor(i / n) + "h1v1h-1z";
    }
    el.qr.setAttribute("viewBox", "0 0 " + n + " " + n);
    el.qr.innerHTML = '<rect width="' + n + '" height="' + n + '" fill="#fff"/><path fill="#000" d="' + d + '"/>';
  }

  function drawWinners() {
    el.winners.textContent = "";
    (st.winners || []).forEach(function (w) {
      var li = document.createElement("li");
      li.textContent = w.name;
      el.winners.appendChild(li);
    });
  }

  function show() {
    if (el.card.classList.contains("hidden")) {
      el.card.classList.remove("hidden");
      el.card.dataset.settled = "";
      setTimeout(function () { el.card.dataset.settled = "1"; }, 700);
    }
  }
  function hide() {
    el.card.classList.add("hidden");
    el.card.dataset.settled = "";
  }

  function drawDrop() {
    var d = st.drop;
    if (!d) { hide(); return; }
    el.title.textContent = d.title;
    el.price.textContent = money(d.price_minor, d.currency);
    var pct = d.stock > 0 ? Math.max(0, Math.min(100, 100 * d.remaining / d.stock)) : 0;
    el.fill.style.width = pct + "%";
    el.stockText.textContent = d.remaining + " / " + d.stock + " left";
    el.card.dataset.state = d.state;
    el.card.dataset.drop = d.id;
    el.card.dataset.remaining = String(d.remaining);
    el.hint.textContent = st.claimURL ? "Scan or go to " + st.claimURL.replace(/^https?:\/\//, "") : "";
    drawWinners();
    if (d.state === "sold_out") {
      el.badge.textContent = "SOLD OUT";
      el.result.textContent = "Sold out · " + d.winners + " winners";
    } else if (d.state === "closed") {
      el.badge.textContent = "CLOSED";
      el.result.textContent = "Closed · " + d.winners + " of " + d.stock + " claimed";
    } else if (d.state === "grace") {
      el.badge.textContent = "LAST CHANCE";
      el.result.textContent = "";
    } else {
      el.badge.textContent = d.state === "scheduled" ? "SOON" : "DROP";
      el.result.textContent = windowNote(d);
    }
    tick();
  }

  // The window policy's promise, as claims words it (DropView.WindowNote).
  function windowNote(d) {
    var ms = d.budget_ms || 0;
    if (ms <= 0) return "";
    var first = ms % 1000 === 0 ? String(ms / 1000) : (ms / 1000).toFixed(1);
    var at = Math.ceil(ms / 1000);
    return "Everyone who claims in the first " + first + " s has the same chance — results at " +
      Math.floor(at / 60) + ":" + (at % 60 < 10 ? "0" : "") + (at % 60);
  }

  function fmtDur(ms) {
    if (ms < 0) ms = 0;
    var s = Math.ceil(ms / 1000), m = Math.floor(s / 60);
    s = s % 60;
    return (m < 10 ? "0" : "") + m + ":" + (s < 10 ? "0" : "") + s;
  }

  function tick() {
    var d = st.drop;
    if (!d) return;
    var now = serverNow();
    var closes = Date.parse(d.closes_at), opens = Date.parse(d.opens_at);
    var final = d.state === "sold_out" || d.state === "closed";
    var left;
    if (st.backUntil && now >= st.backUntil) { st.backUntil = 0; el.back.textContent = ""; }
    if (final) {
      el.countdown.textContent = "00:00";
      el.phase.textContent = d.state === "sold_out" ? "sold out" : "closed";
      if (st.hideAt && now >= st.hideAt) { hide(); }
      return;
    }
    if (now < opens) { left = opens - now; el.phase.textContent = "opens in"; }
    else if (now < closes) { left = closes - now; el.phase.textContent = "left"; }
    else { left = closes + (d.grace_ms || 0) - now; el.phase.textContent = "last chance"; }
    el.countdown.textContent = fmtDur(left);
    el.card.dataset.left = String(Math.max(0, Math.ceil(left / 1000)));
  }
  setInterval(tick, 200);

  // ---- state ----------------------------------------------------------
  function apply(f) {
    st.frames++;
    if (f.kind === "cue.step") { // a listen drop's next code: play it, change nothing else
      if (f.step && st.drop && st.drop.id === f.drop_id) playCue(f.step.code);
      return;
    }
    if (f.drop) {
      var newDrop = !st.drop || st.drop.id !== f.drop.id;
      st.drop = f.drop;
      if (f.claim_url) st.claimURL = f.claim_url;
      if (f.qr) { st.qr = f.qr; drawQR(f.qr); }
      else if (newDrop && f.type !== "stock") { st.qr = null; drawQR(null); st.claimURL = ""; }
    }
    st.winners = f.winners || (f.type === "stock" ? st.winners : []);
    var final = st.drop && (st.drop.state === "sold_out" || st.drop.state === "closed");
    if (f.type === "snapshot") {
      st.snapshots++;
      st.hideAt = 0;
      if (st.drop && !final) show(); else hide();
    } else if (f.type === "event") {
      if (f.note) { el.back.textContent = f.note; st.backUntil = serverNow() + 8000; }
      if (f.kind === "drop.opened") { st.hideAt = 0; show(); playCue(st.drop.cue_code); }
      else if (final) { show(); st.hideAt = serverNow() + 8000; }
      else show();
    }
    drawDrop();
  }

  // ---- socket ---------------------------------------------------------
  var ws = null, attempt = 0, probeTimer = null, lastReply = 0, lastProbe = 0;

  function probe() {
    if (!ws || ws.readyState !== 1) return;
    lastProbe = Date.now();
    ws.send(JSON.stringify({ type: "time", client: lastProbe }));
  }

  function onTime(f) {
    var now = Date.now();
    lastReply = now;
    var rtt = now - f.client;
    if (rtt < 0 || rtt > 10000) return;
    // Keep the probe with the shortest round trip: its midpoint is the
    // best estimate of when the server read its clock.
    if (rtt <= st.rtt * 1.5 || now - st.offsetAt > 60000) {
      st.rtt = Math.min(rtt, st.rtt);
      st.offset = f.server_ms - (f.client + rtt / 2);
      st.offsetAt = now;
    }
  }

  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
      "/ws/overlay/" + encodeURIComponent(cfg.channel) + "?key=" + encodeURIComponent(cfg.key);
    ws = new WebSocket(url);
    ws.onopen = function () {
      st.connected = true;
      el.conn.className = "conn up";
      st.rtt = Infinity;
      probe(); setTimeout(probe, 300); setTimeout(probe, 900);
      lastReply = Date.now();
      clearInterval(probeTimer);
      probeTimer = setInterval(function () {
        // A blip can leave a socket that looks open but carries nothing:
        // no answer to two probes in a row means reconnect.
        if (Date.now() - lastReply > 25000) { try { ws.close(); } catch (e) {} return; }
        probe();
      }, 10000);
    };
    ws.onmessage = function (m) {
      var f;
      try { f = JSON.parse(m.data); } catch (e) { return; }
      if (f.type === "time") { onTime(f); return; }
      if (f.type === "snapshot") {
        attempt = 0;
        if (!isFinite(st.rtt)) st.offset = f.server_ms - Date.now();
      }
      apply(f);
    };
    ws.onclose = function () {
      st.connected = false;
      el.conn.className = "conn down";
      clearInterval(probeTimer);
      // Exponential backoff with jitter, so a restart is not met by every
      // overlay at the same millisecond.
      var base = Math.min(10000, 500 * Math.pow(2, attempt++));
      setTimeout(connect, base * (0.5 + Math.random()));
    };
    ws.onerror = function () { /* onclose follows */ };
  }
  connect();
})();
