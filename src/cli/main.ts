#!/usr/bin/env node
/**
 * The `eventsync` command: argv and environment → config (`args.ts`) → `serve` (`src/server/`).
 * `eventsync serve` runs until SIGINT or SIGTERM, then shuts down gracefully and exits 0 (a
 * second signal exits 1 at once). A mistake in the arguments exits 2; a start that fails exits 1
 * with one sentence on stderr saying what to do (and the stack at `--log-level debug`).
 */
import { readFileSync } from 'node:fs';
import type { pino } from 'pino';
import { redactCredentials } from '../server/database.js';
import { serve } from '../server/serve.js';
import { parseCommand, type ServeCommand, UsageError } from './args.js';
import { cliLogger, showsStacks } from './log.js';

/** Whether an unforeseen error is printed with its stack (set once the log level is known). */
let showStacks = false;

async function main(argv: string[]): Promise<void> {
  let command: ReturnType<typeof parseCommand>;
  try {
    command = parseCommand(argv, process.env, process.stdout.isTTY === true);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    const topic = argv.includes('serve') ? 'eventsync serve --help' : 'eventsync --help';
    process.stderr.write(`eventsync: ${redactCredentials(error.message)}\n(${topic} lists the options)\n`);
    process.exit(2);
  }
  if (command.command === 'help') {
    process.stdout.write(command.text);
    return;
  }
  if (command.command === 'version') {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    process.stdout.write(`${pkg.version}\n`);
    return;
  }
  await runServe(command);
}

async function runServe(command: ServeCommand): Promise<void> {
  showStacks = showsStacks(command.logLevel);
  const logger = cliLogger(command.logLevel, command.logFormat);
  let running: Awaited<ReturnType<typeof serve>>;
  try {
    const { db, port, host, auth } = command;
    running = await serve({ db, port, host, auth, logger });
  } catch (error) {
    reportStartFailure(error, command, logger);
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'eventsync: second signal, exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'eventsync: shutting down');
    running.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'eventsync: shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/**
 * The sentence on stderr (for whoever started it), and in JSON mode a `fatal` line too (for
 * whatever collects the logs); the stack only at debug.
 */
function reportStartFailure(error: unknown, command: ServeCommand, logger: pino.Logger): void {
  const reason = redactCredentials(error instanceof Error ? error.message : String(error));
  if (command.logFormat === 'json') {
    logger.fatal({ reason, ...(showStacks ? { err: error } : {}) }, 'eventsync: could not start');
  }
  const stack = showStacks && command.logFormat === 'pretty' ? stackOf(error) : '';
  process.stderr.write(`eventsync: could not start: ${reason}\n${stack}`);
}

function stackOf(error: unknown): string {
  let text = '';
  for (let e = error; e instanceof Error; e = e.cause) text += `${e.stack}\n`;
  return redactCredentials(text);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  const text = error instanceof Error ? (showStacks ? stackOf(error) : `${error.message}\n`) : `${error}\n`;
  process.stderr.write(`eventsync: ${redactCredentials(text)}`);
  process.exit(1);
});
