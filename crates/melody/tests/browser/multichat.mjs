// Headless-Chromium test of the multichat example.
//
// Usage: node multichat.mjs <page url of a room, e.g. http://127.0.0.1:5000/channel/lobby>
//
// Two visitors open the same room and a third another room: a message sent in the
// first room shows up in both of its pages and never in the other room's page.

import { assertNoPageErrors, openVisitor, runTest, waitUntil, TestFailure } from './harness.mjs';

const hasLine = (t) => [...document.querySelectorAll('#chat .line')].some((l) => l.textContent === t);

await runTest('multichat', async (browser, url) => {
  const other = new URL('../elsewhere', url.endsWith('/') ? url : `${url}/`).href.replace(/\/$/, '');
  const a = await openVisitor(browser, url, 'A');
  const b = await openVisitor(browser, url, 'B');
  const c = await openVisitor(browser, other, 'C (other room)');
  const tag = `${process.pid}-${Date.now().toString(36)}`;

  const inRoom = `room message ${tag}`;
  await a.page.locator('#input').fill(inRoom);
  await a.page.locator('#input').press('Enter');
  for (const visitor of [a, b]) {
    await waitUntil(visitor.page, `${JSON.stringify(inRoom)} in page ${visitor.label}`, hasLine, inRoom);
  }

  // C writes in its own room; once that arrives there, A's message would have arrived too.
  const elsewhere = `other room ${tag}`;
  await c.page.locator('#input').fill(elsewhere);
  await c.page.locator('#input').press('Enter');
  await waitUntil(c.page, `${JSON.stringify(elsewhere)} in page C`, hasLine, elsewhere);
  if (await c.page.evaluate(hasLine, inRoom)) {
    throw new TestFailure('a message from room A reached the page of another room');
  }
  if (await a.page.evaluate(hasLine, elsewhere) || await b.page.evaluate(hasLine, elsewhere)) {
    throw new TestFailure("the other room's message reached room A");
  }

  assertNoPageErrors(a, b, c);
});
