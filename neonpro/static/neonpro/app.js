// NeonPro Records: the little script the pages use (served by the app; no inline script, so
// the Content-Security-Policy stays script-src 'self'). Everything here is an enhancement:
// without it every page still works (dialogs fall back to their own pages, the server ends
// idle sessions on its own).
"use strict";

(function () {
  // -- Idle sign-out warning -------------------------------------------------------------
  // The server ends a session after data-idle-seconds without a request. Shortly before,
  // a dialog offers "Stay signed in" (one POST that counts as activity); at the end the page
  // signs out and goes to the sign-in page, so a screen left open shows no patient data.
  // Tabs share the time of the last activity through localStorage.
  var body = document.body;
  var idle = parseInt(body.dataset.idleSeconds || "0", 10);
  if (idle > 0) {
    var warn = Math.min(parseInt(body.dataset.warnSeconds || "60", 10), idle);
    var dialog = document.getElementById("idle-warning");
    var countdown = document.getElementById("idle-countdown");
    var KEY = "neonpro:last-activity";
    var timer = null;

    var csrf = function () {
      var field = document.querySelector("input[name=csrfmiddlewaretoken]");
      return field ? field.value : "";
    };
    var post = function (url) {
      return fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrf(), "X-Requested-With": "fetch" },
      });
    };
    var lastActivity = function () {
      var stored = parseInt(window.localStorage.getItem(KEY) || "0", 10);
      return Math.max(stored, started);
    };
    var noteActivity = function () {
      started = Date.now();
      window.localStorage.setItem(KEY, String(started));
    };
    var signOut = function () {
      window.clearInterval(timer);
      var login = body.dataset.loginUrl + "?idle=1";
      post(body.dataset.logoutUrl).then(
        function () { window.location.assign(login); },
        function () { window.location.assign(login); }
      );
    };
    var tick = function () {
      var left = Math.round((lastActivity() + idle * 1000 - Date.now()) / 1000);
      if (left <= 0) {
        signOut();
      } else if (left <= warn) {
        countdown.textContent = String(left);
        if (!dialog.open) {
          dialog.showModal();
          document.getElementById("idle-stay").focus();
        }
      } else if (dialog.open) {
        dialog.close(); // another tab kept the session alive
      }
    };
    var started = Date.now();
    noteActivity(); // this page's request was activity
    document.getElementById("idle-stay").addEventListener("click", function () {
      post(body.dataset.keepaliveUrl).then(function (answer) {
        if (answer.ok) {
          noteActivity();
          dialog.close();
        } else {
          signOut(); // the session had already ended
        }
      }, signOut);
    });
    document.getElementById("idle-leave").addEventListener("click", signOut);
    dialog.addEventListener("cancel", function (event) { event.preventDefault(); });
    timer = window.setInterval(tick, 1000);
  }

  // -- Dialogs ------------------------------------------------------------------------------
  // <button data-opens="dialog-id"> opens a <dialog>; <button data-closes> inside closes it.
  // The button is a link to the dialog's own page when scripts are off (href on an <a>).
  document.querySelectorAll("[data-opens]").forEach(function (opener) {
    var target = document.getElementById(opener.dataset.opens);
    if (!target || typeof target.showModal !== "function") {
      return;
    }
    opener.addEventListener("click", function (event) {
      event.preventDefault();
      target.showModal();
      var first = target.querySelector("textarea, input:not([type=hidden]), select, button");
      if (first) {
        first.focus();
      }
    });
  });
  document.querySelectorAll("dialog [data-closes]").forEach(function (closer) {
    closer.addEventListener("click", function (event) {
      event.preventDefault();
      closer.closest("dialog").close();
    });
  });
  // A dialog whose form came back with errors opens itself again.
  document.querySelectorAll("dialog[data-open-on-load]").forEach(function (target) {
    target.showModal();
  });

  // -- Confirmations --------------------------------------------------------------------
  // <form data-confirm="Cancel this appointment?">: ask before a destructive POST.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  });
})();
