// Headless-Chromium test of the filewatch example.
//
// Usage: node filewatch.mjs <page url> <watched file path>
//
// Two visitors (separate browser contexts) open the page and must show the
// file's current content in `#content`. The file is then rewritten in place,
// and afterwards replaced atomically (temporary file + rename, as editors
// save); after each change both pages must show exactly the new content.
// The file belongs to the caller and is left with the last content written.

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { TestFailure, assertNoPageErrors, openVisitor, runTest, waitUntil } from './harness.mjs';

const file = process.argv[3];
if (!file) {
  console.error('usage: node filewatch.mjs <page url> <watched file path>');
  process.exit(2);
}

/** Waits until `#content` of every page in `all` is exactly `text`; `how` says where it came from. */
async function expectEverywhere(all, text, how) {
  for (const visitor of all) {
    try {
      await waitUntil(
        visitor.page,
        `page ${visitor.label} to show ${how} ${JSON.stringify(text)} in #content`,
        (t) => document.getElementById('content')?.textContent === t,
        text,
      );
    } catch (err) {
      const shown = await visitor.page
        .evaluate(() => document.getElementById('content')?.textContent ?? null)
        .catch(() => 'unknown');
      throw new TestFailure(`${err.message} (it shows ${JSON.stringify(shown)})`);
    }
  }
}

await runTest('filewatch', async (browser, url) => {
  let initial;
  try {
    initial = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TestFailure(`cannot read the watched file ${file}: ${err.message}`);
  }

  const a = await openVisitor(browser, url, 'A');
  const b = await openVisitor(browser, url, 'B');
  await expectEverywhere([a, b], initial, 'the file\'s current content');

  const tag = `${process.pid}-${Date.now().toString(36)}`;

  const written = `written in place ${tag}\nsecond line\n`;
  writeFileSync(file, written);
  await expectEverywhere([a, b], written, 'the content written in place');

  const renamed = `replaced by rename ${tag}\n`;
  const temp = join(dirname(file), `.${basename(file)}.${tag}.tmp`);
  writeFileSync(temp, renamed);
  renameSync(temp, file);
  await expectEverywhere([a, b], renamed, 'the content renamed over the file');

  assertNoPageErrors(a, b);
});
