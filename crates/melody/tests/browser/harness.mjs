// Shared plumbing for the headless-Chromium example tests (chat.mjs, gophers.mjs).
//
// Each test script calls `runTest(name, body)`: it reads the page URL from
// argv[2], launches Chromium, runs `body`, always closes the browser, bounds
// the whole run with a global timeout and exits 0 on success, 1 on failure.

import { chromium } from 'playwright-core';

/** Timeout for a single wait on a page condition. */
export const STEP_TIMEOUT_MS = 10_000;

/** Upper bound for a whole test script, browser start-up included. */
const GLOBAL_TIMEOUT_MS = 60_000;

/** Chromium flags needed on a machine without internet access. */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** An error raised by a failed check; its message is printed as is. */
export class TestFailure extends Error {}

/**
 * Waits until `predicate(arg)` is truthy inside `page`; on timeout, fails
 * with `what` in the message instead of playwright's generic one.
 */
export async function waitUntil(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: STEP_TIMEOUT_MS, polling: 'raf' });
  } catch (err) {
    throw new TestFailure(`timed out after ${STEP_TIMEOUT_MS} ms waiting for ${what}: ${firstLine(err)}`);
  }
}

/**
 * Opens `url` in a fresh browser context (a separate visitor) and waits for status "open".
 * `beforeLoad(page)`, if given, runs before the page is loaded (to add init scripts such as
 * `recordWebSockets`).
 */
export async function openVisitor(browser, url, label, { beforeLoad } = {}) {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = await context.newPage();
  if (beforeLoad) await beforeLoad(page);
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err));
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.error(`[page ${label} console] ${msg.text()}`);
  });
  const response = await page.goto(url, { timeout: STEP_TIMEOUT_MS });
  if (!response || !response.ok()) {
    throw new TestFailure(`page ${label}: GET ${url} answered ${response ? response.status() : 'nothing'}`);
  }
  await waitUntil(page, `page ${label} to show status "open"`, () =>
    document.getElementById('status')?.textContent.trim() === 'open');
  return { label, context, page, pageErrors };
}

/**
 * Makes every WebSocket that `page`'s own scripts open reachable from the test, as
 * `window.__melodyTestSockets`, so that what the browser negotiated for the page's connection
 * (`extensions`, `protocol`) can be read: pages keep their socket in a closure. The page's
 * `WebSocket` becomes a subclass that only records its instances, so the page behaves as it
 * does for users.
 */
export async function recordWebSockets(page) {
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    const sockets = [];
    window.__melodyTestSockets = sockets;
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        sockets.push(this);
      }
    };
  });
}

/** Fails if any page raised an uncaught JavaScript error. */
export function assertNoPageErrors(...visitors) {
  for (const { label, pageErrors } of visitors) {
    if (pageErrors.length > 0) {
      throw new TestFailure(`page ${label} raised: ${pageErrors.map(firstLine).join('; ')}`);
    }
  }
}

/** Runs a test body against the URL in argv[2] and exits the process with its outcome. */
export async function runTest(name, body) {
  const url = process.argv[2];
  if (!url) {
    console.error(`usage: node ${name}.mjs <page url>`);
    process.exit(2);
  }

  let browser;
  const timer = setTimeout(async () => {
    console.error(`${name}: FAILED: global timeout of ${GLOBAL_TIMEOUT_MS} ms exceeded`);
    await Promise.race([browser?.close(), new Promise((r) => setTimeout(r, 5_000))]).catch(() => {});
    process.exit(1);
  }, GLOBAL_TIMEOUT_MS);

  let code = 1;
  try {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: CHROMIUM_ARGS,
    });
    await body(browser, url);
    console.log(`${name}: ok`);
    code = 0;
  } catch (err) {
    const detail = err instanceof TestFailure ? err.message : err?.stack || String(err);
    console.error(`${name}: FAILED: ${detail}`);
  } finally {
    await browser?.close().catch(() => {});
    clearTimeout(timer);
  }
  process.exit(code);
}

function firstLine(err) {
  return String(err?.message ?? err).split('\n')[0];
}
