/* app.js - the clipdex web app: search as you type, a grid with endless
 * scrolling, filters kept in the URL, a photo view with "more like this",
 * search by a dropped image, duplicates and moderation views.
 *
 * Every name, caption and label goes into the page as text (textContent,
 * never innerHTML): file names may hold markup, quotes, newlines or bytes
 * that are not UTF-8 (the API sends each such byte as a lone surrogate,
 * U+DC80..U+DCFF: Python's surrogateescape, see clipdex(1)).
 * No inline script anywhere: the server's Content-Security-Policy forbids
 * it. */
'use strict';

(function () {
  var $ = function (id) { return document.getElementById(id); };
  var FILTERS = ['after', 'before', 'under', 'camera', 'ext', 'min_score'];
  var PAGE = 60;             /* results per request; ?n= in the URL overrides */
  var state = { view: 'search', results: [], offset: 0, more: false, loading: false, seq: 0,
                similar: null, example: null, viewerIndex: -1, selected: {} };
  var debounceTimer = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function say(text) { $('msg').textContent = text || ''; }

  function api(url, opts) {
    return fetch(url, Object.assign({ credentials: 'same-origin' }, opts || {})).then(function (r) {
      return r.json().catch(function () { return { error: 'HTTP ' + r.status }; }).then(function (j) {
        if (!r.ok) throw new Error(j.error || ('HTTP ' + r.status));
        return j;
      });
    });
  }

  function baseName(p) { var i = p.lastIndexOf('/'); return i >= 0 ? p.slice(i + 1) : p; }

  function thumb(id) {
    var img = el('img');
    img.loading = 'lazy';
    img.decoding = 'async';
    img.alt = '';
    img.src = '/api/thumb/' + encodeURIComponent(id);
    return img;
  }

  /* ---- URL state ---- */

  function readUrl() {
    var u = new URLSearchParams(location.search);
    $('q').value = u.get('q') || '';
    $('not').value = u.get('not') || '';
    FILTERS.forEach(function (k) { $(k).value = u.get(k) || ''; });
    if (FILTERS.some(function (k) { return u.get(k); })) $('filters').open = true;
    state.view = u.get('view') || 'search';
    var n = parseInt(u.get('n'), 10);
    if (n >= 1 && n <= 200) PAGE = n;
    state.similar = u.get('similar');
    return u;
  }

  function params(withText) {
    var p = new URLSearchParams();
    if (withText) {
      if ($('q').value.trim()) p.set('q', $('q').value);
      if ($('not').value.trim()) p.set('not', $('not').value);
    }
    FILTERS.forEach(function (k) { if ($(k).value) p.set(k, $(k).value); });
    return p;
  }

  function writeUrl(push) {
    var p = params(state.view === 'search' && !state.similar);
    if (state.view !== 'search') p.set('view', state.view);
    if (state.similar && state.view === 'search') p.set('similar', state.similar);
    if (state.view === 'moderation' && $('labelset').value) p.set('labelset', $('labelset').value);
    if (PAGE !== 60) p.set('n', PAGE);
    var url = location.pathname + (p.toString() ? '?' + p.toString() : '');
    if (push) history.pushState(null, '', url); else history.replaceState(null, '', url);
  }

  /* ---- search ---- */

  function searchUrl(offset) {
    var p = params(!state.similar);
    p.set('n', PAGE);
    p.set('offset', offset);
    if (state.similar) { p.set('id', state.similar); return '/api/similar?' + p.toString(); }
    return '/api/search?' + p.toString();
  }

  function card(r, index) {
    var f = el('figure', 'card');
    f.dataset.id = r.id;
    f.dataset.index = index;
    f.appendChild(thumb(r.id));
    var c = el('figcaption');
    c.appendChild(el('span', 'score', r.score.toFixed(3)));
    c.appendChild(el('span', 'name', baseName(r.path)));
    f.title = r.path;
    f.appendChild(c);
    f.addEventListener('click', function () { openViewer(index); });
    return f;
  }

  function showResults(j, append) {
    var grid = $('grid');
    if (!append) { grid.textContent = ''; state.results = []; }
    j.results.forEach(function (r) {
      grid.appendChild(card(r, state.results.length));
      state.results.push(r);
    });
    state.offset = state.results.length;
    state.more = j.more && j.results.length > 0;
  }

  function runSearch(append) {
    var seq = ++state.seq;
    if (!append) { state.offset = 0; state.more = false; }
    if (!state.similar && !state.example && !$('q').value.trim()) {
      $('grid').textContent = '';
      state.results = [];
      say('Type a description, or drop a photo on the page.');
      return Promise.resolve();
    }
    state.loading = true;
    var req;
    if (state.example && !state.similar) {
      var p = params(true);
      p.set('n', PAGE);
      p.set('offset', append ? state.offset : 0);
      req = api('/api/search?' + p.toString(), { method: 'POST', body: state.example,
        headers: { 'Content-Type': 'application/octet-stream' } });
    } else {
      req = api(searchUrl(append ? state.offset : 0));
    }
    return req.then(function (j) {
      if (seq !== state.seq) return;
      showResults(j, append);
      var what = state.similar ? 'photos like #' + state.similar : state.example ? 'photos like the dropped one' : 'results';
      say(state.results.length ? state.results.length + ' ' + what + (state.more ? ' (scroll for more)' : '')
                               : 'No ' + what + '.');
    }).catch(function (e) {
      if (seq === state.seq) say('Search failed: ' + e.message);
    }).then(function () {
      if (seq !== state.seq) return;
      state.loading = false;
      /* the observer fires on changes only: when the end of the grid is
       * still in view after a page arrived, ask for the next one now */
      if (state.more && $('sentinel').getBoundingClientRect().top < window.innerHeight + 600) runSearch(true);
    });
  }

  function scheduleSearch() {
    clearTimeout(debounceTimer);
    debounceTimer = setTimeout(function () {
      state.similar = null;
      state.example = null;
      writeUrl(false);
      runSearch(false);
    }, 250);
  }

  function filterChanged() {
    writeUrl(false);
    if (state.view === 'search') runSearch(false);
    else if (state.view === 'dupes') loadDupes();
  }

  /* ---- the photo view ---- */

  var BROWSER_SHOWS = { jpg: 1, jpeg: 1, png: 1, webp: 1, gif: 1, avif: 1 };

  function fmtDate(s) { return s ? s.replace('T', ' ').replace('Z', ' UTC') : null; }

  function fmtSize(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(1) + ' MB';
    if (n >= 1e3) return Math.round(n / 1e3) + ' kB';
    return n + ' B';
  }

  function metaRow(dl, name, value, href) {
    if (value === null || value === undefined || value === '') return;
    dl.appendChild(el('dt', null, name));
    var dd = el('dd');
    if (href) {
      var a = el('a', null, value);
      a.href = href;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      dd.appendChild(a);
    } else {
      dd.textContent = String(value);
    }
    dl.appendChild(dd);
  }

  function openViewer(index) {
    var r = state.results[index];
    if (!r) return;
    state.viewerIndex = index;
    $('viewer').hidden = false;
    $('viewer-img').src = BROWSER_SHOWS[r.ext] && r.orientation <= 1 ? '/api/image/' + r.id : '/api/thumb/' + r.id;
    $('viewer-name').textContent = r.path;
    $('viewer-orig').href = '/api/image/' + r.id;
    var dl = $('viewer-meta');
    dl.textContent = '';
    metaRow(dl, 'Score', r.score !== undefined ? r.score.toFixed(4) : null);
    metaRow(dl, 'Taken', fmtDate(r.taken_at));
    metaRow(dl, 'Modified', fmtDate(r.mtime));
    var cam = [r.camera_make, r.camera_model].filter(Boolean).join(' ');
    metaRow(dl, 'Camera', cam);
    metaRow(dl, 'Pixels', r.width && r.height ? r.width + ' \u00d7 ' + r.height : null);
    metaRow(dl, 'Size', r.size ? fmtSize(r.size) : null);
    metaRow(dl, 'Type', r.ext);
    if (r.gps) {
      var lat = r.gps[0], lon = r.gps[1];
      metaRow(dl, 'Place', lat.toFixed(5) + ', ' + lon.toFixed(5),
              'https://www.openstreetmap.org/?mlat=' + lat + '&mlon=' + lon + '#map=15/' + lat + '/' + lon);
    }
    metaRow(dl, 'Id', r.id);
  }

  function closeViewer() { $('viewer').hidden = true; state.viewerIndex = -1; $('viewer-img').removeAttribute('src'); }

  function step(d) {
    var i = state.viewerIndex + d;
    if (i >= 0 && i < state.results.length) openViewer(i);
    else if (i >= state.results.length && state.more && !state.loading)
      runSearch(true).then(function () { if (i < state.results.length) openViewer(i); });
  }

  function moreLike() {
    var r = state.results[state.viewerIndex];
    if (!r) return;
    closeViewer();
    state.similar = String(r.id);
    state.example = null;
    $('q').value = '';
    writeUrl(true);
    runSearch(false);
  }

  /* ---- drop an image: search by example ---- */

  function onDrop(ev) {
    ev.preventDefault();
    document.body.classList.remove('dragging');
    var f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    if (!f) return;
    if (f.size > 32 * 1024 * 1024) { say('That file is too large to search with (32 MB at most).'); return; }
    showView('search', true);
    state.similar = null;
    state.example = f;
    $('q').value = '';
    writeUrl(false);
    say('Searching like ' + f.name + '...');
    runSearch(false);
  }

  /* ---- duplicates ---- */

  function updateSelected() {
    var n = Object.keys(state.selected).length;
    $('selected-count').textContent = n + ' selected';
  }

  function loadDupes() {
    say('Looking for duplicates...');
    var p = params(false);
    return api('/api/dupes?' + p.toString()).then(function (j) {
      var box = $('groups');
      box.textContent = '';
      state.selected = {};
      updateSelected();
      j.groups.forEach(function (g, gi) {
        var row = el('div', 'group');
        row.dataset.group = gi;
        g.files.forEach(function (f) {
          var m = el('figure', 'member' + (f.keep ? ' keep' : ''));
          m.dataset.id = f.id;
          m.appendChild(thumb(f.id));
          var c = el('figcaption');
          if (f.keep) c.appendChild(el('span', 'badge', 'keep'));
          else {
            var lab = el('label');
            var cb = el('input');
            cb.type = 'checkbox';
            cb.className = 'pick';
            cb.addEventListener('change', function () {
              if (cb.checked) state.selected[f.id] = f.path; else delete state.selected[f.id];
              updateSelected();
            });
            lab.appendChild(cb);
            lab.appendChild(document.createTextNode(' ' + f.match));
            c.appendChild(lab);
          }
          c.appendChild(el('div', 'name', f.path));
          c.appendChild(el('div', null, (f.width || '?') + '\u00d7' + (f.height || '?') + ', ' + fmtSize(f.size)));
          m.appendChild(c);
          row.appendChild(m);
        });
        box.appendChild(row);
      });
      say(j.groups.length ? j.groups.length + ' groups of duplicates; the copy to keep is marked.' : 'No duplicates.');
    }).catch(function (e) { say('Duplicates failed: ' + e.message); });
  }

  function exportSelection() {
    var paths = Object.keys(state.selected).map(function (k) { return state.selected[k]; });
    var text = paths.join('\n') + (paths.length ? '\n' : '');
    var ta = $('export-list');
    ta.hidden = false;
    ta.value = text;
    var a = el('a');
    a.href = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
    a.download = 'clipdex-duplicates.txt';
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  /* ---- moderation ---- */

  function loadLabelsets(wanted) {
    return api('/api/moderation').then(function (j) {
      var sel = $('labelset');
      sel.textContent = '';
      j.labelsets.forEach(function (s) {
        var o = el('option', null, s);
        o.value = s;
        sel.appendChild(o);
      });
      if (!j.labelsets.length) { say('No moderation results yet: run clipdex moderate first.'); return; }
      if (wanted && j.labelsets.indexOf(wanted) >= 0) sel.value = wanted;
      return loadQueues();
    }).catch(function (e) { say('Moderation failed: ' + e.message); });
  }

  function setMark(item, row, label, mark) {
    var p = new URLSearchParams({ id: row.vector_id, label: label, mark: mark });
    return api('/api/mark?' + p.toString(), { method: 'POST', headers: { 'X-Clipdex': '1' } }).then(function () {
      row.mark = mark === 'none' ? null : mark;
      item.className = 'item' + (row.mark ? ' ' + row.mark : '');
      item.querySelector('.mark-state').textContent = row.mark ? row.mark.replace('_', ' ') : '';
    }).catch(function (e) { say('Marking failed: ' + e.message); });
  }

  function loadQueues() {
    var set = $('labelset').value;
    writeUrl(false);
    if (!set) return Promise.resolve();
    return api('/api/moderation?labelset=' + encodeURIComponent(set)).then(function (j) {
      var box = $('queues');
      box.textContent = '';
      var total = 0;
      j.labels.forEach(function (q) {
        var sec = el('section', 'queue');
        sec.appendChild(el('h3', null, q.label + ' (' + q.items.length + ')'));
        q.items.forEach(function (row) {
          total++;
          var item = el('div', 'item' + (row.mark ? ' ' + row.mark : ''));
          item.dataset.vector = row.vector_id;
          item.appendChild(thumb(row.id));
          item.appendChild(el('span', 'score', (100 * row.probability).toFixed(1) + '%'));
          item.appendChild(el('span', 'path', row.path));
          item.appendChild(el('span', 'mark-state', row.mark ? row.mark.replace('_', ' ') : ''));
          [['reviewed', 'Reviewed'], ['false_positive', 'False positive'], ['none', 'Clear']].forEach(function (b) {
            var btn = el('button', 'mark-' + b[0], b[1]);
            btn.type = 'button';
            btn.addEventListener('click', function () { setMark(item, row, q.label, b[0]); });
            item.appendChild(btn);
          });
          sec.appendChild(item);
        });
        box.appendChild(sec);
      });
      say(total + ' flagged photos in ' + j.labels.length + ' queues, most probable first.');
    }).catch(function (e) { say('Moderation failed: ' + e.message); });
  }

  /* ---- views ---- */

  function showView(v, quiet) {
    state.view = v;
    ['search', 'dupes', 'moderation'].forEach(function (k) {
      $('view-' + k).hidden = k !== v;
      $('nav-' + k).classList.toggle('active', k === v);
    });
    $('q').disabled = $('not').disabled = v !== 'search';
    if (quiet) return;
    writeUrl(true);
    if (v === 'search') runSearch(false);
    else if (v === 'dupes') loadDupes();
    else loadLabelsets(new URLSearchParams(location.search).get('labelset'));
  }

  function start() {
    var u = readUrl();
    /* a token given in the URL became a cookie: keep it out of bookmarks */
    if (u.get('token')) writeUrl(false);
    showView(state.view, true);
    if (state.view === 'search') runSearch(false);
    else if (state.view === 'dupes') loadDupes();
    else loadLabelsets(u.get('labelset'));
    api('/api/status').then(function (s) {
      $('status').textContent = s.indexed + ' photos indexed' + (s.daemon_state ? ', clipdexd ' + s.daemon_state : '');
    }).catch(function () {});
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('search-form').addEventListener('submit', function (e) { e.preventDefault(); clearTimeout(debounceTimer);
      state.similar = null; state.example = null; writeUrl(false); runSearch(false); });
    $('q').addEventListener('input', scheduleSearch);
    $('not').addEventListener('input', scheduleSearch);
    FILTERS.forEach(function (k) { $(k).addEventListener('change', filterChanged); });
    document.querySelectorAll('nav a[data-view]').forEach(function (a) {
      a.addEventListener('click', function (e) { e.preventDefault(); showView(a.dataset.view); });
    });
    $('viewer-close').addEventListener('click', closeViewer);
    $('viewer-prev').addEventListener('click', function () { step(-1); });
    $('viewer-next').addEventListener('click', function () { step(1); });
    $('more-like').addEventListener('click', moreLike);
    $('export').addEventListener('click', exportSelection);
    $('labelset').addEventListener('change', loadQueues);
    document.addEventListener('keydown', function (e) {
      if ($('viewer').hidden) return;
      if (e.key === 'Escape') closeViewer();
      else if (e.key === 'ArrowRight') step(1);
      else if (e.key === 'ArrowLeft') step(-1);
    });
    document.addEventListener('dragover', function (e) { e.preventDefault(); document.body.classList.add('dragging'); });
    document.addEventListener('dragleave', function (e) {
      if (!e.relatedTarget) document.body.classList.remove('dragging'); });
    document.addEventListener('drop', onDrop);
    window.addEventListener('popstate', function () { readUrl(); showView(state.view, true);
      if (state.view === 'search') runSearch(false); });
    new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; }) && state.view === 'search' && state.more && !state.loading)
        runSearch(true);
    }, { rootMargin: '600px' }).observe($('sentinel'));
    start();
  });
})();
