// fars view: swaps in the sections the server sends when the run changes, and ticks time-in-stage.
// The page works without it (a reload shows the same); nothing here talks to any host but this one.
(function () {
  "use strict";
  var body = document.body;
  var offset = (parseFloat(body.dataset.now) || Date.now() / 1000) - Date.now() / 1000; // server clock - ours

  function duration(s) {
    s = Math.max(0, s);
    if (s < 60) return Math.floor(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }

  function tick() {
    var now = Date.now() / 1000 + offset;
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var target = el.querySelector(".tick");
      if (target) target.textContent = duration(now - parseFloat(el.dataset.since));
    });
  }

  function state(text) {
    var el = document.getElementById("live-state");
    if (el) el.textContent = text;
  }

  function apply(message) {
    offset = message.now - Date.now() / 1000;
    body.dataset.gen = message.gen;
    Object.keys(message.sections).forEach(function (id) {
      var el = document.getElementById(id);
      if (el) el.innerHTML = message.sections[id]; // rendered and escaped by the server's templates
    });
    body.dataset.updates = String((parseInt(body.dataset.updates || "0", 10) || 0) + 1);
    tick();
  }

  function connect() {
    var url = body.dataset.stream;
    if (!url || !window.EventSource) return;
    var source = new EventSource(url + "?gen=" + encodeURIComponent(body.dataset.gen || ""));
    source.addEventListener("sections", function (event) {
      apply(JSON.parse(event.data));
      state("live · updated " + new Date().toLocaleTimeString());
    });
    source.addEventListener("open", function () { state("live"); });
    source.addEventListener("error", function () {
      // the browser retries by itself; after a server restart, reconnect with what this page shows now
      state("reconnecting…");
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
    });
  }

  tick();
  setInterval(tick, 1000);
  connect();
})();
