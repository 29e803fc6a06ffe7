// Headless-Chromium test of the gophers example.
//
// Usage: node gophers.mjs <page url>
//
// Visitor A moves its mouse; visitor B must see exactly one gopher at A's
// last position while A sees no gopher of its own. Then B moves and A sees
// B's gopher. Finally A leaves and B's page must drop A's gopher.

import { TestFailure, assertNoPageErrors, openVisitor, runTest, waitUntil } from './harness.mjs';

/** Waits for the `iam` message to be handled and returns the visitor's own id. */
async function ownId(visitor) {
  await waitUntil(visitor.page, `page ${visitor.label} to receive its id ("iam ID")`, () =>
    Boolean(document.body.dataset.me));
  return visitor.page.evaluate(() => document.body.dataset.me);
}

/** Waits until `visitor`'s page shows exactly one gopher, of visitor `id`, at `pos`. */
async function expectSingleGopherAt(visitor, id, pos) {
  await waitUntil(
    visitor.page,
    `page ${visitor.label} to show exactly one .gopher (data-id=${id}) at left=${pos.x}px top=${pos.y}px`,
    ({ id, x, y }) => {
      const all = document.querySelectorAll('.gopher');
      return all.length === 1 && all[0].dataset.id === id &&
        all[0].style.left === `${x}px` && all[0].style.top === `${y}px`;
    },
    { id, ...pos },
  );
}

/** Describes the gophers currently shown in a page, for failure messages. */
async function describeGophers(visitor) {
  return visitor.page.evaluate(() => JSON.stringify(
    [...document.querySelectorAll('.gopher')].map((g) => ({ id: g.dataset.id, left: g.style.left, top: g.style.top }))));
}

/** Moves `visitor`'s mouse through `positions`. */
async function moveThrough(visitor, positions) {
  for (const { x, y } of positions) {
    await visitor.page.mouse.move(x, y);
  }
}

await runTest('gophers', async (browser, url) => {
  const a = await openVisitor(browser, url, 'A');
  const b = await openVisitor(browser, url, 'B');
  const idA = await ownId(a);
  const idB = await ownId(b);
  if (idA === idB) throw new TestFailure(`both pages got the same id ${JSON.stringify(idA)}`);

  // A moves: B sees A's gopher follow A's mouse to the last position.
  const pathA = [{ x: 200, y: 150 }, { x: 320, y: 260 }];
  await moveThrough(a, pathA);
  await expectSingleGopherAt(b, idA, pathA.at(-1));

  // B has not moved yet, so A shows nothing: neither itself nor B.
  const shownInA = await describeGophers(a);
  if (shownInA !== '[]') throw new TestFailure(`page A shows gophers before B moved: ${shownInA}`);

  // B moves: A now sees B's gopher (and still not its own).
  const pathB = [{ x: 480, y: 120 }, { x: 410, y: 330 }];
  await moveThrough(b, pathB);
  await expectSingleGopherAt(a, idB, pathB.at(-1));

  assertNoPageErrors(a, b);

  // A leaves: the server's "dis" removes A's gopher from B.
  await a.context.close();
  await waitUntil(b.page, 'page B to show no .gopher after page A closed', () =>
    document.querySelectorAll('.gopher').length === 0);

  assertNoPageErrors(b);
});
