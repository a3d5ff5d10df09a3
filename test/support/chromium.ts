/**
 * Debian's Chromium (`/usr/bin/chromium`, or CHROMIUM_PATH) for the browser tests, driven by
 * playwright-core (which downloads no browser of its own). Without it a test is skipped with the
 * reason, except in CI (`CI` set), where it fails: `.ci/run` installs Chromium with apt-get.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);

/** The flags this machine's Chromium needs: no sandbox as root, no GPU, no calls home. */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/** Call first in a browser test: skips it (locally) or fails it (in CI) when there is no Chromium. */
export function requireChromium(context: { skip(note?: string): never }, test: string): void {
  if (haveChromium) return;
  if (process.env.CI) {
    throw new Error(`CI needs Chromium at ${CHROMIUM}: .ci/run installs it (apt-get install chromium)`);
  }
  const reason = `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;
  process.stderr.write(`${test} skipped: ${reason}\n`);
  context.skip(reason);
}
