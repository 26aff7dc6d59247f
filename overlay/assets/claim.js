// The claim page's countdown (from the server's "ms until close" at render).
(function () {
  "use strict";
  var box = document.getElementById("claim"), out = document.getElementById("claim-countdown");
  if (!box || !out) return;
  var end = Date.now() + parseFloat(box.dataset.closesMs || "0");
  function tick() {
    var s = Math.max(0, Math.ceil((end - Date.now()) / 1000));
    out.textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }
  tick();
  setInterval(tick, 250);
})();
