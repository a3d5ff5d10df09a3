/**
 * The CLI's logger: pino, writing JSON lines, or one readable line per entry (`pretty`, the
 * default on a terminal). Every line passes `redactCredentials` on its way out, so no URL is
 * printed with its password, whichever message or stack holds it.
 */
import { pino } from 'pino';
import { redactCredentials } from '../server/database.js';
import type { LogFormat, LogLevel } from './args.js';

export interface Output {
  write(text: string): unknown;
}

export function cliLogger(level: LogLevel, format: LogFormat, out: Output = process.stdout): pino.Logger {
  const showStacks = showsStacks(level);
  const write =
    format === 'json'
      ? (line: string) => out.write(redactCredentials(line))
      : (line: string) => out.write(redactCredentials(prettyLine(line, showStacks)));
  return pino({ level, base: { pid: process.pid } }, { write });
}

/** Stacks are for `debug` and `trace`: otherwise an error is its one-sentence message. */
export function showsStacks(level: LogLevel): boolean {
  return level === 'debug' || level === 'trace';
}

const LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** A pino JSON line as `12:00:01 INFO  message key=value …`, with the error's stack below it at debug. */
export function prettyLine(json: string, showStacks: boolean): string {
  const { level, time, msg, pid: _pid, hostname: _hostname, err, ...details } = JSON.parse(json);
  const clock = new Date(time as number).toTimeString().slice(0, 8);
  const fields = Object.entries(details).map(([key, value]) => `${key}=${show(value)}`);
  let stack = '';
  if (err && typeof err === 'object') {
    fields.push(`error=${show(err.message)}`);
    if (showStacks && typeof err.stack === 'string') stack = `${err.stack.replace(/^/gm, '    ')}\n`;
  }
  const name = (LEVEL_NAMES[level as number] ?? String(level)).padEnd(5);
  return `${clock} ${name} ${msg ?? ''}${fields.length > 0 ? `  ${fields.join(' ')}` : ''}\n${stack}`;
}

/** A value as it reads best: bare when it is a word, JSON otherwise (quoted strings, objects). */
function show(value: unknown): string {
  if (typeof value === 'string' && /^[^\s"=]+$/.test(value)) return value;
  return JSON.stringify(value) ?? String(value);
}
