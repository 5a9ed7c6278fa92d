// serve.test.js - the clipdex web app in Debian's chromium, headless,
// through puppeteer-core (never a downloaded browser).  Run by
// tests/cli/71-serve-browser.t, which builds the library, starts
// `clipdex serve` on 127.0.0.1 and passes:
//
//   node serve.test.js URL SHOTS_DIR FACTS_JSON
//
// FACTS_JSON: {"evil": [paths with hostile names], "png": count of PNGs,
//              "photo": id of a photo to drop on the page}
// Prints one JSON object per check, {"ok": bool, "msg": "..."}, and
// {"diag": "..."} lines; the .t turns them into TAP.  Expected values come
// from the JSON API (checked against a numpy oracle by 70-serve-api.t) or
// from the fixture, never from the page itself.
'use strict';

const fs = require('fs');
const path = require('path');
const puppeteer = require('puppeteer-core');

const [url, shots, factsFile] = process.argv.slice(2);
const facts = JSON.parse(fs.readFileSync(factsFile, 'utf8'));
const origin = new URL(url).origin;
const TIMEOUT = 60000;

function ok(cond, msg) { console.log(JSON.stringify({ ok: !!cond, msg })); return !!cond; }
function diag(msg) { console.log(JSON.stringify({ diag: String(msg) })); }

async function api(p) {
  const r = await fetch(origin + p);
  return r.json();
}

// Every thumbnail in sel has decoded (complete, with pixels).
async function thumbsLoaded(page, sel) {
  return page.waitForFunction((s) => {
    const imgs = Array.from(document.querySelectorAll(s));
    return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, { timeout: TIMEOUT }, sel).then(() => true, () => false);
}

async function cardIds(page) {
  return page.$$eval('#grid .card', (cs) => cs.map((c) => Number(c.dataset.id)));
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
           '--disable-extensions', '--disable-background-networking', '--disable-sync',
           '--disable-component-update', '--disable-default-apps', '--mute-audio'],
    defaultViewport: { width: 1280, height: 900 },
    timeout: TIMEOUT,
  });
  const errors = [];
  const offsite = [];
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (e) => errors.push('pageerror: ' + e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push('console: ' + m.text()); });
    await page.setRequestInterception(true);
    page.on('request', (r) => {
      if (!r.url().startsWith(origin) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) {
        offsite.push(r.url());
        r.abort();
      } else {
        r.continue();
      }
    });

    // ---- first thumbnails: from navigation to a decoded thumbnail
    const t0 = Date.now();
    await page.goto(url + '?q=' + encodeURIComponent('a photo'), { waitUntil: 'domcontentloaded' });
    await thumbsLoaded(page, '#grid .card img');
    diag('first thumbnails shown ' + (Date.now() - t0) + ' ms after opening ?q=a+photo');

    // ---- type a query, see results appear
    await page.goto(url, { waitUntil: 'networkidle0' });
    ok(await page.$eval('#msg', (e) => /Type a description/.test(e.textContent)), 'empty page: asks for a description');
    await page.type('#q', 'a red car', { delay: 20 });
    const want = await api('/api/search?q=a%20red%20car&n=60');
    await page.waitForFunction((n) => document.querySelectorAll('#grid .card').length === n, {}, want.results.length);
    ok(JSON.stringify(await cardIds(page)) === JSON.stringify(want.results.map((r) => r.id)),
       'typing "a red car": the grid shows the API\'s ' + want.results.length + ' results in order');
    ok(await thumbsLoaded(page, '#grid .card img'), 'every thumbnail in the grid decoded');
    ok(new URL(page.url()).searchParams.get('q') === 'a red car', 'the query is in the URL');
    await page.screenshot({ path: path.join(shots, 'search.png') });

    // ---- hostile file names show as text
    const names = await page.$$eval('#grid .card', (cs) => cs.map((c) => c.title));
    const shown = facts.evil.filter((p) => names.includes(p));
    ok(shown.length === facts.evil.length, 'hostile names: every one is a card titled with its exact path (' +
       shown.length + '/' + facts.evil.length + ')');
    const texts = await page.$$eval('#grid .card .name', (ns) => ns.map((n) => n.textContent));
    const base = (p) => p.slice(p.lastIndexOf('/') + 1);
    ok(facts.evil.slice(0, 2).every((p) => texts.includes(base(p))), 'markup and quotes in a name are shown as text');
    ok(await page.evaluate(() => document.getElementById('pwned') === null &&
         document.scripts.length === 1 && !document.querySelector('#grid img:not([src^="/api/thumb/"])')),
       'no element came out of a file name (no #pwned, one script, only thumbnail images)');
    const evilCard = await page.$('#grid .card[title^="' + facts.evil[0].replace(/["\\]/g, '\\$&') + '"]');
    if (evilCard) await evilCard.evaluate((e) => e.scrollIntoView());
    await page.screenshot({ path: path.join(shots, 'hostile-names.png') });
    await page.evaluate(() => window.scrollTo(0, 0));

    // ---- open a photo, keys, "more like this"
    await page.click('#grid .card');
    await page.waitForSelector('#viewer:not([hidden])');
    const first = want.results[0];
    ok(await page.$eval('#viewer-name', (e) => e.textContent) === first.path, 'photo view: the first result\'s path');
    const meta = await page.$eval('#viewer-meta', (e) => e.textContent);
    ok(meta.includes('Score') && meta.includes(String(first.width)) && meta.includes('Id'),
       'photo view: metadata (score, pixels, id)');
    ok(await page.waitForFunction(() => { const i = document.getElementById('viewer-img');
      return i.complete && i.naturalWidth > 0; }).then(() => true, () => false), 'photo view: the picture decoded');
    await page.screenshot({ path: path.join(shots, 'photo.png') });
    await page.keyboard.press('ArrowRight');
    ok(await page.$eval('#viewer-name', (e) => e.textContent) === want.results[1].path, 'right arrow: the next photo');
    await page.keyboard.press('ArrowLeft');
    ok(await page.$eval('#viewer-name', (e) => e.textContent) === first.path, 'left arrow: back');
    await page.click('#more-like');
    await page.waitForFunction((id) => new URL(location.href).searchParams.get('similar') === String(id), {}, first.id);
    const sim = await api('/api/similar?id=' + first.id + '&n=60');
    await page.waitForFunction((n) => document.querySelectorAll('#grid .card').length === n &&
      /photos like/.test(document.getElementById('msg').textContent), {}, sim.results.length);
    ok(JSON.stringify(await cardIds(page)) === JSON.stringify(sim.results.map((r) => r.id)),
       '"more like this": the API\'s similar results, the photo itself left out');
    await thumbsLoaded(page, '#grid .card img');
    await page.screenshot({ path: path.join(shots, 'more-like-this.png') });

    // ---- change a filter; the URL keeps it; a bookmark restores it
    await page.goto(url + '?q=' + encodeURIComponent('a red car'), { waitUntil: 'networkidle0' });
    await page.click('#filters summary');
    await page.select('#ext', 'png');
    await page.waitForFunction((n) => { const c = document.querySelectorAll('#grid .card');
      return c.length === n && Array.from(c).every((x) => x.title.endsWith('.png')); }, {}, facts.png)
      .then(() => ok(true, 'type filter PNG: exactly the ' + facts.png + ' PNGs'),
            () => ok(false, 'type filter PNG: exactly the ' + facts.png + ' PNGs'));
    const bookmarked = page.url();
    ok(new URL(bookmarked).searchParams.get('ext') === 'png', 'the filter is in the URL');
    await thumbsLoaded(page, '#grid .card img');
    await page.screenshot({ path: path.join(shots, 'filter.png') });
    await page.goto(bookmarked, { waitUntil: 'networkidle0' });
    ok(await page.$eval('#ext', (e) => e.value) === 'png' && await page.$eval('#q', (e) => e.value) === 'a red car' &&
       (await cardIds(page)).length === facts.png, 'opening the bookmark restores the query, the filter and the results');

    // ---- endless scrolling: pages of 4 in a small window
    await page.setViewport({ width: 600, height: 400 });
    const offsets = [];
    const onReq = (r) => { const u = new URL(r.url()); if (u.pathname === '/api/search') offsets.push(u.searchParams.get('n') + '@' + u.searchParams.get('offset')); };
    page.on('request', onReq);
    await page.goto(url + '?q=' + encodeURIComponent('a red car') + '&n=4', { waitUntil: 'networkidle0' });
    const before = (await cardIds(page)).length;
    const all = await api('/api/search?q=a%20red%20car&n=200');
    for (let i = 0; i < 40 && (await cardIds(page)).length < all.results.length; i++) {
      await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
      await new Promise((r) => setTimeout(r, 250));
    }
    page.off('request', onReq);
    const pagesOk = offsets.every((o, i) => o === '4@' + 4 * i);
    ok(before >= 4 && before < all.results.length && pagesOk &&
       JSON.stringify(await cardIds(page)) === JSON.stringify(all.results.map((r) => r.id)),
       'endless scrolling: ' + before + ' cards at first, then pages of 4 (' + offsets.length +
       ' requests) as the window scrolls, until all ' + all.results.length + ' results, in order');
    await page.setViewport({ width: 1280, height: 900 });

    // ---- drop an image file on the page: search by example
    await page.goto(url, { waitUntil: 'networkidle0' });
    await page.evaluate(async (id) => {
      const blob = await (await fetch('/api/image/' + id)).blob();
      const dt = new DataTransfer();
      dt.items.add(new File([blob], 'dropped.jpg', { type: 'image/jpeg' }));
      document.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, facts.photo);
    ok(await page.waitForFunction((id) => { const c = document.querySelector('#grid .card');
      return c && c.dataset.id === String(id); }, {}, facts.photo).then(() => true, () => false),
       'dropping a photo: that photo is the first result');
    await page.screenshot({ path: path.join(shots, 'dropped.png') });

    // ---- duplicates
    await page.click('#nav-dupes');
    const dupes = await api('/api/dupes');
    await page.waitForFunction((n) => document.querySelectorAll('#groups .group').length === n, {}, dupes.groups.length);
    const groupIds = await page.$$eval('#groups .group', (gs) => gs.map((g) =>
      Array.from(g.querySelectorAll('.member')).map((m) => Number(m.dataset.id))));
    ok(JSON.stringify(groupIds) === JSON.stringify(dupes.groups.map((g) => g.files.map((f) => f.id))),
       'duplicates: the API\'s ' + dupes.groups.length + ' groups side by side');
    ok(await page.$$eval('#groups .group', (gs) => gs.every((g) => g.querySelector('.member').classList.contains('keep') &&
       g.querySelectorAll('.member.keep').length === 1 && g.querySelectorAll('.member:not(.keep) input.pick').length ===
       g.querySelectorAll('.member').length - 1)), 'duplicates: the copy to keep marked, the others selectable');
    await page.click('#groups .group .member:not(.keep) input.pick');
    await page.click('#export');
    const exported = await page.$eval('#export-list', (e) => e.value);
    ok(exported === dupes.groups[0].files[1].path + '\n', 'export: the selected copy\'s path, one per line');
    await thumbsLoaded(page, '#groups img');
    await page.screenshot({ path: path.join(shots, 'dupes.png') });

    // ---- moderation: mark a result
    await page.click('#nav-moderation');
    await page.waitForSelector('#queues .item');
    const set = await page.$eval('#labelset', (e) => e.value);
    const q = await api('/api/moderation?labelset=' + encodeURIComponent(set));
    const item0 = q.labels[0].items[0];
    ok(await page.$eval('#queues .item', (e) => Number(e.dataset.vector)) === item0.vector_id,
       'moderation: the first queue starts with the most probable result');
    await page.click('#queues .item .mark-false_positive');
    await page.waitForSelector('#queues .item.false_positive');
    const q2 = await api('/api/moderation?labelset=' + encodeURIComponent(set));
    const again = q2.labels[0].items.find((i) => i.vector_id === item0.vector_id);
    ok(again && again.mark === 'false_positive', 'marking "false positive" in the page stores it in the index');
    await thumbsLoaded(page, '#queues img');
    await page.screenshot({ path: path.join(shots, 'moderation.png') });

    ok(errors.length === 0, 'no script errors or CSP violations (' + errors.slice(0, 3).join(' | ') + ')');
    ok(offsite.length === 0, 'no request left the server (' + offsite.slice(0, 3).join(' ') + ')');
  } finally {
    await browser.close();
  }
}

main().catch((e) => { ok(false, 'browser test aborted: ' + (e && e.stack || e)); process.exitCode = 0; });
