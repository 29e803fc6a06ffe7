// Headless-Chromium test of the live example (rooms on live topics: presence, history and
// recovery after a lost connection, docs/PROTOCOL.md).
//
// Usage: node live.mjs <page url>
//
// alice loads the page straight from the example; bob loads it through a TCP proxy that this
// script runs, so that his connection can be lost the way a network loses it: the proxy resets
// both sides of every connection and refuses new ones for a while. Bob's page must notice
// (an abnormal close, not a clean one), the server must drop his session (alice sees him
// leave), and once the proxy lets him through again his page must reconnect on its own and
// show every message alice sent meanwhile, exactly once and in order. The proxy can also stall
// (forward nothing, close nothing): a half-open connection that only the client's heartbeat
// watchdog can notice, so bob's page asks for short heartbeats (`?heartbeat=…&heartbeatTimeout=…`,
// see live.html); alice's page keeps the defaults.
//
// (a) alice and bob enter their names, get connected and land in room lobby; each page lists
//     both members.
// (b) alice's message reaches both pages.
// (c) bob's connection is cut; alice sees him leave and sends MISSED numbered messages.
// (d) bob reconnects and shows exactly what he had plus the missed messages; both pages list
//     both members again; messages after the reconnect go both ways, none twice.
// (e) a visitor whose credential the server calls expired (the name `expired`: close 4401
//     `token expired` right after the upgrade) is asked for it once more, refused again, and
//     stops: the page shows the refusal and the name form, and no third connection is made.
// (f) bob's connection goes half-open: the proxy stalls it (nothing forwarded either way,
//     nothing closed) and holds new connections unanswered. Bob's page gives the connection up
//     itself (close 4000 `heartbeat timeout`, its socket left closing since no closing
//     handshake gets through) within heartbeatInterval + heartbeatTimeout (+ slack) and shows
//     it is disconnected, then reconnecting; the server cannot tell (alice still lists bob)
//     and alice sends MISSED more messages. Once the proxy forwards again, bob's page is
//     connected on its own and shows everything once, in order; the old connection's closing
//     handshake completes, both pages list alice and bob, and a live message arrives once.

import { startProxy } from '../../../../clients/js/test/e2e/proxy.mjs';
import {
  STEP_TIMEOUT_MS,
  TestFailure,
  assertNoPageErrors,
  recordWebSockets,
  runTest,
  waitUntil,
} from './harness.mjs';

/** How many messages alice sends while bob is cut off. */
const MISSED = 5;

/**
 * How long bob's page may take to reconnect once the proxy lets it through. The page waits a
 * random delay of up to min(20 s, 0.5 s × 2^attempt) before each attempt, and every attempt
 * refused during the cut doubles the next cap: generous, yet within the harness's global
 * timeout.
 */
const RECONNECT_TIMEOUT_MS = 30_000;

/** Close code of a WebSocket whose connection ended without a closing handshake. */
const ABNORMAL_CLOSURE = 1006;

/**
 * Bob's heartbeat, passed in his page's URL (live.html: `?heartbeat=` and `?heartbeatTimeout=`
 * become the client's `heartbeatInterval` and `heartbeatTimeout`; defaults 25 s and 10 s): his
 * page pings after HEARTBEAT_MS without a message and gives the connection up if nothing
 * arrives within HEARTBEAT_TIMEOUT_MS after. Not tighter: on a loaded machine a live
 * connection must not miss its answer by accident.
 */
const HEARTBEAT_MS = 500;
const HEARTBEAT_TIMEOUT_MS = 500;

/** Timer and polling lateness allowed on top of HEARTBEAT_MS + HEARTBEAT_TIMEOUT_MS. */
const WATCHDOG_SLACK_MS = 1_000;

/** The client's close code for the connections it gives up on, and `readyState` CLOSING. */
const GIVE_UP = 4000;
const CLOSING = 2;

/**
 * Gives the page `window.__liveShownMessages()`: the `#messages` list as it is shown, one
 * string each, `"<name>: <text>"` for a message and `"(note) <text>"` for a note, so that
 * every check compares the same rendering, in the page's order.
 */
async function addMessageReader(page) {
  await page.addInitScript(() => {
    window.__liveShownMessages = () =>
      [...document.querySelectorAll('#messages li')].map((li) => {
        if (li.classList.contains('note')) return `(note) ${li.textContent}`;
        const name = li.querySelector('.name')?.textContent ?? '';
        return `${name}: ${li.textContent.slice(name.length)}`;
      });
  });
}

/**
 * Opens `url` in a fresh browser context (a separate visitor), not yet connected: the page
 * first asks for a name. Records page errors, and alerts (the page alerts when it cannot
 * enter a room) as page errors too.
 */
async function openPage(browser, url, label) {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = await context.newPage();
  // Bob's sockets are looked at for their close code; every page reads its messages.
  await recordWebSockets(page);
  await addMessageReader(page);
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err));
  page.on('dialog', (dialog) => {
    pageErrors.push(new Error(`alert: ${dialog.message()}`));
    dialog.dismiss().catch(() => {});
  });
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.error(`[page ${label} console] ${msg.text()}`);
  });
  const response = await page.goto(url, { timeout: STEP_TIMEOUT_MS });
  if (!response || !response.ok()) {
    throw new TestFailure(`page ${label}: GET ${url} answered ${response ? response.status() : 'nothing'}`);
  }
  await waitUntil(page, `page ${label} to show the name form (#login) before connecting`, () =>
    document.getElementById('login') && !document.getElementById('login').hidden);
  return { label, context, page, pageErrors };
}

/** Enters `name` on `visitor`'s page and waits until it is connected and in room lobby. */
async function enter(visitor, name) {
  await visitor.page.locator('#name').fill(name);
  await visitor.page.locator('#name').press('Enter');
  await waitUntil(visitor.page, `page ${visitor.label} to show #status[data-state=connected] after entering name ${name}`, () =>
    document.getElementById('status')?.dataset.state === 'connected');
  await waitUntil(visitor.page, `page ${visitor.label} to list room lobby (#rooms li[data-topic="room:lobby"]) as the current room`, () =>
    document.querySelector('#rooms li[data-topic="room:lobby"]')?.getAttribute('aria-current') === 'true');
}

/** The names in `#members` of `visitor`'s page (the page sorts them). */
function members(visitor) {
  return visitor.page.evaluate(() => [...document.querySelectorAll('#members li')].map((li) => li.textContent));
}

/** Waits until `#members` of `visitor`'s page lists exactly `names` (sorted), saying `why`. */
async function expectMembers(visitor, names, why) {
  const expected = [...names].sort();
  try {
    await waitUntil(visitor.page, `#members of page ${visitor.label} to be ${JSON.stringify(expected)} (${why})`,
      (expected) => JSON.stringify([...document.querySelectorAll('#members li')].map((li) => li.textContent)) ===
        JSON.stringify(expected),
      expected);
  } catch (err) {
    if (!(err instanceof TestFailure)) throw err;
    throw new TestFailure(`${err.message}; it lists ${JSON.stringify(await members(visitor))}`);
  }
}

/** The `#messages` of `visitor`'s page, as `window.__liveShownMessages` renders them. */
function messages(visitor) {
  return visitor.page.evaluate(() => window.__liveShownMessages());
}

/**
 * Waits until the `#messages` of `visitor`'s page are exactly `expected`, in order (nothing
 * missing, nothing twice, no note), saying `why`; on timeout the message shows both lists.
 */
async function expectMessages(visitor, expected, why, timeoutMs = STEP_TIMEOUT_MS) {
  try {
    await visitor.page.waitForFunction(
      (expected) => JSON.stringify(window.__liveShownMessages()) === JSON.stringify(expected),
      expected,
      { timeout: timeoutMs, polling: 'raf' },
    );
  } catch {
    throw new TestFailure(
      `timed out after ${timeoutMs} ms waiting for #messages of page ${visitor.label} to be exactly ` +
      `${JSON.stringify(expected)} (${why}); it shows ${JSON.stringify(await messages(visitor))}`,
    );
  }
}

/** Types `text` into `visitor`'s say form, presses Enter and waits for it on its own page. */
async function say(visitor, name, text) {
  await visitor.page.locator('#text').fill(text);
  await visitor.page.locator('#text').press('Enter');
  // The page shows a message once the server publishes it back: then it is in the history.
  await waitUntil(visitor.page, `${JSON.stringify(`${name}: ${text}`)} in #messages of page ${visitor.label} (its own message, published back)`,
    (line) => window.__liveShownMessages().includes(line), `${name}: ${text}`);
}

/** The state of `#status` of `visitor`'s page. */
function status(visitor) {
  return visitor.page.evaluate(() => document.getElementById('status').dataset.state);
}

await runTest('live', async (browser, url) => {
  const tag = `${process.pid}-${Date.now().toString(36)}`;
  const target = new URL(url);
  const proxy = await startProxy(target);
  try {
    // (a) Both enter; each page lists both (bob from his reply, alice from his `join`).
    const alice = await openPage(browser, url, 'alice');
    const bobUrl = new URL(`${target.pathname}${target.search}`, `http://127.0.0.1:${proxy.port}`);
    bobUrl.searchParams.set('heartbeat', String(HEARTBEAT_MS));
    bobUrl.searchParams.set('heartbeatTimeout', String(HEARTBEAT_TIMEOUT_MS));
    const bob = await openPage(browser, bobUrl.href, 'bob (through the proxy)');
    await enter(alice, 'alice');
    await enter(bob, 'bob');
    for (const visitor of [alice, bob]) {
      await expectMembers(visitor, ['alice', 'bob'], 'both entered room lobby');
    }
    // The example is fresh, so lobby should be empty; whatever it shows counts as "what bob had".
    const before = await messages(bob);

    // (b) A message reaches both pages.
    const hello = `alice: hello ${tag}`;
    await say(alice, 'alice', `hello ${tag}`);
    await expectMessages(bob, [...before, hello], "alice's first message, live");
    const bobHad = await messages(bob);

    // (c) Cut bob off. His page's socket must see the loss: an abnormal close, no handshake.
    const sockets = await bob.page.evaluate(() => {
      const status = document.getElementById('status');
      window.__liveStates = [];
      new MutationObserver(() => window.__liveStates.push(status.dataset.state))
        .observe(status, { attributes: true, attributeFilter: ['data-state'] });
      const all = window.__melodyTestSockets;
      window.__liveClose = null;
      all.at(-1)?.addEventListener('close', (event) => {
        window.__liveClose = { code: event.code, wasClean: event.wasClean, reason: event.reason };
      });
      return all.map((ws) => ws.readyState);
    });
    if (sockets.length !== 1 || sockets[0] !== 1) {
      throw new TestFailure(`page bob has sockets in states ${JSON.stringify(sockets)} before the cut, expected one open socket`);
    }
    const cut = proxy.cut();
    if (cut < 1) {
      throw new TestFailure("the proxy had no open connection to cut: bob's socket does not go through it");
    }
    await waitUntil(bob.page, "bob's socket to close after the proxy reset its connection", () => window.__liveClose !== null);
    const closed = await bob.page.evaluate(() => window.__liveClose);
    if (closed.code !== ABNORMAL_CLOSURE || closed.wasClean) {
      throw new TestFailure(`bob's socket closed with ${JSON.stringify(closed)}, expected code ${ABNORMAL_CLOSURE} and wasClean false (a lost connection)`);
    }
    await waitUntil(bob.page, 'page bob to show #status[data-state=disconnected] after losing its connection', () =>
      window.__liveStates.includes('disconnected'));
    // The server noticed too: bob's session is gone, so alice sees him leave.
    await expectMembers(alice, ['alice'], "bob's session was disconnected by the cut");

    const missed = [];
    for (let i = 1; i <= MISSED; i++) {
      const text = `missed ${i} of ${MISSED} ${tag}`;
      await say(alice, 'alice', text);
      missed.push(`alice: ${text}`);
    }
    // Still cut off: bob cannot have them yet, so whatever he shows later came by recovery.
    const duringCut = await messages(bob);
    if (JSON.stringify(duringCut) !== JSON.stringify(bobHad)) {
      throw new TestFailure(`page bob shows ${JSON.stringify(duringCut)} while cut off, expected still ${JSON.stringify(bobHad)}`);
    }
    if ((await status(bob)) === 'connected') {
      throw new TestFailure('page bob shows "connected" while the proxy refuses every connection');
    }

    // (d) Let bob through again: his page reconnects on its own, subscribes since what it saw.
    const refused = proxy.restore();
    const started = Date.now();
    try {
      await bob.page.waitForFunction(() => document.getElementById('status')?.dataset.state === 'connected',
        null, { timeout: RECONNECT_TIMEOUT_MS, polling: 'raf' });
    } catch {
      throw new TestFailure(`page bob did not reconnect within ${RECONNECT_TIMEOUT_MS} ms after the proxy let it through ` +
        `(status ${JSON.stringify(await status(bob))}, states seen ${JSON.stringify(await bob.page.evaluate(() => window.__liveStates))})`);
    }
    const attempts = await bob.page.evaluate(() => window.__melodyTestSockets.length - 1);
    console.log(`bob reconnected ${Date.now() - started} ms after the proxy let him through ` +
      `(${attempts} connection attempt(s) after the cut, ${refused} refused by the proxy)`);
    await expectMessages(bob, [...bobHad, ...missed], 'what bob had, then every message alice sent while he was cut off, once each');
    for (const visitor of [alice, bob]) {
      await expectMembers(visitor, ['alice', 'bob'], 'bob is back in lobby with a new session');
    }

    // Past the seam: a live message after the recovery arrives once, and bob can speak again.
    const after = `after the reconnect ${tag}`;
    await say(alice, 'alice', after);
    const back = `back again ${tag}`;
    await say(bob, 'bob', back);
    const everything = [...bobHad, ...missed, `alice: ${after}`, `bob: ${back}`];
    await expectMessages(bob, everything, 'recovered messages, then live ones, none twice');
    await expectMessages(alice, everything, 'alice saw every message as it was sent');

    for (const visitor of [alice, bob]) {
      const state = await status(visitor);
      if (state !== 'connected') {
        throw new TestFailure(`page ${visitor.label} ended with status ${JSON.stringify(state)}, expected "connected"`);
      }
    }

    // (e) A refusal the page can read: it stops instead of retrying.
    const expired = await openPage(browser, url, 'expired');
    await expired.page.locator('#name').fill('expired');
    await expired.page.locator('#name').press('Enter');
    await waitUntil(expired.page, 'page expired to show #status[data-state=closed] (refused for good)', () =>
      document.getElementById('status')?.dataset.state === 'closed');
    const refusal = await expired.page.evaluate(() => ({
      text: document.getElementById('status').textContent,
      login: !document.getElementById('login').hidden,
      sockets: window.__melodyTestSockets.length,
    }));
    if (!refusal.text.includes('token expired') || !refusal.login || refusal.sockets !== 2) {
      throw new TestFailure(`page expired shows ${JSON.stringify(refusal)}; expected the reason "token expired", ` +
        'the name form again, and exactly 2 connections (the first, and one with the credential asked again)');
    }

    // (f) Bob's connection goes half-open. Only his page's watchdog can notice: nothing is
    // closed or reset, and the server (pong wait 60 s) still counts him in. The page records
    // its status changes, and whether, why and when the client closes its socket itself.
    const halfOpen = await bob.page.evaluate(() => {
      const status = document.getElementById('status');
      window.__liveTimeline = [];
      new MutationObserver(() => window.__liveTimeline.push({ state: status.dataset.state, text: status.textContent, at: Date.now() }))
        .observe(status, { attributes: true, attributeFilter: ['data-state'] });
      const all = window.__melodyTestSockets;
      const socket = all.at(-1);
      window.__liveStalled = socket;
      window.__liveGaveUp = null;
      window.__liveStalledClose = null;
      // The client closes a connection it gives up on with `close(4000, reason)`.
      const close = socket.close.bind(socket);
      socket.close = (code, reason) => {
        window.__liveGaveUp ??= { code, reason, at: Date.now() };
        return close(code, reason);
      };
      socket.addEventListener('close', (event) => {
        window.__liveStalledClose = { code: event.code, wasClean: event.wasClean, reason: event.reason };
      });
      return { sockets: all.length, readyState: socket.readyState, state: status.dataset.state };
    });
    if (halfOpen.readyState !== 1 || halfOpen.state !== 'connected') {
      throw new TestFailure(`page bob has ${JSON.stringify(halfOpen)} before the stall, expected an open socket and status "connected"`);
    }
    const bobBefore = await messages(bob);
    const stalledAt = Date.now();
    const stalled = proxy.stall();
    if (stalled < 1) {
      throw new TestFailure("the proxy had no open connection to stall: bob's socket does not go through it");
    }
    const watchdog = HEARTBEAT_MS + HEARTBEAT_TIMEOUT_MS;
    await waitUntil(bob.page, `page bob to show #status[data-state=disconnected] after the stall (heartbeat ${HEARTBEAT_MS} ms + timeout ${HEARTBEAT_TIMEOUT_MS} ms)`,
      () => window.__liveTimeline.some(({ state }) => state === 'disconnected'));
    const noticed = await bob.page.evaluate(() => ({
      gaveUp: window.__liveGaveUp,
      readyState: window.__liveStalled.readyState,
      closed: window.__liveStalledClose,
      timeline: window.__liveTimeline,
    }));
    // The watchdog's doing: the client's own close, not a close event from the network.
    if (noticed.gaveUp?.code !== GIVE_UP || noticed.gaveUp.reason !== 'heartbeat timeout') {
      throw new TestFailure(`page bob lost its stalled connection with the client's close ${JSON.stringify(noticed.gaveUp)} ` +
        `(close event ${JSON.stringify(noticed.closed)}), expected close(${GIVE_UP}, "heartbeat timeout")`);
    }
    // Still half-open: the closing handshake cannot get through, so the socket stays CLOSING.
    if (noticed.readyState !== CLOSING || noticed.closed !== null) {
      throw new TestFailure(`bob's stalled socket is in readyState ${noticed.readyState} (close event ${JSON.stringify(noticed.closed)}) ` +
        `after the client closed it, expected ${CLOSING} (closing, no close event): the proxy must hold its closing handshake`);
    }
    const disconnected = noticed.timeline.find(({ state }) => state === 'disconnected');
    if (noticed.timeline[0] !== disconnected) {
      throw new TestFailure(`page bob's status went ${JSON.stringify(noticed.timeline)} after the stall, expected "disconnected" first`);
    }
    const gaveUpAfter = noticed.gaveUp.at - stalledAt;
    const shownAfter = disconnected.at - stalledAt;
    if (shownAfter > watchdog + WATCHDOG_SLACK_MS) {
      throw new TestFailure(`page bob showed "disconnected" ${shownAfter} ms after the stall, expected within ` +
        `${watchdog} ms (heartbeat + timeout) + ${WATCHDOG_SLACK_MS} ms slack`);
    }
    // The server cannot tell either: bob's old session is still in lobby.
    const aliceSees = await members(alice);
    if (JSON.stringify(aliceSees) !== JSON.stringify(['alice', 'bob'])) {
      throw new TestFailure(`page alice lists ${JSON.stringify(aliceSees)} while bob's connection is stalled, expected ` +
        '["alice","bob"]: nothing was closed, so the server still has his session');
    }

    const missedStalled = [];
    for (let i = 1; i <= MISSED; i++) {
      const text = `stalled ${i} of ${MISSED} ${tag}`;
      await say(alice, 'alice', text);
      missedStalled.push(`alice: ${text}`);
    }
    // The page retries after its backoff delay (shown in its status); the proxy holds that
    // attempt unanswered, so the page stays "reconnecting".
    const retryIn = Number(/retrying in ([\d.]+) s/.exec(disconnected.text)?.[1] ?? NaN) * 1000;
    const retryTimeout = (Number.isFinite(retryIn) ? retryIn : 0) + STEP_TIMEOUT_MS;
    try {
      await bob.page.waitForFunction((count) => window.__melodyTestSockets.length > count &&
        document.getElementById('status').dataset.state === 'connecting',
      halfOpen.sockets, { timeout: retryTimeout, polling: 'raf' });
    } catch {
      throw new TestFailure(`page bob did not try to reconnect within ${retryTimeout} ms while stalled ` +
        `(status changes ${JSON.stringify(await bob.page.evaluate(() => window.__liveTimeline))})`);
    }
    const duringStall = await bob.page.evaluate(() => ({
      text: document.getElementById('status').textContent,
      state: document.getElementById('status').dataset.state,
      sockets: window.__melodyTestSockets.map((ws) => ws.readyState),
      shown: window.__liveShownMessages(),
    }));
    if (!duringStall.text.startsWith('reconnecting') || duringStall.sockets.at(-1) !== 0) {
      throw new TestFailure(`page bob shows status ${JSON.stringify(duringStall.text)} with sockets in states ` +
        `${JSON.stringify(duringStall.sockets)} while stalled, expected "reconnecting …" and its new socket still connecting`);
    }
    if (JSON.stringify(duringStall.shown) !== JSON.stringify(bobBefore)) {
      throw new TestFailure(`page bob shows ${JSON.stringify(duringStall.shown)} while stalled, expected still ${JSON.stringify(bobBefore)}`);
    }

    // The path comes back: held bytes and connections go through, new ones are forwarded.
    const held = proxy.resume();
    const resumedAt = Date.now();
    try {
      await bob.page.waitForFunction(() => document.getElementById('status')?.dataset.state === 'connected',
        null, { timeout: RECONNECT_TIMEOUT_MS, polling: 'raf' });
    } catch {
      throw new TestFailure(`page bob did not reconnect within ${RECONNECT_TIMEOUT_MS} ms after the proxy forwarded again ` +
        `(status changes ${JSON.stringify(await bob.page.evaluate(() => window.__liveTimeline))})`);
    }
    const reconnectedAfter = Date.now() - resumedAt;
    const stallAttempts = await bob.page.evaluate((count) => window.__melodyTestSockets.length - count, halfOpen.sockets);
    console.log(`bob's page gave its half-open connection up ${gaveUpAfter} ms after the stall and showed it ` +
      `${shownAfter} ms after (heartbeat ${HEARTBEAT_MS} + timeout ${HEARTBEAT_TIMEOUT_MS} ms); the stall lasted ` +
      `${resumedAt - stalledAt} ms; bob reconnected ${reconnectedAfter} ms after the proxy forwarded again ` +
      `(${stallAttempts} connection attempt(s) after the stall, ${held} held by the proxy)`);
    const afterStall = [...bobBefore, ...missedStalled];
    await expectMessages(bob, afterStall, 'what bob had, then every message alice sent while his connection was stalled, once each');
    // The old connection's closing handshake got through too: the server ended that session.
    await waitUntil(bob.page, "bob's stalled socket to finish closing once the proxy forwarded again",
      () => window.__liveStalled.readyState === 3);
    for (const visitor of [alice, bob]) {
      await expectMembers(visitor, ['alice', 'bob'], "bob's old session ended, his new one is in lobby");
    }
    const afterResume = `after the stall ${tag}`;
    await say(alice, 'alice', afterResume);
    const all = [...afterStall, `alice: ${afterResume}`];
    await expectMessages(bob, all, 'recovered messages, then a live one, none twice');
    await expectMessages(alice, all, 'alice saw every message as it was sent');
    for (const visitor of [alice, bob]) {
      const state = await status(visitor);
      if (state !== 'connected') {
        throw new TestFailure(`page ${visitor.label} ended with status ${JSON.stringify(state)}, expected "connected"`);
      }
    }
    assertNoPageErrors(alice, bob, expired);
  } finally {
    proxy.close();
  }
});
