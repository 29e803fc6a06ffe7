// permessage-deflate (RFC 7692) interoperability client: Node's `ws`, an implementation of its
// own, against a melody echo server.
//
// Usage: node deflate_client.mjs <ws:// url> <mode>
//
// Modes (what `ws` offers and how it compresses what it sends):
//   default     ws's default client: offers `permessage-deflate; client_max_window_bits`;
//               compresses every message it sends while it keeps its context, and from
//               1024 bytes (its default threshold) once the server asked it not to.
//   context     insists on keeping its own compression context (`clientNoContextTakeover:
//               false`: ws refuses an answer with `client_no_context_takeover`) and compresses
//               every message, so each refers back to the ones before.
//   no-context  offers `server_no_context_takeover; client_no_context_takeover`, compresses
//               every message.
//   window10    offers `server_max_window_bits=10`: the server must compress with a 1 KiB
//               window, or ws's inflater (set to 10 bits) fails. Compresses every message.
//   window8     offers `server_max_window_bits=8`, a window zlib cannot compress with: the
//               server declines the offer and the connection runs uncompressed.
//
// Text and binary messages of 10 B, 300 B, 4 KiB, 100 KiB and 1 MiB, each JSON-like
// (compressible) and random (incompressible; random code points for text), go to the server one
// at a time, and then all at once; every echo must come back byte for byte, with the same
// type. The last line on stdout is a JSON summary: the offer and the server's answer, the
// parameters ws agreed to, and per message whether it went and came back compressed (and how
// many compressed bytes the echo took). The binary JSON-like message of each size repeats the
// text one sent just before, so a compressor that keeps its context sends it as little more
// than a reference back. Any
// mismatch, close or timeout is printed on stderr and makes the exit code 1.

import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

/** Bound for the handshake and for each echo. */
const STEP_TIMEOUT_MS = 15_000;
/** Bound for the whole run. */
const GLOBAL_TIMEOUT_MS = 60_000;
/** Message sizes in bytes (UTF-8 bytes for text). */
const SIZES = [10, 300, 4 * 1024, 100 * 1024, 1024 * 1024];

/** The `perMessageDeflate` option of each mode. */
const MODES = {
  default: true,
  context: { clientNoContextTakeover: false, serverNoContextTakeover: false, threshold: 0 },
  'no-context': { clientNoContextTakeover: true, serverNoContextTakeover: true, threshold: 0 },
  window10: { serverMaxWindowBits: 10, threshold: 0 },
  window8: { serverMaxWindowBits: 8, threshold: 0 },
};

class Failure extends Error {}

/** JSON-like text of exactly `size` bytes: records that repeat with small differences. */
function jsonLike(size) {
  let text = '[';
  for (let i = 0; text.length < size; i++) {
    text += `{"id":${i},"user":"user${i % 7}","room":"lobby","text":"hello there, message ${i}"},`;
  }
  return text.slice(0, size);
}

/**
 * Text of exactly `size` UTF-8 bytes made of random code points of every width (1 to 4
 * bytes, surrogates excepted): close to incompressible, and multi-byte characters end up split
 * across DEFLATE blocks and frames.
 */
function randomText(size) {
  const widths = [
    null,
    [0x20, 0x7e],
    [0x80, 0x7ff],
    [0x800, 0xffff],
    [0x10000, 0x10ffff],
  ];
  const parts = [];
  for (let length = 0; length < size; ) {
    const width = Math.min(size - length, 1 + Math.floor(Math.random() * 4));
    const [low, high] = widths[width];
    let point;
    do {
      point = low + Math.floor(Math.random() * (high - low + 1));
    } while (point >= 0xd800 && point <= 0xdfff);
    parts.push(String.fromCodePoint(point));
    length += width;
  }
  const text = parts.join('');
  if (Buffer.byteLength(text) !== size) throw new Error(`random text of ${Buffer.byteLength(text)} bytes, wanted ${size}`);
  return text;
}

/** Every message of a run: text and binary, compressible and not, of every size. */
function messages() {
  const all = [];
  for (const size of SIZES) {
    const json = jsonLike(size);
    const text = randomText(size);
    all.push({ type: 'text', content: 'json', size, data: json, bytes: Buffer.from(json) });
    all.push({ type: 'text', content: 'random', size, data: text, bytes: Buffer.from(text) });
    all.push({ type: 'binary', content: 'json', size, data: Buffer.from(json), bytes: Buffer.from(json) });
    const random = randomBytes(size);
    all.push({ type: 'binary', content: 'random', size, data: random, bytes: random });
  }
  return all;
}

/** Describes `message` in failure lines. */
function describe(message) {
  return `${message.type} ${message.content} message of ${message.size} bytes`;
}

/** Why `got` (an echo) is not `message`, or `null` when it is the same. */
function mismatch(message, data, isBinary) {
  if (isBinary !== (message.type === 'binary')) {
    return `came back as ${isBinary ? 'binary' : 'text'}`;
  }
  const got = Buffer.isBuffer(data) ? data : Buffer.concat(data);
  if (got.equals(message.bytes)) return null;
  const length = Math.min(got.length, message.bytes.length);
  let at = 0;
  while (at < length && got[at] === message.bytes[at]) at++;
  return `came back as ${got.length} bytes (sent ${message.bytes.length}), first difference at byte ${at}`;
}

/** Resolves with the socket once open; rejects with the reason it did not open. */
function connect(url, perMessageDeflate, summary) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate, handshakeTimeout: STEP_TIMEOUT_MS });
    // Emitted before ws checks the answer, so it is recorded also when ws refuses it.
    ws.on('upgrade', (response) => {
      summary.offer = ws._req?.getHeader('sec-websocket-extensions') ?? null;
      summary.answer = response.headers['sec-websocket-extensions'] ?? null;
    });
    ws.once('open', () => resolve(ws));
    ws.once('error', (err) => reject(new Failure(`handshake refused: ${err.message}`)));
  });
}

/**
 * Sends every message of `batch` (one at a time when `oneByOne`, else all at once) and checks
 * the echoes in order; records in `results` whether each went and came back compressed.
 */
async function exchange(ws, batch, oneByOne, phase, results, failures) {
  const pending = [];
  const deflate = ws._extensions['permessage-deflate'];
  if (deflate) {
    // ws inflates the messages that came compressed (RSV1), in order: this records which, and
    // their size on the wire.
    const decompress = deflate.decompress.bind(deflate);
    deflate.decompress = (data, fin, callback) => {
      if (pending[0]) {
        pending[0].result.echoCompressedBytes += data.length;
        if (fin) pending[0].result.echoCompressed = true;
      }
      decompress(data, fin, callback);
    };
  }

  let closed = null;
  const onMessage = (data, isBinary) => {
    const next = pending.shift();
    if (!next) {
      failures.push(`${phase}: an unexpected message of ${data.length} bytes`);
      return;
    }
    const why = mismatch(next.message, data, isBinary);
    next.result.intact = why === null;
    if (why) failures.push(`${phase}: ${describe(next.message)} ${why}`);
    next.resolve();
  };
  const onClose = (code, reason) => {
    closed = `the server closed the connection (${code} ${reason.toString()})`;
    for (const { reject } of pending.splice(0)) reject(new Failure(closed));
  };
  ws.on('message', onMessage);
  ws.on('close', onClose);

  const send = (message) => {
    const result = {
      phase,
      type: message.type,
      content: message.content,
      size: message.size,
      sentCompressed: false,
      echoCompressed: false,
      echoCompressedBytes: 0,
      intact: false,
    };
    results.push(result);
    const echoed = new Promise((resolve, reject) => {
      if (closed) reject(new Failure(closed));
      else pending.push({ message, result, resolve, reject });
    });
    ws.send(message.data, { binary: message.type === 'binary' });
    // ws decides there and then whether this message goes compressed (sent later, in order,
    // when an earlier one is still being compressed).
    result.sentCompressed = ws._sender._compress === true;
    return withTimeout(echoed, `${phase}: the echo of the ${describe(message)}`);
  };

  try {
    if (oneByOne) {
      for (const message of batch) await send(message);
    } else {
      await Promise.all(batch.map(send));
    }
  } finally {
    ws.off('message', onMessage);
    ws.off('close', onClose);
    if (deflate) delete deflate.decompress;
  }
}

/** `promise`, or a `Failure` naming `what` after `STEP_TIMEOUT_MS`. */
function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`timed out after ${STEP_TIMEOUT_MS} ms waiting for ${what}`)), STEP_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  const [url, mode] = process.argv.slice(2);
  if (!url || !(mode in MODES)) {
    console.error(`usage: node deflate_client.mjs <ws:// url> <${Object.keys(MODES).join('|')}>`);
    return 2;
  }
  const summary = { mode, url, offer: null, answer: null, params: null, results: [], compressedEchoes: 0, failures: [] };
  const timer = setTimeout(() => {
    summary.failures.push(`global timeout of ${GLOBAL_TIMEOUT_MS} ms exceeded`);
    finish(summary);
  }, GLOBAL_TIMEOUT_MS);

  try {
    const ws = await withTimeout(connect(url, MODES[mode], summary), 'the handshake');
    // What ws finds wrong in what the server sends (a bad frame, data that does not inflate)
    // comes as an error before the close.
    ws.on('error', (err) => summary.failures.push(`ws: ${err.message}`));
    summary.params = ws._extensions['permessage-deflate']?.params ?? null;
    summary.protocol = ws.protocol;
    const batch = messages();
    await exchange(ws, batch, true, 'one by one', summary.results, summary.failures);
    await exchange(ws, batch, false, 'all at once', summary.results, summary.failures);
    await new Promise((resolve) => {
      ws.once('close', resolve);
      ws.close(1000);
    });
  } catch (err) {
    summary.failures.push(err instanceof Failure ? err.message : err?.stack ?? String(err));
  }
  clearTimeout(timer);
  return finish(summary);
}

/** Prints the failures and the summary, and exits 1 if anything failed. */
function finish(summary) {
  summary.compressedEchoes = summary.results.filter((result) => result.echoCompressed).length;
  for (const failure of summary.failures) console.error(`deflate_client ${summary.mode}: FAILED: ${failure}`);
  console.log(JSON.stringify(summary));
  process.exit(summary.failures.length === 0 ? 0 : 1);
}

process.exitCode = await main();
