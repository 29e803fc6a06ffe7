// Headless-Chromium test of the cluster example: two nodes, one page on each.
//
// Usage: node cluster.mjs <url of node A> <url of node B>
//
// Page A is opened on node A and page B on node B (separate browser contexts). A message typed
// in either page must show up as a `#chat .line` in both pages; the copy in the other page can
// only have come over the backplane, since each node holds one page's socket.
//
// The shared plumbing (and playwright-core, resolved from its own folder's node_modules) comes
// from the melody crate's browser tests.

import {
  TestFailure,
  assertNoPageErrors,
  openVisitor,
  runTest,
  waitUntil,
} from '../../melody/tests/browser/harness.mjs';

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

// runTest reads node A's URL from argv[2]; node B's is ours to read.
const urlB = process.argv[3];
if (!urlB) {
  console.error('usage: node cluster.mjs <url of node A> <url of node B>');
  process.exit(2);
}

await runTest('cluster', async (browser, urlA) => {
  if (new URL(urlA).host === new URL(urlB).host) {
    throw new TestFailure(`both pages would be on one node (${urlA}); give two nodes`);
  }
  const a = await openVisitor(browser, urlA, `A (${new URL(urlA).host})`);
  const b = await openVisitor(browser, urlB, `B (${new URL(urlB).host})`);
  const tag = `${process.pid}-${Date.now().toString(36)}`;

  await sendAndExpectEverywhere(a, [a, b], `hello from node A ${tag}`);
  await sendAndExpectEverywhere(b, [a, b], `hi back from node B ${tag}`);

  assertNoPageErrors(a, b);
});
