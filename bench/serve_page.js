// serve_page.js URL QUERY RUNS - time from opening the clipdex web app at
// URL?q=QUERY in headless chromium (Debian's, via tests/browser's
// puppeteer-core) to the first thumbnail decoded in the grid.  The first
// run meets an empty thumbnail cache (the .sh clears it); the others a
// warm one.  Prints "first_ms A warm_median_ms B runs R".
'use strict';
const path = require('path');
const puppeteer = require(path.join(__dirname, '..', 'tests', 'browser', 'node_modules', 'puppeteer-core'));

(async () => {
  const [url, query, runs] = [process.argv[2], process.argv[3], Number(process.argv[4] || 7)];
  const browser = await puppeteer.launch({ executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  const times = [];
  for (let i = 0; i < runs; i++) {
    const ctx = await browser.createBrowserContext(); // no HTTP cache between runs
    const page = await ctx.newPage();
    const t0 = Date.now();
    await page.goto(url + '?q=' + encodeURIComponent(query), { waitUntil: 'domcontentloaded' });
    await page.waitForFunction(() => Array.from(document.querySelectorAll('#grid .card img'))
      .some((i) => i.complete && i.naturalWidth > 0), { timeout: 120000, polling: 'raf' });
    times.push(Date.now() - t0);
    await ctx.close();
  }
  await browser.close();
  const warm = times.slice(1).sort((a, b) => a - b);
  console.log('first_ms ' + times[0] + ' warm_median_ms ' + (warm.length ? warm[warm.length >> 1] : times[0]) +
              ' runs ' + runs);
})().catch((e) => { console.error(e); process.exit(1); });
