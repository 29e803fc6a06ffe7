// Headless-Chromium test of the chat example.
//
// Usage: node chat.mjs <page url>
//
// Two visitors (separate browser contexts) open the chat page; a message sent
// by either one must show up as a `#chat .line` in both pages. The example
// compresses (permessage-deflate, shared mode) and speaks the subprotocol
// `chat`, so the test also checks, from the pages, what Chromium negotiated:
// the page's own socket has permessage-deflate, messages long enough to be
// compressed both ways arrive intact, a socket offering `x-unknown, chat`
// gets `chat`, and one offering no subprotocol still opens.

import {
  STEP_TIMEOUT_MS,
  TestFailure,
  assertNoPageErrors,
  openVisitor,
  recordWebSockets,
  runTest,
  waitUntil,
} from './harness.mjs';

/** The answer of a hub in shared compression mode to a browser's permessage-deflate offer. */
const SHARED_MODE_ANSWER = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';

/** The most UTF-8 bytes in a `longMessage`. */
const LONG_MESSAGE_BYTES = 500;

/** Types `text` into `from`'s input, presses Enter and waits for it in every page of `all`. */
async function sendAndExpectEverywhere(from, all, text) {
  await from.page.locator('#input').fill(text);
  await from.page.locator('#input').press('Enter');
  await expectEverywhere(all, text, `page ${from.label}`);
}

/** Waits until `text` is a line of the chat in every page of `all`. */
async function expectEverywhere(all, text, sender) {
  const shown = text.length > 60 ? `${JSON.stringify(text.slice(0, 60))}... (${new TextEncoder().encode(text).length} bytes)` : JSON.stringify(text);
  for (const visitor of all) {
    await waitUntil(
      visitor.page,
      `message ${shown} (sent by ${sender}) as a line in page ${visitor.label}`,
      (t) => [...document.querySelectorAll('#chat .line')].some((line) => line.textContent === t),
      text,
    );
  }
}

/**
 * A chat message of close to 500 bytes of UTF-8: over the server's 256-byte compression
 * threshold, so it crosses the wire compressed both ways, and under the 512-byte message limit
 * that the example keeps from `Config::default()` (the limit counts inflated bytes; a longer
 * message closes the socket with 1009). Non-ASCII words check that the text is inflated back
 * exactly.
 */
function longMessage(tag) {
  const words = ['melody', 'permessage-deflate', 'héllo', 'wörld', '日本語', '🎵', 'broadcast', 'chat'];
  const bytes = (text) => new TextEncoder().encode(text).length;
  let text = `long message ${tag}:`;
  for (let i = 0; ; i++) {
    const longer = `${text} ${words[i % words.length]}#${i}`;
    if (bytes(longer) > LONG_MESSAGE_BYTES) return text;
    text = longer;
  }
}

/** What the page's own chat socket negotiated (the page keeps it in a closure). */
async function pageSocket(visitor) {
  const sockets = await visitor.page.evaluate(() =>
    (window.__melodyTestSockets ?? []).map((ws) => ({
      url: ws.url,
      readyState: ws.readyState,
      protocol: ws.protocol,
      extensions: ws.extensions,
    })),
  );
  if (sockets.length !== 1) {
    throw new TestFailure(`page ${visitor.label} opened ${sockets.length} WebSockets, expected 1`);
  }
  return sockets[0];
}

/**
 * Opens a WebSocket of its own to the chat's endpoint inside `visitor`'s page, offering
 * `protocols` (`null`: no subprotocol), optionally sends `message` and waits for the chat to
 * broadcast it back, then closes. Returns what the socket negotiated.
 */
async function probeSocket(visitor, protocols, message) {
  try {
    return await visitor.page.evaluate(
      async ({ protocols, message, timeoutMs }) => {
        // Rejects after `timeoutMs`; the timer is cleared either way, so no rejection is left over.
        const within = (promise, what) => {
          let timer;
          const timeout = new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
          });
          return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
        };
        const url = `ws://${location.host}/ws`;
        const ws = protocols === null ? new WebSocket(url) : new WebSocket(url, protocols);
        await within(
          new Promise((resolve, reject) => {
            ws.onopen = resolve;
            ws.onclose = (event) => reject(new Error(`closed before opening (code ${event.code})`));
          }),
          'the socket to open',
        );
        ws.onclose = null;
        const negotiated = { protocol: ws.protocol, extensions: ws.extensions };
        if (message !== null) {
          // The chat sends every message to every session, its sender included.
          const back = new Promise((resolve) => {
            ws.onmessage = (event) => {
              if (event.data === message) resolve();
            };
          });
          ws.send(message);
          await within(back, 'the message to come back');
        }
        ws.close();
        return negotiated;
      },
      { protocols, message: message ?? null, timeoutMs: STEP_TIMEOUT_MS },
    );
  } catch (err) {
    const offer = protocols === null ? 'no subprotocol' : `subprotocols ${JSON.stringify(protocols)}`;
    throw new TestFailure(`page ${visitor.label}: a WebSocket offering ${offer}: ${String(err?.message ?? err).split('\n')[0]}`);
  }
}

await runTest('chat', async (browser, url) => {
  const a = await openVisitor(browser, url, 'A', { beforeLoad: recordWebSockets });
  const b = await openVisitor(browser, url, 'B', { beforeLoad: recordWebSockets });
  const tag = `${process.pid}-${Date.now().toString(36)}`;

  // The page's socket: Chromium offers permessage-deflate, the example's hub accepts it.
  for (const visitor of [a, b]) {
    const socket = await pageSocket(visitor);
    if (!socket.extensions.split(/[,;]/).some((name) => name.trim() === 'permessage-deflate')) {
      throw new TestFailure(`page ${visitor.label}: its socket negotiated ${JSON.stringify(socket.extensions)}, no permessage-deflate`);
    }
    if (socket.extensions !== SHARED_MODE_ANSWER) {
      throw new TestFailure(`page ${visitor.label}: extensions ${JSON.stringify(socket.extensions)}, expected the shared-mode answer ${JSON.stringify(SHARED_MODE_ANSWER)}`);
    }
    // The page offers no subprotocol, so none is selected.
    if (socket.protocol !== '') {
      throw new TestFailure(`page ${visitor.label}: its socket has subprotocol ${JSON.stringify(socket.protocol)}, expected none`);
    }
    console.log(`page ${visitor.label}: ${socket.url} extensions=${JSON.stringify(socket.extensions)}`);
  }

  // Short messages go uncompressed (under the threshold), long ones compressed, both ways.
  await sendAndExpectEverywhere(a, [a, b], `hello from A ${tag}`);
  await sendAndExpectEverywhere(b, [a, b], `hi back from B ${tag}`);
  await sendAndExpectEverywhere(a, [a, b], longMessage(`from A ${tag}`));
  await sendAndExpectEverywhere(b, [a, b], longMessage(`from B ${tag}`));

  // Subprotocols from a real browser: the server picks `chat` out of the offer, and a socket
  // chatting over it reaches the pages.
  const fromProbe = longMessage(`from a chat-protocol socket in A ${tag}`);
  const chat = await probeSocket(a, ['x-unknown', 'chat'], fromProbe);
  if (chat.protocol !== 'chat') {
    throw new TestFailure(`offering ["x-unknown", "chat"] selected ${JSON.stringify(chat.protocol)}, expected "chat"`);
  }
  if (chat.extensions !== SHARED_MODE_ANSWER) {
    throw new TestFailure(`the chat-protocol socket negotiated extensions ${JSON.stringify(chat.extensions)}`);
  }
  await expectEverywhere([a, b], fromProbe, 'a chat-protocol socket in page A');
  console.log(`subprotocol: offered ["x-unknown","chat"], selected ${JSON.stringify(chat.protocol)}`);

  // Offering none still connects: the example's subprotocol is optional.
  const none = await probeSocket(b, null);
  if (none.protocol !== '') {
    throw new TestFailure(`a socket offering no subprotocol got ${JSON.stringify(none.protocol)}`);
  }

  assertNoPageErrors(a, b);
});
