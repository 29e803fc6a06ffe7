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
// show every message alice sent meanwhile, exactly once and in order.
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

import net from 'node:net';

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
 * A TCP proxy on a free loopback port forwarding every connection to `target` (a URL's host
 * and port). `cut()` resets both sides of every open connection, as a lost network does
 * (no closing handshake, no FIN), and resets every new connection as soon as it is accepted
 * until `restore()`: the page behind it can neither keep nor get a connection meanwhile.
 */
async function startProxy(target) {
  const open = new Set();
  let cutOff = false;
  let refused = 0;
  // An RST rather than a FIN: neither side gets to close cleanly.
  const reset = (socket) => {
    if (!socket.destroyed) socket.resetAndDestroy();
  };
  const server = net.createServer((client) => {
    // Resets and their echoes are what this proxy is for, not errors of the test.
    client.on('error', () => {});
    if (cutOff) {
      refused += 1;
      reset(client);
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    upstream.on('error', () => {});
    const pair = { client, upstream };
    open.add(pair);
    // Whichever side goes, the other goes with it (the proxy keeps no half-open connection).
    const drop = () => {
      open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', drop);
    upstream.on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    /** Resets every open connection and refuses new ones; how many connections were open. */
    cut() {
      cutOff = true;
      const count = open.size;
      for (const { client, upstream } of [...open]) {
        reset(client);
        reset(upstream);
      }
      open.clear();
      return count;
    },
    /** Forwards new connections again; how many were refused since `cut()`. */
    restore() {
      cutOff = false;
      const count = refused;
      refused = 0;
      return count;
    },
    close() {
      for (const { client, upstream } of open) {
        client.destroy();
        upstream.destroy();
      }
      server.close();
    },
  };
}

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
    const bobUrl = new URL(`${target.pathname}${target.search}`, `http://127.0.0.1:${proxy.port}`).href;
    const bob = await openPage(browser, bobUrl, 'bob (through the proxy)');
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
    assertNoPageErrors(alice, bob, expired);
  } finally {
    proxy.close();
  }
});
