// Bundles src/ into dist/melody-client.js: one minified ES module, no dependencies.
//
//   node scripts/bundle.mjs           writes dist/melody-client.js
//   node scripts/bundle.mjs --check   fails if dist/melody-client.js differs from a fresh
//                                     bundle (a stale committed bundle fails CI)
//
// The bundle is committed so that the Rust examples that serve it (include_str!) build on a
// fresh clone without npm.

import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const output = join(root, 'dist', 'melody-client.js');

/** The bundle's text, built in memory. */
export async function bundle() {
  const result = await build({
    entryPoints: [join(root, 'src', 'index.ts')],
    bundle: true,
    format: 'esm',
    // Browsers of the last years and Node 20: class fields and `??=` stay as written.
    target: ['es2022'],
    minify: true,
    legalComments: 'none',
    write: false,
    logLevel: 'warning',
  });
  return result.outputFiles[0].text;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const fresh = await bundle();
  if (process.argv.includes('--check')) {
    const committed = await readFile(output, 'utf8').catch(() => '');
    if (committed !== fresh) {
      console.error(`${output} is not the bundle of src/: run \`npm run build\` and commit dist/melody-client.js`);
      process.exit(1);
    }
    console.log('dist/melody-client.js is up to date');
  } else {
    await mkdir(dirname(output), { recursive: true });
    await writeFile(output, fresh);
    console.log(`wrote dist/melody-client.js (${fresh.length} bytes)`);
  }
}
