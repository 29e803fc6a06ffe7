// Headless-Chromium test of the sse example.
//
// Usage: node sse.mjs <page url>
//
// Page A follows device-42 by EventSource. Page B, on the same device, publishes over its
// WebSocket; then the test publishes with an HTTP POST (as curl would). Both reach page A as
// events; a page following another device sees neither.

import { assertNoPageErrors, openVisitor, runTest, waitUntil, TestFailure } from './harness.mjs';

const hasEvent = (t) => [...document.querySelectorAll('#events .event .data')].some((e) => e.textContent === t);

await runTest('sse', async (browser, url) => {
  const a = await openVisitor(browser, url, 'A');
  const b = await openVisitor(browser, url, 'B');
  const other = await openVisitor(browser, url, 'C');
  await other.page.locator('#device').fill('device-7');
  await other.page.locator('#follow').click();
  for (const v of [a, b, other]) {
    await waitUntil(v.page, `page ${v.label} socket open`, () =>
      document.getElementById('ws-status')?.dataset.state === 'open');
  }
  await waitUntil(other.page, 'page C events open', () =>
    document.getElementById('status')?.dataset.state === 'open');
  const tag = `${process.pid}-${Date.now().toString(36)}`;

  const fromSocket = `over websocket ${tag}`;
  await b.page.locator('#input').fill(fromSocket);
  await b.page.locator('#input').press('Enter');
  await waitUntil(a.page, `${JSON.stringify(fromSocket)} as an event in page A`, hasEvent, fromSocket);

  const fromCurl = `over http ${tag}`;
  const response = await fetch(new URL('/publish?device=device-42', url), { method: 'POST', body: fromCurl });
  if (!response.ok) throw new TestFailure(`POST /publish answered ${response.status}`);
  await waitUntil(a.page, `${JSON.stringify(fromCurl)} as an event in page A`, hasEvent, fromCurl);
  await waitUntil(b.page, `${JSON.stringify(fromCurl)} as an event in page B`, hasEvent, fromCurl);

  // Page C follows another device: after its own event arrives, A's must not have.
  const own = `device 7 only ${tag}`;
  await fetch(new URL('/publish?device=device-7', url), { method: 'POST', body: own });
  await waitUntil(other.page, 'its own event in page C', hasEvent, own);
  for (const text of [fromSocket, fromCurl]) {
    if (await other.page.evaluate(hasEvent, text)) {
      throw new TestFailure(`page C (device-7) got an event of device-42: ${text}`);
    }
  }
  assertNoPageErrors(a, b, other);
});
