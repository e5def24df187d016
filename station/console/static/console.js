// Live refresh of the queue: /events sends a fingerprint of what the
// queue shows; when it differs from the page's, the page's live section is
// fetched again and swapped in. Without JavaScript the page works the same,
// reloaded by hand.
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  if (!live || !window.EventSource || !window.fetch) { return; }
  var es = new EventSource("/events");
  var busy = false;
  function refresh() {
    if (busy) { return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.querySelector("[data-live]");
        if (fresh) { live.replaceWith(fresh); live = fresh; }
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  es.addEventListener("queue", function (e) {
    if (e.data !== live.getAttribute("data-version")) { refresh(); }
  });
  es.addEventListener("logout", function () { es.close(); window.location.reload(); });
})();
