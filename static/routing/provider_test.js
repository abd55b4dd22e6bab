// The dashboard's provider "Test" buttons: post the form in the background and show the result
// (a server-rendered <output>) in place of the row's empty one. Without this script the form posts
// normally and the dashboard comes back with the result as a message.
(function () {
  "use strict";

  function test(form) {
    var target = document.getElementById(form.getAttribute("data-provider-test"));
    var button = form.querySelector("button");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      target.className = "test-result muted";
      target.textContent = "testing…";
      fetch(form.action, {
        method: "POST",
        body: new FormData(form), // carries the CSRF token
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" },
      })
        .then(function (response) {
          // Logged out meanwhile: the answer is the login page. Reload to show it.
          if (response.redirected) {
            window.location.reload();
            return null;
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          if (html === null) return;
          var holder = document.createElement("template");
          holder.innerHTML = html.trim();
          var fresh = holder.content.firstElementChild;
          if (!fresh) throw new Error("empty answer");
          target.replaceWith(fresh);
          target = fresh;
        })
        .catch(function (error) {
          target.className = "test-result bad";
          target.textContent = "the test could not run: " + error.message;
        })
        .then(function () {
          button.disabled = false;
        });
    });
  }

  document.querySelectorAll("form[data-provider-test]").forEach(test);
})();
