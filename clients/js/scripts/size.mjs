// Reports the size of dist/melody-client.js minified and gzipped (what a page downloads), and
// fails above the budget the README states.

import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

/** The most the bundle may weigh, minified and gzipped. */
const BUDGET = 6 * 1024;

const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'melody-client.js');
const minified = await readFile(file);
const gzipped = gzipSync(minified, { level: 9 }).length;
const kb = (bytes) => `${(bytes / 1024).toFixed(2)} KB`;
console.log(`dist/melody-client.js: ${kb(minified.length)} minified, ${kb(gzipped)} minified + gzipped (budget ${kb(BUDGET)})`);
if (gzipped > BUDGET) {
  console.error(`over budget by ${gzipped - BUDGET} bytes`);
  process.exit(1);
}
