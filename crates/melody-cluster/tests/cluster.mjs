// Headless-Chromium test of the cluster example: two nodes, one page on each.
//
// Usage: node cluster.mjs <url of node A> <url of node B>
//
// Page A is opened on node A and page B on node B (separate browser contexts). Then:
//
// 1. both nodes' `/presence` must come to count 2 nodes and 2 sessions (presence is eventually
//    consistent: it is polled until it does, within a bounded time);
// 2. a message typed in either page must show up as a `#chat .line` in both pages; the copy in
//    the other page can only have come over the broker, since each node holds one page's socket;
// 3. a burst of messages typed in page A must show in page B in the order they were typed (one
//    node's sends reach the other nodes in order).
//
// The shared plumbing (and playwright-core, resolved from its own folder's node_modules) comes
// from the melody crate's browser tests.

import {
  STEP_TIMEOUT_MS,
  TestFailure,
  assertNoPageErrors,
  openVisitor,
  runTest,
  waitUntil,
} from '../../melody/tests/browser/harness.mjs';

/** How often `/presence` is asked again while it has not converged. */
const PRESENCE_POLL_MS = 100;

/** Types `text` into `from`'s input and presses Enter. */
async function type(from, text) {
  await from.page.locator('#input').fill(text);
  await from.page.locator('#input').press('Enter');
}

/** Waits until `visitor`'s page shows a line that is exactly `text`. */
async function waitForLine(visitor, text, sender) {
  await waitUntil(
    visitor.page,
    `message ${JSON.stringify(text)} (sent by page ${sender}) as a line in page ${visitor.label}`,
    (t) => [...document.querySelectorAll('#chat .line')].some((line) => line.textContent === t),
    text,
  );
}

/** Types `text` into `from`'s input, presses Enter and waits for it in every page of `all`. */
async function sendAndExpectEverywhere(from, all, text) {
  await type(from, text);
  for (const visitor of all) {
    await waitForLine(visitor, text, from.label);
  }
}

/** The lines of `visitor`'s page that start with `prefix`, in page order. */
async function linesStartingWith(visitor, prefix) {
  return visitor.page.evaluate(
    (p) =>
      [...document.querySelectorAll('#chat .line')]
        .map((line) => line.textContent)
        .filter((text) => text.startsWith(p)),
    prefix,
  );
}

/**
 * Asks `url`/presence until it reports `nodes` nodes and `sessions` sessions, or fails after
 * STEP_TIMEOUT_MS with the last answer.
 */
async function waitForPresence(url, label, nodes, sessions) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let last = 'no answer yet';
  for (;;) {
    try {
      const response = await fetch(new URL('presence', url), {
        signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
      });
      const body = await response.text();
      last = `${response.status} ${body}`;
      if (response.ok) {
        const presence = JSON.parse(body);
        if (presence.nodes === nodes && presence.sessions === sessions && presence.here === 1) {
          return presence;
        }
      }
    } catch (err) {
      last = String(err?.message ?? err);
    }
    if (Date.now() >= deadline) {
      throw new TestFailure(
        `timed out after ${STEP_TIMEOUT_MS} ms waiting for node ${label}'s /presence to count ` +
          `${nodes} nodes and ${sessions} sessions; last answer: ${last}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, PRESENCE_POLL_MS));
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

  // Each node sees the whole cluster: two nodes, one page each.
  const presenceA = await waitForPresence(urlA, 'A', 2, 2);
  const presenceB = await waitForPresence(urlB, 'B', 2, 2);
  if (presenceA.node === presenceB.node) {
    throw new TestFailure(`both nodes report the same node id ${presenceA.node}`);
  }

  await sendAndExpectEverywhere(a, [a, b], `hello from node A ${tag}`);
  await sendAndExpectEverywhere(b, [a, b], `hi back from node B ${tag}`);

  // A burst from page A, typed without waiting: page B must show it whole and in order.
  const burst = Array.from({ length: 10 }, (_, i) => `burst ${tag} #${i}`);
  for (const text of burst) {
    await type(a, text);
  }
  for (const visitor of [a, b]) {
    await waitForLine(visitor, burst[burst.length - 1], a.label);
    const seen = await linesStartingWith(visitor, `burst ${tag} `);
    if (JSON.stringify(seen) !== JSON.stringify(burst)) {
      throw new TestFailure(
        `page ${visitor.label} shows the burst as ${JSON.stringify(seen)}, ` +
          `expected ${JSON.stringify(burst)}`,
      );
    }
  }

  assertNoPageErrors(a, b);
});
