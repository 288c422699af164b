// Captures pages of the MLflow UI as PNGs with headless Chromium (playwright-core):
//   node scripts/screenshots.cjs OUT_DIR NAME=URL ...
// Each page gets time to draw its charts; on a runs table with nested runs, the parent rows are
// expanded first.
const { chromium } = require('playwright-core');

(async () => {
  const [out, ...shots] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROME || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  for (const shot of shots) {
    const split = shot.indexOf('=');
    const [name, url] = [shot.slice(0, split), shot.slice(split + 1)];
    await page.goto(url, { waitUntil: 'load' });
    await page.waitForTimeout(3000);
    // The toggle beside a parent run's name shows its children.
    for (const expand of await page.locator('button[data-component-id$="runnamecellrenderer.tsx_46"]').all()) {
      await expand.click().catch(() => {});
    }
    await page.waitForTimeout(1000);
    // Charts draw when scrolled into view.
    await page.mouse.wheel(0, 400);
    await page.waitForTimeout(1500);
    await page.mouse.wheel(0, -400);
    await page.waitForTimeout(6000);
    await page.screenshot({ path: `${out}/${name}` });
    console.log(`wrote ${out}/${name}`);
  }
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
