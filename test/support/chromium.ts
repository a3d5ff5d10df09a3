/**
 * The Chromium the browser tests drive with playwright-core (which downloads no browser of its
 * own): Debian's (`/usr/bin/chromium`, or CHROMIUM_PATH) when it is there, else the headless
 * Chromium the `@sparticuz/chromium` devDependency ships (unpacked to the OS temp dir on first
 * use, linux x64/arm64, no system packages), so a fresh machine runs the browser tests too.
 * Without either a test is skipped with the reason, except in CI (`CI` set), where it fails.
 */
import { existsSync } from 'node:fs';
import sparticuz from '@sparticuz/chromium';
import { type Browser, chromium } from 'playwright-core';

const WANTED = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Why the bundled Chromium could not be used, when it was needed and failed. */
let bundledError = '';

async function findChromium(): Promise<string | undefined> {
  if (existsSync(WANTED)) return WANTED;
  try {
    const path = await sparticuz.executablePath();
    process.stderr.write(`browser tests: no Chromium at ${WANTED}, using @sparticuz/chromium's (${path})\n`);
    return path;
  } catch (error) {
    bundledError = error instanceof Error ? error.message : String(error);
    return undefined;
  }
}

/** The Chromium binary the browser tests launch, if this machine has one. */
export const CHROMIUM = await findChromium();
export const haveChromium = CHROMIUM !== undefined;

/** The flags both Chromiums need: no sandbox as root, no GPU, no calls home. */
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
  const reason =
    `no Chromium at ${WANTED} and @sparticuz/chromium failed (${bundledError}): ` +
    'apt-get install chromium, or set CHROMIUM_PATH';
  if (process.env.CI) throw new Error(`CI needs Chromium: ${reason}`);
  process.stderr.write(`${test} skipped: ${reason}\n`);
  context.skip(reason);
}
