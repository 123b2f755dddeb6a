// The live parts of the Slipway dashboard. Elements opt in with attributes:
// `data-src` is refreshed in place from that URL, `data-stream` follows a
// task's log over server-sent events. Pages work without this script, only
// not live.
(function () {
  'use strict';

  var EVERY_MS = 2000;

  function toLogin() {
    window.location.href = '/login?next=' + encodeURIComponent(window.location.pathname + window.location.search);
  }

  // Shows the retry and cancel forms that fit the task's current status.
  function syncActions(status) {
    var retry = document.getElementById('retry-form');
    var cancel = document.getElementById('cancel-form');
    if (retry) { retry.hidden = !(status === 'failed' || status === 'cancelled'); }
    if (cancel) { cancel.hidden = !(status === 'pending' || status === 'running'); }
  }

  function refresh(el) {
    var src = el.getAttribute('data-src');
    var last = el.innerHTML;
    function tick() {
      fetch(src, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
        .then(function (r) {
          if (r.status === 401) { toLogin(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          // Only a change replaces the DOM, so a button is not swapped
          // under a user's finger.
          if (html && html !== last) {
            el.innerHTML = html;
            last = html;
          }
          var summary = el.querySelector('[data-status]');
          if (summary) { syncActions(summary.getAttribute('data-status')); }
          window.setTimeout(tick, EVERY_MS);
        })
        .catch(function () { window.setTimeout(tick, EVERY_MS * 2); });
    }
    window.setTimeout(tick, EVERY_MS);
  }

  function follow(pre) {
    var source = new EventSource(pre.getAttribute('data-stream'));
    function atBottom() {
      return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
    }
    // Every (re)connection replays the log from its start.
    source.addEventListener('open', function () { pre.innerHTML = ''; });
    source.addEventListener('log', function (e) {
      var stick = atBottom();
      pre.insertAdjacentHTML('beforeend', e.data);
      if (stick) { pre.scrollTop = pre.scrollHeight; }
    });
    source.addEventListener('end', function (e) {
      source.close();
      var status = '';
      try { status = JSON.parse(e.data).status; } catch (_) { status = 'finished'; }
      pre.setAttribute('data-ended', status);
    });
    source.addEventListener('failure', function (e) {
      source.close();
      var msg = '';
      try { msg = JSON.parse(e.data).error; } catch (_) { msg = 'the log stream failed'; }
      pre.setAttribute('data-ended', 'error');
      pre.insertAdjacentText('beforeend', '\n[' + msg + ']\n');
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    Array.prototype.forEach.call(document.querySelectorAll('[data-src]'), refresh);
    Array.prototype.forEach.call(document.querySelectorAll('pre[data-stream]'), follow);
  });
})();
