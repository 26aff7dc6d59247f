// microdrop local chat: one WebSocket, messages in, lines out. No framework.
(function () {
  "use strict";
  var root = document.getElementById("chat");
  var log = document.getElementById("chat-log");
  var form = document.getElementById("chat-form");
  var login = document.getElementById("chat-login");
  var text = document.getElementById("chat-text");
  var status = document.getElementById("chat-status");
  var channel = root.dataset.channel;
  login.value = localStorage.getItem("microdrop-login") || "viewer" + Math.floor(Math.random() * 10000);
  var ws, backoff = 500;

  function add(kind, who, body) {
    var li = document.createElement("li");
    li.className = "chat-" + kind;
    var b = document.createElement("b");
    b.textContent = who;
    li.appendChild(b);
    li.appendChild(document.createTextNode(" " + body));
    log.appendChild(li);
    while (log.children.length > 300) log.removeChild(log.firstChild);
    li.scrollIntoView({block: "end"});
  }

  function connect() {
    var u = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/chat?channel=" +
      encodeURIComponent(channel) + "&login=" + encodeURIComponent(login.value) + "&";
    // No user_id: the server binds the socket to this browser's own identity.
    ws = new WebSocket(u);
    ws.onopen = function () { status.textContent = "connected as " + login.value; backoff = 500; };
    ws.onclose = function () {
      status.textContent = "disconnected; retrying…";
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
    ws.onmessage = function (ev) {
      var f = JSON.parse(ev.data);
      if (f.type === "message") add(f.role === "viewer" ? "msg" : "msg " + f.role, f.display_name || f.login, f.text);
      else if (f.type === "reply") add("bot", "microdrop", f.text);
      else if (f.type === "whisper") add("whisper", "microdrop → you", f.text);
      else if (f.type === "error") add("error", "error", f.text);
    };
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    localStorage.setItem("microdrop-login", login.value);
    if (ws.url.indexOf("login=" + encodeURIComponent(login.value) + "&") < 0) { ws.onclose = null; ws.close(); connect(); }
    var send = function () { ws.send(JSON.stringify({text: text.value})); text.value = ""; };
    if (ws.readyState === 1) send(); else ws.addEventListener("open", send, {once: true});
  });
  connect();
})();
