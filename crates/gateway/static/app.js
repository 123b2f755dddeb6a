// The live parts of the Slipway dashboard. Elements opt in with attributes:
// `data-src` is refreshed in place from that URL, `data-stream` follows a
// task's log over server-sent events, a form's `data-confirm` is asked
// before it is sent, and `<time datetime>` is shown relative and in the
// viewer's time zone. Pages work without this script, only not live and
// without the questions.
(function () {
  'use strict';

  var EVERY_MS = 2000;

  function each(root, css, fn) {
    Array.prototype.forEach.call(root.querySelectorAll(css), fn);
  }

  function toLogin() {
    window.location.href = '/login?next=' + encodeURIComponent(window.location.pathname + window.location.search);
  }

  // ---------------------------------------------------------------- times

  function ago(date, now) {
    var secs = Math.round((now - date) / 1000);
    var ahead = secs < 0;
    secs = Math.abs(secs);
    var words;
    if (secs < 60) { return ahead ? 'in a moment' : 'just now'; }
    if (secs < 3600) { words = Math.floor(secs / 60) + ' min'; }
    else if (secs < 86400) { words = Math.floor(secs / 3600) + ' h'; }
    else if (secs < 2592000) {
      var days = Math.floor(secs / 86400);
      words = days === 1 ? '1 day' : days + ' days';
    } else { return date.toLocaleDateString(); }
    return ahead ? 'in ' + words : words + ' ago';
  }

  // Server-rendered times say UTC; this says them in the viewer's zone.
  function localize(root) {
    var now = Date.now();
    each(root, 'time[datetime]', function (el) {
      var date = new Date(el.getAttribute('datetime'));
      if (isNaN(date.getTime())) { return; }
      el.title = date.toLocaleString();
      if (el.classList.contains('ago')) {
        el.textContent = ago(date, now);
      } else if (el.classList.contains('ts')) {
        el.textContent = date.toLocaleTimeString([], { hour12: false });
      }
    });
  }

  // ---------------------------------------------------------------- confirmations

  // A form with `data-confirm` asks first; without script it is sent as is.
  document.addEventListener('submit', function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute('data-confirm');
    if (msg && !window.confirm(msg)) { e.preventDefault(); }
  }, true);

  // ---------------------------------------------------------------- refreshed parts

  // Shows the retry and cancel forms that fit the task's current status.
  function syncActions(status) {
    var retry = document.getElementById('retry-form');
    var cancel = document.getElementById('cancel-form');
    if (retry) { retry.hidden = !(status === 'failed' || status === 'cancelled'); }
    if (cancel) { cancel.hidden = !(status === 'pending' || status === 'running'); }
  }

  // Gives each log section's header its step's status from the steps table.
  function syncSteps(root) {
    each(root, 'tr[data-step]', function (row) {
      var name = row.getAttribute('data-step');
      var status = row.getAttribute('data-step-row');
      each(document, '[data-step-status]', function (badge) {
        if (badge.getAttribute('data-step-status') === name && badge.textContent !== status) {
          badge.className = 'status ' + status;
          badge.textContent = status;
        }
      });
    });
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
            localize(el);
            syncSteps(el);
          }
          var summary = el.querySelector('[data-status]');
          if (summary) { syncActions(summary.getAttribute('data-status')); }
          window.setTimeout(tick, EVERY_MS);
        })
        .catch(function () { window.setTimeout(tick, EVERY_MS * 2); });
    }
    window.setTimeout(tick, EVERY_MS);
  }

  // ---------------------------------------------------------------- the log

  function unmark(tx) {
    each(tx, 'mark', function (m) {
      m.parentNode.replaceChild(document.createTextNode(m.textContent), m);
    });
    tx.normalize();
  }

  function mark(tx, query) {
    var walker = document.createTreeWalker(tx, NodeFilter.SHOW_TEXT, null);
    var nodes = [];
    while (walker.nextNode()) { nodes.push(walker.currentNode); }
    nodes.forEach(function (node) {
      var text = node.nodeValue;
      var lower = text.toLowerCase();
      var at = lower.indexOf(query);
      if (at < 0) { return; }
      var frag = document.createDocumentFragment();
      var from = 0;
      while (at >= 0) {
        frag.appendChild(document.createTextNode(text.slice(from, at)));
        var m = document.createElement('mark');
        m.textContent = text.slice(at, at + query.length);
        frag.appendChild(m);
        from = at + query.length;
        at = lower.indexOf(query, from);
      }
      frag.appendChild(document.createTextNode(text.slice(from)));
      node.parentNode.replaceChild(frag, node);
    });
  }

  function follow(log) {
    var search = document.getElementById('log-search');
    var filter = document.getElementById('log-filter');
    var times = document.getElementById('log-times');
    var hits = document.getElementById('log-hits');
    var controls = document.getElementById('log-controls');
    if (controls) { controls.hidden = false; }
    var wanted = window.location.hash.slice(1);

    function query() { return search ? search.value.trim().toLowerCase() : ''; }

    function searchLines(lines) {
      var q = query();
      lines.forEach(function (ln) {
        var tx = ln.querySelector('.tx');
        if (!tx) { return; }
        unmark(tx);
        var hit = q !== '' && tx.textContent.toLowerCase().indexOf(q) >= 0;
        ln.classList.toggle('hit', hit);
        if (hit) { mark(tx, q); }
      });
      if (hits) {
        hits.textContent = q === '' ? '' : log.querySelectorAll('.ln.hit').length + ' matching lines';
      }
      log.classList.toggle('filtering', q !== '' && !!(filter && filter.checked));
    }

    function section(position) {
      var s = log.querySelector('details[data-position="' + position + '"]');
      if (!s) {
        s = document.createElement('details');
        s.className = 'step';
        s.open = true;
        s.setAttribute('data-position', position);
        s.innerHTML = '<summary><b>step ' + Number(position) + '</b></summary><div class="lines"></div>';
        log.appendChild(s);
      }
      return s.querySelector('.lines');
    }

    // A link to a line (`#build-L12`) is followed once the line arrived.
    function reveal() {
      if (!wanted) { return; }
      var target = document.getElementById(wanted);
      if (!target || !log.contains(target)) { return; }
      wanted = '';
      var open = target.closest('details');
      if (open) { open.open = true; }
      target.classList.add('hl');
      target.scrollIntoView({ block: 'center' });
    }

    if (search) { search.addEventListener('input', function () { searchLines(Array.prototype.slice.call(log.querySelectorAll('.ln'))); }); }
    if (filter) { filter.addEventListener('change', function () { searchLines([]); }); }
    if (times) {
      times.checked = window.localStorage && window.localStorage.getItem('slipway.logTimes') === '1';
      log.classList.toggle('times', times.checked);
      times.addEventListener('change', function () {
        log.classList.toggle('times', times.checked);
        try { window.localStorage.setItem('slipway.logTimes', times.checked ? '1' : '0'); } catch (_) { /* private mode */ }
      });
    }
    window.addEventListener('hashchange', function () {
      var target = document.getElementById(window.location.hash.slice(1));
      if (target && target.tagName === 'DETAILS') { target.open = true; }
      if (target && log.contains(target)) { wanted = target.id; reveal(); }
    });

    function atBottom() {
      return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    }

    var source = new EventSource(log.getAttribute('data-stream'));
    // Every (re)connection replays the log from its start.
    source.addEventListener('open', function () {
      each(log, '.lines', function (l) { l.innerHTML = ''; });
    });
    source.addEventListener('log', function (e) {
      var piece;
      try { piece = JSON.parse(e.data); } catch (_) { return; }
      var stick = atBottom();
      var lines = section(piece.step);
      var touched = [];
      if (piece.cont) {
        var last = lines.lastElementChild;
        var tx = last && last.querySelector('.tx');
        if (tx) { tx.insertAdjacentHTML('beforeend', piece.cont); touched.push(last); }
      }
      var before = lines.children.length;
      lines.insertAdjacentHTML('beforeend', piece.html || '');
      for (var i = before; i < lines.children.length; i++) { touched.push(lines.children[i]); }
      localize(lines);
      if (query() !== '') { searchLines(touched); }
      if (stick) { log.scrollTop = log.scrollHeight; }
      reveal();
    });
    source.addEventListener('end', function (e) {
      source.close();
      var status = '';
      try { status = JSON.parse(e.data).status; } catch (_) { status = 'finished'; }
      log.setAttribute('data-ended', status);
    });
    source.addEventListener('failure', function (e) {
      source.close();
      var msg = '';
      try { msg = JSON.parse(e.data).error; } catch (_) { msg = 'the log stream failed'; }
      log.setAttribute('data-ended', 'error');
      var p = document.createElement('p');
      p.className = 'error-text';
      p.textContent = '[' + msg + ']';
      log.appendChild(p);
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    each(document, '[data-src]', refresh);
    each(document, '[data-stream]', follow);
    localize(document);
    window.setInterval(function () { localize(document); }, 30000);
  });
})();
