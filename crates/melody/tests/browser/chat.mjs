// Headless-Chromium test of the chat example.
//
// Usage: node chat.mjs <page url>
//
// Two visitors (separate browser contexts) open the chat page; a message sent
// by either one must show up as a `#chat .line` in both pages.

import { assertNoPageErrors, openVisitor, runTest, waitUntil } from './harness.mjs';

/** Types `text` into `from`'s input, presses Enter and waits for it in every page of `all`. */
async function sendAndExpectEverywhere(from, all, text) {
  await from.page.locator('#input').fill(text);
  await from.page.locator('#input').press('Enter');
  for (const visitor of all) {
    await waitUntil(
      visitor.page,
      `message ${JSON.stringify(text)} (sent by page ${from.label}) as a line in page ${visitor.label}`,
      (t) => [...document.querySelectorAll('#chat .line')].some((line) => line.textContent === t),
      text,
    );
  }
}

await runTest('chat', async (browser, url) => {
  const a = await openVisitor(browser, url, 'A');
  const b = await openVisitor(browser, url, 'B');
  const tag = `${process.pid}-${Date.now().toString(36)}`;

  await sendAndExpectEverywhere(a, [a, b], `hello from A ${tag}`);
  await sendAndExpectEverywhere(b, [a, b], `hi back from B ${tag}`);

  assertNoPageErrors(a, b);
});
