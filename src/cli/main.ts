#!/usr/bin/env node
/**
 * The `eventsync` command. `eventsync serve` runs until SIGINT or SIGTERM, then shuts down
 * gracefully and exits 0 (a second signal exits 1 at once). Logs are pino JSON lines on stdout.
 */
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { parseCommand, type ServeCommand, USAGE, UsageError } from './args.js';
import { serve } from './serve.js';

async function main(argv: string[]): Promise<void> {
  let command: ReturnType<typeof parseCommand>;
  try {
    command = parseCommand(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`eventsync: ${error.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (command.command === 'help') {
    process.stdout.write(USAGE);
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
  const logger = pino({ level: command.logLevel, base: { pid: process.pid } });
  let running: Awaited<ReturnType<typeof serve>>;
  try {
    const { db, port, host, auth } = command;
    running = await serve({ db, port, host, auth, logger });
  } catch (error) {
    logger.fatal({ err: error }, 'eventsync: could not start');
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

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(
    `eventsync: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
