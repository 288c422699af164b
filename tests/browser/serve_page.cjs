// Drives the page of `engine serve` in headless Chromium (playwright-core, no downloaded browser):
//   node tests/browser/serve_page.cjs URL IMAGE SCREENSHOT
// Opens the page, checks the first Tab reaches the file picker, uploads IMAGE, waits for the
// prediction, saves SCREENSHOT, classifies a mouse drawing and prints what the page shows as one JSON line. Any console error
// (a Content-Security-Policy violation among them) fails it.
const { chromium } = require('playwright-core');

(async () => {
  const [url, image, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROME || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  // The preview is a blob: URL of the picked file, which is local.
  const local = (u) => u.startsWith(new URL(url).origin) || u.startsWith('blob:') || u.startsWith('data:');
  page.on('request', (r) => { if (!local(r.url())) problems.push('external: ' + r.url()); });
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => !document.getElementById('model-line').textContent.startsWith('Loading'));
  await page.keyboard.press('Tab');
  const firstFocus = await page.evaluate(() => document.activeElement.id);
  await page.setInputFiles('#file', image);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 20000 });
  const shown = await page.evaluate(() => ({
    predicted: document.getElementById('predicted').textContent,
    index: Number(document.getElementById('predicted').dataset.index),
    bars: [...document.querySelectorAll('#bars li')].map((li) => li.getAttribute('aria-label')),
    latency: document.getElementById('latency').textContent,
    card: document.getElementById('card').textContent,
    confusionRows: document.querySelectorAll('#confusion tr').length,
    drawing: !document.getElementById('draw-panel').hidden,
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
  // A stroke drawn with the mouse is classified too.
  const box = await page.locator('#canvas').boundingBox();
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.8, { steps: 10 });
  await page.mouse.move(box.x + box.width * 0.7, box.y + box.height * 0.2, { steps: 10 });
  await page.mouse.up();
  await page.evaluate(() => { document.getElementById('status').textContent = ''; });
  await page.click('#classify-drawing');
  await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 20000 });
  shown.drawnPredicted = await page.locator('#predicted').textContent();
  await browser.close();
  console.log(JSON.stringify({ ...shown, firstFocus, problems }));
})().catch((e) => { console.error(e); process.exit(1); });
