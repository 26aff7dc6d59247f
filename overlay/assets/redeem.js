// The pickup desk: a USB or phone scanner types the code into the field;
// where the browser has BarcodeDetector, the camera can scan it too.
(function () {
  "use strict";
  var input = document.getElementById("redeem-token"), btn = document.getElementById("scan"), video = document.getElementById("scan-video");
  if (input) input.focus();
  if (!btn || !("BarcodeDetector" in window) || !navigator.mediaDevices) return;
  btn.hidden = false;
  btn.addEventListener("click", function () {
    var det = new window.BarcodeDetector({ formats: ["qr_code"] });
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } }).then(function (stream) {
      video.srcObject = stream; video.hidden = false; video.play();
      var look = function () {
        det.detect(video).then(function (codes) {
          if (codes.length) {
            stream.getTracks().forEach(function (t) { t.stop(); });
            input.value = codes[0].rawValue;
            document.getElementById("redeem-form").submit();
          } else requestAnimationFrame(look);
        }, function () { requestAnimationFrame(look); });
      };
      look();
    });
  });
})();
