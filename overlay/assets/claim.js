// The claim page's countdowns: to the drop's close and to a hold's pay-by
// deadline, each from the server's "ms left" at render, so a browser clock
// that is off does not matter.
(function () {
  "use strict";
  var box = document.getElementById("claim");
  if (!box) return;
  var start = Date.now();
  function clock(ms) {
    var s = Math.max(0, Math.ceil((start + ms - Date.now()) / 1000));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }
  var out = document.getElementById("claim-countdown");
  var closes = parseFloat(box.dataset.closesMs || "0");
  var hold = document.getElementById("claim-hold");
  var holdOut = document.getElementById("hold-countdown");
  var left = hold ? parseFloat(hold.dataset.leftMs || "0") : 0;
  var reloaded = false;
  function tick() {
    if (out) out.textContent = clock(closes);
    if (holdOut) {
      holdOut.textContent = clock(left);
      // The server passes the unit on at the deadline: show what became of it.
      if (!reloaded && Date.now() - start > left + 1500) {
        reloaded = true;
        location.replace(location.pathname);
      }
    }
  }
  tick();
  setInterval(tick, 250);
  // Waiting in line, or a card payment being confirmed: look again now and
  // then, since a unit may pass to this viewer or the payment come in.
  var pending = document.getElementById("hold-card-pending");
  if (box.dataset.waiting === "1" || pending) {
    setInterval(function () { if (!document.hidden) location.reload(); }, pending ? 3000 : 15000);
  }
})();
