// Headless-Chromium test of the typed example (JSON messages, rooms, direct messages, auth).
//
// Usage: node typed.mjs <page url>
//
// (a) A visitor with an empty token is refused: its status never shows "open".
// (b) alice and bob join "lobby"; alice's chat reaches both; after bob leaves,
//     alice's next chat reaches alice only.
// (c) bob sends a direct message to alice's id; a direct message to an unknown
//     id comes back to bob as a "target not connected" error.
// (d) /stats counts the two sessions and the refused one; /metrics has melody_sessions.

import { STEP_TIMEOUT_MS, TestFailure, assertNoPageErrors, runTest, waitUntil } from './harness.mjs';

/** Opens the page in a fresh browser context (a separate visitor), not yet connected. */
async function openPage(browser, url, label) {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err));
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.error(`[page ${label} console] ${msg.text()}`);
  });
  const response = await page.goto(url, { timeout: STEP_TIMEOUT_MS });
  if (!response || !response.ok()) {
    throw new TestFailure(`page ${label}: GET ${url} answered ${response ? response.status() : 'nothing'}`);
  }
  await waitUntil(page, `page ${label} to show status "disconnected" before connecting`, () =>
    document.getElementById('status')?.dataset.state === 'disconnected');
  return { label, context, page, pageErrors };
}

/** Connects `visitor` with `token`, waits for "open" and the welcome, and returns its client id. */
async function connect(visitor, token) {
  await visitor.page.locator('#token').fill(token);
  await visitor.page.locator('#connect').click();
  await waitUntil(visitor.page, `page ${visitor.label} (token ${JSON.stringify(token)}) to show status "open"`, () =>
    document.getElementById('status')?.dataset.state === 'open');
  await waitUntil(visitor.page, `page ${visitor.label} to receive its client id (welcome → #me[data-id])`, () =>
    Boolean(document.getElementById('me')?.dataset.id));
  const id = await visitor.page.evaluate(() => document.getElementById('me').dataset.id);
  const shown = await visitor.page.locator('#me').textContent();
  if (!shown.includes(id)) {
    throw new TestFailure(`page ${visitor.label}: #me shows ${JSON.stringify(shown)}, not its id ${id}`);
  }
  return id;
}

/** Sets the room field, clicks `button` ("join" or "leave") and waits for the rooms list to follow. */
async function roomAction(visitor, button, room) {
  await visitor.page.locator('#room').fill(room);
  await visitor.page.locator(`#${button}`).click();
  const listed = button === 'join';
  await waitUntil(
    visitor.page,
    `page ${visitor.label} to ${listed ? 'list' : 'drop'} .room[data-room=${room}] after clicking #${button}`,
    ({ room, listed }) =>
      [...document.querySelectorAll('#rooms .room')].some((r) => r.dataset.room === room) === listed,
    { room, listed },
  );
}

/** Types `text` into `selector` of `visitor`'s page and presses Enter. */
async function typeAndEnter(visitor, selector, text) {
  await visitor.page.locator(selector).fill(text);
  await visitor.page.locator(selector).press('Enter');
}

/** Texts of the `#log .line.<kind>` elements of a page. */
function lines(visitor, kind) {
  return visitor.page.evaluate((kind) =>
    [...document.querySelectorAll(`#log .line.${kind}`)].map((l) => l.textContent), kind);
}

/** Waits for a `#log .line.<kind>` with exactly `text` (and `data-from` = `from`, if given). */
async function expectLine(visitor, kind, text, from) {
  await waitUntil(
    visitor.page,
    `a .line.${kind} ${JSON.stringify(text)}${from ? ` with data-from=${from}` : ''} in page ${visitor.label}`,
    ({ kind, text, from }) => [...document.querySelectorAll(`#log .line.${kind}`)]
      .some((l) => l.textContent === text && (!from || l.dataset.from === from)),
    { kind, text, from },
  );
}

/** Waits for more than `before` `.line.error` elements containing `needle` in `visitor`'s page. */
async function expectNewError(visitor, needle, before) {
  await waitUntil(
    visitor.page,
    `a new .line.error containing ${JSON.stringify(needle)} in page ${visitor.label}`,
    ({ needle, before }) => [...document.querySelectorAll('#log .line.error')]
      .filter((l) => l.textContent.includes(needle)).length > before,
    { needle, before },
  );
}

/** Number of `.line.error` elements containing `needle` in `visitor`'s page. */
async function countErrors(visitor, needle) {
  return (await lines(visitor, 'error')).filter((t) => t.includes(needle)).length;
}

/** Fails if `visitor`'s page has a `.line.chat` with exactly `text`. */
async function expectNoChatLine(visitor, text, why) {
  if ((await lines(visitor, 'chat')).includes(text)) {
    throw new TestFailure(`page ${visitor.label} shows ${JSON.stringify(text)} although ${why}`);
  }
}

/** GETs `url` from Node and returns the response, failing on a non-2xx status. */
async function get(url) {
  let response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(STEP_TIMEOUT_MS) });
  } catch (err) {
    throw new TestFailure(`GET ${url} failed: ${err?.message ?? err}`);
  }
  if (!response.ok) {
    throw new TestFailure(`GET ${url} answered ${response.status}`);
  }
  return response;
}

await runTest('typed', async (browser, url) => {
  const tag = `${process.pid}-${Date.now().toString(36)}`;
  const origin = new URL(url).origin;

  // (a) An empty token is refused before the upgrade: the page never shows "open".
  const nobody = await openPage(browser, url, 'nobody (empty token)');
  await nobody.page.evaluate(() => {
    const status = document.getElementById('status');
    window.seenStates = [status.dataset.state];
    new MutationObserver(() => window.seenStates.push(status.dataset.state))
      .observe(status, { attributes: true, attributeFilter: ['data-state'] });
  });
  await nobody.page.locator('#token').fill('');
  await nobody.page.locator('#connect').click();
  await waitUntil(nobody.page, 'page "nobody" (empty token) to show status "refused" (or "closed")', () =>
    ['refused', 'closed', 'open'].includes(document.getElementById('status')?.dataset.state));
  const seen = await nobody.page.evaluate(() => window.seenStates);
  if (seen.includes('open')) {
    throw new TestFailure(`the connection with an empty token was opened (states seen: ${seen.join(' → ')})`);
  }
  if (await nobody.page.evaluate(() => document.getElementById('me').hasAttribute('data-id'))) {
    throw new TestFailure('the refused page received a client id');
  }

  // (b) Room chat reaches the members of the room, and only them.
  const a = await openPage(browser, url, 'A (alice)');
  const b = await openPage(browser, url, 'B (bob)');
  const aliceId = await connect(a, 'alice');
  const bobId = await connect(b, 'bob');
  if (aliceId === bobId) {
    throw new TestFailure(`alice and bob got the same client id ${aliceId}`);
  }
  await roomAction(a, 'join', 'lobby');
  await roomAction(b, 'join', 'lobby');

  const hello = `hello ${tag}`;
  await typeAndEnter(a, '#input', hello);
  for (const visitor of [a, b]) {
    await expectLine(visitor, 'chat', `alice: ${hello}`, aliceId);
  }

  await roomAction(b, 'leave', 'lobby');
  const again = `again ${tag}`;
  await typeAndEnter(a, '#input', again);
  await expectLine(a, 'chat', `alice: ${again}`, aliceId);
  await expectNoChatLine(b, `alice: ${again}`, 'bob left lobby before alice sent it');

  // bob, no longer a member, writes to lobby: the server answers him alone with an
  // error. Once that error is shown, a wrongly delivered chat would have arrived before it.
  const bobNotInRoom = await countErrors(b, 'not in room');
  const outsider = `outsider ${tag}`;
  await typeAndEnter(b, '#input', outsider);
  await expectNewError(b, 'not in room', bobNotInRoom);
  await expectNoChatLine(b, `alice: ${again}`, 'bob left lobby before alice sent it');
  for (const visitor of [a, b]) {
    await expectNoChatLine(visitor, `bob: ${outsider}`, 'bob was not in lobby when he sent it');
  }

  // (c) Direct messages: to alice's id, and to an id nobody has.
  const psst = `psst ${tag}`;
  await b.page.locator('#dm-target').fill(aliceId);
  await typeAndEnter(b, '#dm-text', psst);
  await expectLine(a, 'dm', `dm from ${bobId}: ${psst}`, bobId);

  const bogus = '999999';
  if (bogus === aliceId || bogus === bobId) {
    throw new TestFailure(`the "unknown" id ${bogus} belongs to a connected visitor`);
  }
  const bobNotConnected = await countErrors(b, 'target not connected');
  await b.page.locator('#dm-target').fill(bogus);
  await typeAndEnter(b, '#dm-text', `into the void ${tag}`);
  await expectNewError(b, 'target not connected', bobNotConnected);
  if ((await lines(a, 'dm')).length !== 1) {
    throw new TestFailure(`page A shows ${JSON.stringify(await lines(a, 'dm'))}, expected only bob's dm`);
  }

  // (d) Statistics and metrics, fetched from Node while alice and bob are connected.
  const stats = await (await get(`${origin}/stats`)).json().catch((err) => {
    throw new TestFailure(`GET ${origin}/stats is not JSON: ${err?.message ?? err}`);
  });
  if (!(stats.connected >= 2)) {
    throw new TestFailure(`/stats reports connected=${stats.connected}, expected >= 2: ${JSON.stringify(stats)}`);
  }
  if (!(stats.rejections?.auth >= 1)) {
    throw new TestFailure(`/stats reports rejections.auth=${stats.rejections?.auth}, expected >= 1: ${JSON.stringify(stats)}`);
  }
  const metrics = await (await get(`${origin}/metrics`)).text();
  if (!/^melody_sessions[ {]/m.test(metrics)) {
    throw new TestFailure(`/metrics has no line starting with "melody_sessions":\n${metrics}`);
  }

  for (const visitor of [a, b]) {
    const state = await visitor.page.evaluate(() => document.getElementById('status').dataset.state);
    if (state !== 'open') {
      throw new TestFailure(`page ${visitor.label} ended with status ${JSON.stringify(state)}, expected "open"`);
    }
  }
  assertNoPageErrors(nobody, a, b);
});
