// The dashboard's live parts: a poll of /dashboard/live.json every second
// draws the claims feed, stock, rejections and the chart. A few lines, no library.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  document.querySelectorAll("button.copy").forEach(function (b) {
    b.addEventListener("click", function () {
      var input = $(b.dataset.copy);
      input.select();
      var done = function () { b.textContent = "Copied"; setTimeout(function () { b.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand("copy"); done(); });
      else { document.execCommand("copy"); done(); }
    });
  });

  function rows(tbody, counts) {
    tbody.textContent = "";
    (counts || []).forEach(function (c) {
      var tr = document.createElement("tr"), a = document.createElement("td"), b = document.createElement("td");
      a.textContent = c.name; b.textContent = c.count;
      tr.appendChild(a); tr.appendChild(b); tbody.appendChild(tr);
    });
    if (!counts || !counts.length) { var tr = document.createElement("tr"), td = document.createElement("td"); td.textContent = "none yet"; td.className = "muted"; tr.appendChild(td); tbody.appendChild(tr); }
  }

  function line(pts, key, max) {
    var n = pts.length;
    return pts.map(function (p, i) {
      var x = n > 1 ? (i * 600) / (n - 1) : 0, y = 175 - (max > 0 ? (p[key] / max) * 165 : 0);
      return x.toFixed(1) + "," + y.toFixed(1);
    }).join(" ");
  }

  // clock is 24-hour HH:MM:SS in local time, the format the server renders.
  function clock(d) {
    var p = function (n) { return (n < 10 ? "0" : "") + n; };
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  function draw(l) {
    var feed = $("feed");
    feed.textContent = "";
    (l.feed || []).forEach(function (it) {
      var li = document.createElement("li");
      var t = clock(new Date(it.t));
      var left = it.remaining === undefined ? "" : "  (" + it.remaining + " left)";
      if (it.kind === "drop.claimed") { li.textContent = t + "  " + it.channel + "  " + it.name + " " + it.outcome + left; li.className = it.outcome === "won" ? "won" : ""; }
      else { li.textContent = t + "  " + it.channel + "  " + it.kind + (it.name ? " " + it.name : "") + left; li.className = "ev"; }
      feed.appendChild(li);
    });
    rows($("rejections").tBodies[0], l.rejections);
    rows($("outcomes").tBodies[0], l.outcomes);
    var s = l.series || [];
    var maxC = Math.max.apply(null, [1].concat(s.map(function (p) { return p.cps; })));
    var maxL = Math.max.apply(null, [1].concat(s.map(function (p) { return p.lat_ms; })));
    $("chart-cps").setAttribute("points", line(s, "cps", maxC));
    $("chart-lat").setAttribute("points", line(s, "lat_ms", maxL));
    var last = s.length ? s[s.length - 1] : { cps: 0, lat_ms: 0 };
    $("cps-now").textContent = last.cps; $("cps-max").textContent = maxC;
    $("lat-now").textContent = last.lat_ms.toFixed(2); $("lat-max").textContent = maxL.toFixed(2);
    (l.drops || []).forEach(function (d) {
      var tr = document.querySelector('tr[data-drop="' + d.id + '"]');
      if (!tr) return;
      tr.querySelector(".remaining").textContent = d.remaining;
      tr.querySelector(".fill").style.width = (d.stock ? (100 * d.remaining / d.stock) : 0) + "%";
      var st = tr.querySelector(".state"); st.textContent = d.state; st.dataset.state = d.state;
      if (d.state === "sold_out" || d.state === "closed") {
        tr.classList.remove("live");
        tr.querySelectorAll(".actions form").forEach(function (f) { f.remove(); });
      }
    });
    $("hub-stats").textContent = "overlays connected: " + l.hub.clients + " · dropped as too slow: " + l.hub.slow_drops + " · frames sent: " + l.hub.frames;
  }

  function poll() {
    fetch("/dashboard/live.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(draw).catch(function () {})
      .then(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
