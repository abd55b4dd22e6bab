// Keeps a page's live section fresh: every second it fetches the server-rendered fragment
// named by data-live-url and swaps it in, until the fragment says data-finished="true".
// The server escapes everything; this script only moves its HTML into place.
(function () {
  "use strict";

  var INTERVAL_MS = 1000;
  var MAX_BACKOFF = 10;

  function follow(section) {
    var url = section.getAttribute("data-live-url");
    var last = null;
    var failures = 0;

    function schedule() {
      window.setTimeout(tick, INTERVAL_MS * Math.min(Math.pow(2, failures), MAX_BACKOFF));
    }

    function swap(html) {
      if (html === last) return section;
      last = html;
      var holder = document.createElement("template");
      holder.innerHTML = html.trim();
      var fresh = holder.content.firstElementChild;
      if (!fresh) throw new Error("empty fragment");
      section.replaceWith(fresh);
      return fresh;
    }

    function tick() {
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          // Logged out meanwhile: the fragment URL redirects to the login page. Reload to show it.
          if (response.redirected || response.status === 401 || response.status === 403) {
            window.location.reload();
            return null;
          }
          if (response.status === 404) return null; // gone: stop asking
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          if (html === null) return;
          section = swap(html);
          failures = 0;
          if (section.getAttribute("data-finished") !== "true") schedule();
        })
        .catch(function () {
          failures += 1; // a restart or a network blip: back off, keep trying
          schedule();
        });
    }

    if (section.getAttribute("data-finished") !== "true") schedule();
  }

  document.querySelectorAll("[data-live-url]").forEach(follow);
})();
