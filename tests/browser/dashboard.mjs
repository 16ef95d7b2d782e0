// Drives the fts web dashboard in a real Chromium (Debian's /usr/bin/chromium
// through playwright-core). Run by tests/browser.rs, which starts the server,
// a slow `fts put` under the name FTS_CLIENT_NAME, and checks the server side
// afterwards (the kicked client's exit code and stderr, the uploaded file).
//
// Environment:
//   FTS_WEB_URL          https://127.0.0.1:PORT/
//   FTS_ACCESS_PASSWORD  the access password (HTTP Basic), may be empty
//   FTS_ADMIN_PASSWORD   the admin password for the dashboard's login form
//   FTS_ARTIFACTS        directory for screenshots, the download, failure dumps
//   FTS_UPLOAD_FILE      a local file to upload through the page
//   FTS_DOWNLOAD_NAME    a file in the served root to download through the page
//   FTS_CLIENT_NAME      the client to watch, warn and kick (default put-client)
//   FTS_WARN_TEXT        the warning to send (default: a unique text)
//   FTS_KICK_REASON      the kick reason (default: a unique text)
//
// On success prints one JSON line on stdout and exits 0. On failure prints
// "dashboard test failed at step N (...): why" on stderr, leaves
// failure.png, failure-page.html and console.log in FTS_ARTIFACTS, exits 1.

import { chromium } from 'playwright-core';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const env = (name, fallback) => {
  const v = process.env[name];
  if (v !== undefined && v !== '') return v;
  if (fallback !== undefined) return fallback;
  console.error(`dashboard.mjs: environment variable ${name} is required`);
  process.exit(2);
};

const URL_ = env('FTS_WEB_URL');
const ACCESS_PW = process.env.FTS_ACCESS_PASSWORD || '';
const ADMIN_PW = env('FTS_ADMIN_PASSWORD');
const ARTIFACTS = env('FTS_ARTIFACTS');
const UPLOAD_FILE = env('FTS_UPLOAD_FILE');
const DOWNLOAD_NAME = env('FTS_DOWNLOAD_NAME');
const CLIENT = env('FTS_CLIENT_NAME', 'put-client');
const unique = `${process.pid}-${Date.now().toString(36)}`;
const WARN_TEXT = env('FTS_WARN_TEXT', `browser warning ${unique}`);
const KICK_REASON = env('FTS_KICK_REASON', `browser kick ${unique}`);

const T = { short: 5_000, medium: 15_000, long: 60_000 };

mkdirSync(ARTIFACTS, { recursive: true });

const t0 = Date.now();
const log = (msg) => console.error(`[dashboard ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha256 = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');
// A CSS attribute selector value, quoted.
const q = (s) => JSON.stringify(String(s));

const result = {
  client: CLIENT,
  warn_text: WARN_TEXT,
  kick_reason: KICK_REASON,
  progress_samples: [],
  screenshots: [],
  console_errors: [],
  page_errors: [],
  failed_requests: [],
  js_dialogs: [],
};
const consoleLines = [];

let browser;
let page;
let stepName = 'launch';

class StepError extends Error {}
const fail = (msg) => {
  throw new StepError(msg);
};
// A failure that does not stop the step (nor the steps that need it).
const softFail = (msg) => {
  log(`step ${stepName}: ${msg}`);
  failures.push({ step: stepName, message: msg, soft: true });
};

// Runs one step; a failure is recorded (with a screenshot and the page's
// HTML named after the step) and the later steps still run, so one run
// reports every broken part of the page. `needs` names earlier steps whose
// failure makes this one pointless.
const failures = [];
async function step(name, fn, needs = []) {
  stepName = name;
  const broken = needs.filter((n) => failures.some((f) => f.step === n && !f.soft));
  if (broken.length) {
    log(`step ${name} skipped: needs ${broken.join(', ')}`);
    failures.push({ step: name, message: `skipped because step ${broken.join(', ')} failed` });
    return;
  }
  log(`step ${name}`);
  const s = Date.now();
  try {
    await fn();
    log(`step ${name} done in ${((Date.now() - s) / 1000).toFixed(1)}s`);
  } catch (e) {
    const message = e instanceof StepError ? e.message : e.stack || String(e);
    log(`step ${name} FAILED: ${message}`);
    failures.push({ step: name, message, url: page ? page.url() : null });
    await dumpFailure(name.split(' ')[0]);
  }
}

async function shot(file, opts = {}) {
  await page.screenshot({ path: join(ARTIFACTS, file), ...opts });
  result.screenshots.push(file);
}

// Waits for `selector` to be attached (or visible), failing with `what`.
async function need(selector, what, { state = 'visible', timeout = T.medium } = {}) {
  const loc = page.locator(selector).first();
  try {
    await loc.waitFor({ state, timeout });
  } catch {
    fail(`${what}: no ${state} element matches ${selector} after ${timeout / 1000}s`);
  }
  return loc;
}

async function waitTrue(fn, arg, what, timeout = T.medium) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 100 });
  } catch {
    fail(`${what} (waited ${timeout / 1000}s)`);
  }
}

const rowSel = `table#clients tr[data-name=${q(CLIENT)}]`;

async function readProgress() {
  return page.evaluate((sel) => {
    const row = document.querySelector(sel);
    if (!row) return null;
    const p = row.querySelector('progress');
    const done = row.getAttribute('data-bytes-done');
    return {
      t_ms: Date.now(),
      value: p ? p.value : null,
      max: p ? p.max : null,
      data_bytes_done: done === null ? null : Number(done),
      state: row.querySelector('td.state')?.textContent.trim() ?? null,
      file: row.querySelector('td.file')?.textContent.trim() ?? null,
      rate: row.querySelector('td.rate')?.textContent.trim() ?? null,
    };
  }, rowSel);
}

async function main() {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
    ...(ACCESS_PW ? { httpCredentials: { username: 'fts', password: ACCESS_PW } } : {}),
  });
  page = await context.newPage();
  page.setDefaultTimeout(T.medium);
  page.on('console', (m) => {
    consoleLines.push(`[${m.type()}] ${m.text()}`);
    if (m.type() === 'error') result.console_errors.push(m.text());
  });
  page.on('pageerror', (e) => {
    consoleLines.push(`[pageerror] ${e.stack || e}`);
    result.page_errors.push(String(e.message || e));
  });
  page.on('requestfailed', (r) => {
    const line = `${r.method()} ${r.url()}: ${r.failure()?.errorText}`;
    consoleLines.push(`[requestfailed] ${line}`);
    // Aborted downloads and polls cut by a reload are not the page's fault.
    if (!/ERR_ABORTED/.test(line)) result.failed_requests.push(line);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) consoleLines.push(`[http ${r.status()}] ${r.request().method()} ${r.url()}`);
  });
  page.on('dialog', async (d) => {
    result.js_dialogs.push(`${d.type()}: ${d.message()}`);
    consoleLines.push(`[js dialog] ${d.type()}: ${d.message()} (accepted)`);
    await d.accept();
  });
  let mainNavigations = 0;
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) mainNavigations += 1;
  });

  await step('1 live progress', async () => {
    const resp = await page.goto(URL_, { waitUntil: 'load' });
    if (!resp || resp.status() !== 200) fail(`GET ${URL_} answered ${resp ? resp.status() : 'nothing'}`);
    const ctype = resp.headers()['content-type'] || '';
    if (!ctype.includes('text/html')) fail(`GET ${URL_} is ${ctype || 'untyped'}, not text/html`);
    await need('#status', 'the status section');
    await need('table#clients', 'the client table', { state: 'attached' });
    await need(rowSel, `the row of client ${CLIENT}`, { timeout: 20_000 });
    await need(`${rowSel} progress`, `a progress element in the row of ${CLIENT}`, { state: 'attached' });
    result.uptime_text = (await page.locator('#uptime').first().textContent({ timeout: T.short }))?.trim();
    result.clients_connected_text = (
      await page.locator('#clients-connected').first().textContent({ timeout: T.short })
    )?.trim();
    result.totals = await page.evaluate(() =>
      Object.fromEntries(
        [...document.querySelectorAll('#totals [data-total]')].map((e) => [
          e.getAttribute('data-total'),
          e.textContent.trim(),
        ]),
      ),
    );
    for (const k of ['bytes_sent', 'bytes_received']) {
      if (!(k in result.totals)) fail(`#totals has no [data-total="${k}"] (found: ${Object.keys(result.totals)})`);
    }
    for (const c of ['canvas#chart-throughput', 'canvas#chart-saved']) {
      const box = await (await need(c, `the chart ${c}`)).boundingBox();
      if (!box || box.width < 100 || box.height < 50) fail(`${c} is drawn ${box?.width}x${box?.height}px`);
    }
    result.row_id = await page.locator(rowSel).first().getAttribute('data-client-id');
    if (!result.row_id) fail(`the row of ${CLIENT} has no data-client-id`);
    await page.evaluate(() => {
      window.__ftsNoReload = true;
    });
    const navBefore = mainNavigations;
    await shot('01-dashboard.png');

    // Samples over >= 2 s, no reload in between: the value must grow.
    const first = await readProgress();
    if (!first) fail(`the row of ${CLIENT} vanished`);
    if (!(first.max > 0)) fail(`progress max is ${first.max}, not the file's size`);
    result.progress_samples.push(first);
    let last = first;
    const deadline = Date.now() + 12_000;
    while (Date.now() < deadline) {
      await sleep(500);
      last = await readProgress();
      if (!last) fail(`the row of ${CLIENT} vanished while its upload should still run`);
      result.progress_samples.push(last);
      if (last.t_ms - first.t_ms >= 2000 && last.value > first.value) break;
    }
    if (!(last.value > first.value && last.t_ms - first.t_ms >= 2000)) {
      fail(
        `progress did not grow without a reload: ${first.value} -> ${last.value} of ${last.max} ` +
          `over ${(last.t_ms - first.t_ms) / 1000}s`,
      );
    }
    if (last.data_bytes_done !== null && last.data_bytes_done <= 0) {
      fail(`row data-bytes-done is ${last.data_bytes_done} while progress is ${last.value}`);
    }
    const stillSame = await page.evaluate(() => window.__ftsNoReload === true);
    if (!stillSame || mainNavigations !== navBefore) fail('the page reloaded itself while showing progress');
    result.progress_max = last.max;
    result.row_state = last.state;
    result.row_file = last.file;
    result.row_rate = last.rate;
    await shot('02-progress.png');
  });

  await step('2 admin login', async () => {
    const warnBtn = page.locator(`${rowSel} button.warn`).first();
    result.warn_visible_before_login = await warnBtn.isVisible();
    if (result.warn_visible_before_login) fail('button.warn is visible before the admin logged in');
    const pw = await need('#admin-password', 'the admin password input');
    await pw.fill(ADMIN_PW);
    await (await need('#login-button', 'the login button')).click();
    await waitTrue(() => document.body.classList.contains('admin'), null, 'body did not get class "admin" after login');
    await need(`${rowSel} button.warn`, 'button.warn in the row after login');
    await need(`${rowSel} button.kick`, 'button.kick in the row after login');
    await need('#logout-button', 'the logout button after login');
    result.login_form_visible_after_login = await page.locator('#login-form').first().isVisible();
    await shot('03-admin.png');
    if (result.login_form_visible_after_login) {
      const why = await page.evaluate(() => getComputedStyle(document.querySelector('#login-form')).display);
      softFail(`#login-form is still shown (display: ${why}) after the admin logged in`);
    }
  });

  // Opens the action dialog with the row's `button.cls`, types, confirms.
  async function rowAction(cls, text) {
    const btn = await need(`${rowSel} button.${cls}`, `button.${cls} in the row of ${CLIENT}`);
    await btn.click();
    await need('dialog#action', `dialog#action after clicking button.${cls}`);
    const open = await page.evaluate(() => document.querySelector('dialog#action').open);
    if (!open) fail(`dialog#action is visible but not open after clicking button.${cls}`);
    const input = await need('#action-text', `#action-text in the dialog opened by button.${cls}`);
    await input.fill(text);
    await (await need('#action-ok', `#action-ok in the dialog opened by button.${cls}`)).click();
    await waitTrue(
      () => !document.querySelector('dialog#action')?.open,
      null,
      `dialog#action did not close after #action-ok (button.${cls})`,
    );
  }

  await step('3 warn and kick', async () => {
    await rowAction('warn', WARN_TEXT);
    await sleep(1000);
    if ((await page.locator(rowSel).count()) === 0) fail(`the row of ${CLIENT} vanished after a mere warning`);
    await rowAction('kick', KICK_REASON);
    try {
      await page.locator(rowSel).first().waitFor({ state: 'detached', timeout: T.medium });
    } catch {
      fail(`the row of ${CLIENT} is still there ${T.medium / 1000}s after the kick`);
    }
    await shot('04-kicked.png');
  }, ['1 live progress', '2 admin login']);

  // The page's own navigation to its files view, if it has one.
  async function openFiles() {
    const nav = page.locator('#nav-files, a[href^="#files"]').first();
    if ((await nav.count()) > 0 && (await nav.isVisible())) await nav.click();
    const section = await need('section#files', 'the files section (after clicking its navigation link)');
    await section.scrollIntoViewIfNeeded();
    return section;
  }

  await step('4a download', async () => {
    await openFiles();
    const link = await need(
      `#files-list tr[data-name=${q(DOWNLOAD_NAME)}] a.download`,
      `the download link of ${DOWNLOAD_NAME} in #files-list`,
    );
    const href = await link.getAttribute('href');
    result.download_href = href;
    // What the server answers for the link, to explain a failed download.
    const probe = async () => {
      try {
        const r = await page.request.get(new URL(href, page.url()).href, { maxRedirects: 0 });
        const body = (await r.body()).subarray(0, 200).toString('utf8').replace(/[^\x20-\x7e]/g, '.');
        return `GET ${href} answers ${r.status()} ${r.headers()['content-type'] || ''}: ${body}`;
      } catch (e) {
        return `GET ${href} failed: ${e.message}`;
      }
    };
    let download;
    try {
      [download] = await Promise.all([page.waitForEvent('download', { timeout: T.medium }), link.click()]);
    } catch {
      fail(`clicking a.download started no download; the page is now at ${page.url()}; ${await probe()}`);
    }
    const failure = await download.failure();
    if (failure) fail(`the browser's download of ${DOWNLOAD_NAME} ended "${failure}"; ${await probe()}`);
    const saved = join(ARTIFACTS, DOWNLOAD_NAME);
    await download.saveAs(saved);
    result.downloaded_path = saved;
    result.downloaded_suggested_name = download.suggestedFilename();
    result.downloaded_sha256 = sha256(saved);
  });

  await step('4b upload', async () => {
    const section = await openFiles();
    const input = await need('#upload-input', 'the upload file input', { state: 'attached' });
    await input.setInputFiles(UPLOAD_FILE);
    await (await need('#upload-button', 'the upload button')).click();
    // Done when the status says "uploaded", or anything with "fail"/"error".
    await waitTrue(
      () => /uploaded|fail|error/i.test(document.querySelector('#upload-status')?.textContent || ''),
      null,
      `#upload-status never said "uploaded"`,
      T.long,
    );
    result.upload_status = (await page.locator('#upload-status').first().textContent())?.trim();
    if (!/uploaded/i.test(result.upload_status) || /fail|error/i.test(result.upload_status)) {
      fail(`the upload did not work: #upload-status says "${result.upload_status}"`);
    }
    result.uploaded_name = basename(UPLOAD_FILE);
    // The list shows the new file (not a hard requirement of the contract).
    try {
      await page
        .locator(`#files-list tr[data-name=${q(result.uploaded_name)}]`)
        .first()
        .waitFor({ state: 'attached', timeout: T.short });
      result.upload_listed = true;
    } catch {
      result.upload_listed = false;
    }
    await section.scrollIntoViewIfNeeded();
    await shot('05-files.png');
  });

  // Sideways overflow of the page as it is now, with the elements sticking
  // out (outside scrolling containers) to name in a failure.
  async function overflow(view) {
    const m = await page.evaluate(() => {
      const w = window.innerWidth;
      const scrolls = (e) => {
        for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
          if (/(auto|scroll|hidden)/.test(getComputedStyle(a).overflowX)) return true;
        }
        return false;
      };
      const wide = [...document.querySelectorAll('body *')]
        .filter((e) => e.getClientRects().length > 0 && e.getBoundingClientRect().right > w + 1 && !scrolls(e))
        .slice(0, 8)
        .map((e) => {
          const id = e.id ? `#${e.id}` : '';
          const cls = e.classList.length ? `.${[...e.classList].join('.')}` : '';
          return `${e.tagName.toLowerCase()}${id}${cls} (right edge ${Math.round(e.getBoundingClientRect().right)}px)`;
        });
      return { scrollWidth: document.documentElement.scrollWidth, innerWidth: w, wide };
    });
    if (m.scrollWidth > m.innerWidth + 1) {
      fail(
        `the ${view} overflows a ${m.innerWidth}px phone sideways: scrollWidth ${m.scrollWidth}; ` +
          `sticking out: ${m.wide.join(', ') || '(nothing outside a scrolling box)'}`,
      );
    }
    return m;
  }

  await step('5 phone', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload({ waitUntil: 'load' });
    await need('#status', 'the status section on a phone', { state: 'attached' });
    await need('table#clients', 'the client table on a phone', { state: 'attached' });
    await sleep(500);
    await shot('06-phone.png', { fullPage: true });
    result.phone = await overflow(`page after a reload (${new URL(page.url()).hash || 'no hash'})`);
    // The dashboard view too, if the reload kept another view.
    const nav = page.locator('#nav-dashboard, a[href="#dashboard"]').first();
    if ((await nav.count()) > 0 && (await nav.isVisible())) {
      await nav.click();
      await need('#status', 'the status section on a phone after going to the dashboard');
      await sleep(500);
      await shot('07-phone-dashboard.png', { fullPage: true });
      result.phone_dashboard = await overflow('dashboard');
    }
  });

  await step('6 logout', async () => {
    await (await need('#logout-button', 'the logout button')).click();
    await waitTrue(() => !document.body.classList.contains('admin'), null, 'body kept class "admin" after logout');
    await need('#admin-password', 'the admin password input after logout');
    if (await page.locator('#logout-button').first().isVisible()) fail('#logout-button still shown after logout');
  }, ['2 admin login']);

  if (result.page_errors.length) {
    failures.push({ step: 'page', message: `uncaught JavaScript errors: ${result.page_errors.join(' | ')}` });
  }
  result.elapsed_s = (Date.now() - t0) / 1000;
}

async function dumpFailure(tag) {
  writeConsole();
  if (!page) return;
  try {
    writeFileSync(join(ARTIFACTS, `failure-${tag}-page.html`), await page.content());
  } catch {}
  try {
    await page.screenshot({ path: join(ARTIFACTS, `failure-${tag}.png`), fullPage: true, timeout: T.short });
  } catch {}
}

function writeConsole() {
  try {
    writeFileSync(join(ARTIFACTS, 'console.log'), consoleLines.join('\n') + '\n');
  } catch {}
}

let code = 0;
try {
  await main();
} catch (e) {
  // Outside any step: the browser did not start, or the script is broken.
  failures.push({ step: stepName, message: e.stack || String(e) });
  await dumpFailure('script');
} finally {
  if (browser) await browser.close().catch(() => {});
}
writeConsole();
result.failures = failures;
process.stdout.write(JSON.stringify(result) + '\n');
try {
  writeFileSync(join(ARTIFACTS, 'result.json'), JSON.stringify(result, null, 2) + '\n');
} catch {}
if (failures.length) {
  code = 1;
  console.error(`dashboard test failed (${failures.length} step(s)); artifacts in ${ARTIFACTS}:`);
  for (const f of failures) console.error(`  step ${f.step}: ${f.message}${f.url ? ` [page ${f.url}]` : ''}`);
  if (consoleLines.length) console.error(`  last console lines:\n    ${consoleLines.slice(-15).join('\n    ')}`);
}
process.exit(code);
