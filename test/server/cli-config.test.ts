/**
 * `eventsync` argv and environment → config (`src/cli/args.ts`), its help, and the CLI's log
 * output (`src/cli/log.ts`): no process, no server.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_DB,
  DEFAULT_HOST,
  DEFAULT_PORT,
  parseCommand,
  SERVE_ENV,
  SERVE_USAGE,
  USAGE,
  UsageError,
} from '../../src/cli/args.js';
import { cliLogger, prettyLine } from '../../src/cli/log.js';
import { isLoopback } from '../../src/server/access.js';
import { redactCredentials } from '../../src/server/database.js';

describe('eventsync serve: arguments', () => {
  it('defaults to PGlite in ./data on 127.0.0.1:8080', () => {
    expect(parseCommand(['serve'])).toEqual({
      command: 'serve',
      db: DEFAULT_DB,
      port: DEFAULT_PORT,
      host: DEFAULT_HOST,
      logLevel: 'info',
      logFormat: 'json',
      auth: { mode: 'none' },
    });
    expect(parseCommand(['serve'], {}, true)).toMatchObject({ logFormat: 'pretty' }); // on a terminal
    expect([DEFAULT_DB, DEFAULT_PORT, DEFAULT_HOST]).toEqual(['./data', 8080, '127.0.0.1']);
  });

  it('reads --db, --port, --host, --log-level, --log-format (also as --flag=value)', () => {
    expect(
      parseCommand([
        'serve',
        '--db',
        'postgres://u:p@h/db',
        '--port=0',
        '--host',
        '0.0.0.0',
        '--log-level',
        'warn',
        '--log-format',
        'pretty',
        '--auth',
        'none',
      ]),
    ).toEqual({
      command: 'serve',
      db: 'postgres://u:p@h/db',
      port: 0,
      host: '0.0.0.0',
      logLevel: 'warn',
      logFormat: 'pretty',
      auth: { mode: 'none' },
    });
    expect(parseCommand(['-v'])).toEqual({ command: 'version' });
  });

  it('refuses mistakes with a UsageError', () => {
    for (const argv of [
      [],
      ['start'],
      ['serve', 'extra'],
      ['serve', '--port', 'eighty'],
      ['serve', '--port', '70000'],
      ['serve', '--port', '-1'],
      ['serve', '--verbose'],
      ['serve', '--log-level', 'loud'],
      ['serve', '--log-format', 'xml'],
      ['serve', '--db='],
    ]) {
      expect(() => parseCommand(argv), argv.join(' ')).toThrow(UsageError);
    }
  });

  it('refuses --auth none beyond loopback unless it is written out', () => {
    for (const host of ['0.0.0.0', '192.168.1.5', '::', '127.evil.example']) {
      expect(() => parseCommand(['serve', '--host', host]), host).toThrow(
        /not a loopback address.*anyone who reaches it may act as anyone: pass --auth jwt …, or --auth none/,
      );
      expect(parseCommand(['serve', '--host', host, '--auth', 'none'])).toMatchObject({
        auth: { mode: 'none' },
      });
    }
    for (const host of ['127.0.0.1', '127.0.0.2', 'localhost', '::1']) {
      expect(parseCommand(['serve', '--host', host]), host).toMatchObject({ host, auth: { mode: 'none' } });
    }
    expect(parseCommand(['serve', '--rules', './r.js'])).toMatchObject({
      auth: { mode: 'none', rules: './r.js' },
    });
  });

  it('reads --auth jwt with a secret or a JWKS URL, audience, issuer and rules', () => {
    const secret = 's'.repeat(32);
    expect(
      parseCommand([
        'serve',
        '--host=0.0.0.0',
        '--auth=jwt',
        `--jwt-secret=${secret}`,
        '--jwt-audience=app',
        '--jwt-issuer=https://id.example',
        '--rules=./rules.js',
      ]),
    ).toMatchObject({
      host: '0.0.0.0',
      auth: { mode: 'jwt', secret, audience: 'app', issuer: 'https://id.example', rules: './rules.js' },
    });
    for (const jwksUrl of ['https://id.example/jwks.json', 'http://127.0.0.1:9/jwks', 'http://localhost/k']) {
      expect(
        parseCommand(['serve', '--auth', 'jwt', '--jwks-url', jwksUrl, '--rules', 'allow-all']),
      ).toMatchObject({
        auth: { mode: 'jwt', jwksUrl, rules: 'allow-all' },
      });
    }
  });

  it('refuses --auth jwt without a key, with two, with a short secret, an http JWKS elsewhere, or no rules', () => {
    const key = ['--jwt-secret', 's'.repeat(32)];
    for (const [argv, message] of [
      [['--auth', 'jwt', '--rules', 'allow-all'], /needs one of --jwt-secret/],
      [['--auth', 'jwt', ...key, '--jwks-url', 'https://x/k', '--rules', 'allow-all'], /needs one of/],
      [['--auth', 'jwt', '--jwt-secret', 'short', '--rules', 'allow-all'], /at least 32 bytes/],
      [['--auth', 'jwt', '--jwks-url', 'http://id.example/k', '--rules', 'allow-all'], /must be https/],
      [['--auth', 'jwt', '--jwks-url', 'not a url', '--rules', 'allow-all'], /must be a URL/],
      [['--auth', 'jwt', ...key], /needs --rules .*--rules allow-all/],
      [['--auth', 'jwt', ...key, '--rules', ''], /--rules must not be empty/],
      [['--auth', 'none', ...key], /--jwt-secret needs --auth jwt/],
      [['--jwt-audience', 'app'], /--jwt-audience needs --auth jwt/],
      [['--auth', 'basic'], /--auth must be none or jwt/],
    ] as const) {
      expect(() => parseCommand(['serve', ...argv]), argv.join(' ')).toThrow(UsageError);
      expect(() => parseCommand(['serve', ...argv]), argv.join(' ')).toThrow(message);
    }
  });

  it('tells loopback addresses from others', () => {
    for (const host of ['localhost', '127.0.0.1', '127.1.2.3', '::1', '[::1]'])
      expect(isLoopback(host), host).toBe(true);
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '127.example.com', 'localhost.example.com', ''])
      expect(isLoopback(host), host).toBe(false);
  });
});
describe('eventsync serve: the environment', () => {
  it('reads every option from its environment variable', () => {
    const env = {
      DATABASE_URL: 'postgres://u:p@db/app',
      PORT: '9000',
      HOST: '0.0.0.0',
      EVENTSYNC_LOG_LEVEL: 'debug',
      EVENTSYNC_LOG_FORMAT: 'pretty',
      EVENTSYNC_AUTH: 'jwt',
      EVENTSYNC_JWT_SECRET: 's'.repeat(32),
      EVENTSYNC_JWT_AUDIENCE: 'app',
      EVENTSYNC_JWT_ISSUER: 'https://id.example',
      EVENTSYNC_RULES: './rules.js',
    };
    expect(parseCommand(['serve'], env)).toEqual({
      command: 'serve',
      db: 'postgres://u:p@db/app',
      port: 9000,
      host: '0.0.0.0',
      logLevel: 'debug',
      logFormat: 'pretty',
      auth: {
        mode: 'jwt',
        secret: 's'.repeat(32),
        audience: 'app',
        issuer: 'https://id.example',
        rules: './rules.js',
      },
    });
    expect(
      parseCommand(['serve'], {
        EVENTSYNC_AUTH: 'jwt',
        EVENTSYNC_JWKS_URL: 'https://id.example/jwks.json',
        EVENTSYNC_RULES: 'allow-all',
      }),
    ).toMatchObject({ auth: { mode: 'jwt', jwksUrl: 'https://id.example/jwks.json', rules: 'allow-all' } });
  });

  it('lets a flag win over the environment, and takes an empty variable as unset', () => {
    const env = { DATABASE_URL: 'memory', PORT: '9000', HOST: '', EVENTSYNC_LOG_LEVEL: '' };
    expect(parseCommand(['serve', '--port', '0', '--db', './other'], env)).toMatchObject({
      db: './other',
      port: 0,
      host: DEFAULT_HOST,
      logLevel: 'info',
    });
    expect(
      parseCommand(['serve', '--log-format', 'json'], { EVENTSYNC_LOG_FORMAT: 'pretty' }, true),
    ).toMatchObject({ logFormat: 'json' });
    // A valid flag stands even when the variable it hides would be refused.
    expect(parseCommand(['serve', '--port', '1'], { PORT: 'eighty' })).toMatchObject({ port: 1 });
  });

  it('names the variable, not a flag, when a value from the environment is refused', () => {
    for (const [env, message] of [
      [{ PORT: 'eighty' }, /^PORT \(environment\) must be a number from 0 to 65535, not "eighty"$/],
      [{ EVENTSYNC_LOG_LEVEL: 'loud' }, /^EVENTSYNC_LOG_LEVEL \(environment\) must be one of/],
      [{ EVENTSYNC_LOG_FORMAT: 'xml' }, /^EVENTSYNC_LOG_FORMAT \(environment\) must be one of pretty, json/],
      [{ EVENTSYNC_AUTH: 'basic' }, /^EVENTSYNC_AUTH \(environment\) must be none or jwt/],
      [{ EVENTSYNC_JWT_SECRET: 's'.repeat(32) }, /^EVENTSYNC_JWT_SECRET \(environment\) needs --auth jwt/],
      [{ HOST: '0.0.0.0' }, /^the host 0\.0\.0\.0 is not a loopback address/],
    ] as const) {
      expect(() => parseCommand(['serve'], env), JSON.stringify(env)).toThrow(UsageError);
      expect(() => parseCommand(['serve'], env), JSON.stringify(env)).toThrow(message);
    }
  });
});

describe('eventsync --help', () => {
  it('answers --help for the program and for serve, in every spelling', () => {
    for (const argv of [['--help'], ['-h'], ['help']]) {
      expect(parseCommand(argv), argv.join(' ')).toEqual({ command: 'help', text: USAGE });
    }
    for (const argv of [
      ['serve', '--help'],
      ['serve', '-h'],
      ['help', 'serve'],
      ['--help', 'serve'],
    ]) {
      expect(parseCommand(argv), argv.join(' ')).toEqual({ command: 'help', text: SERVE_USAGE });
    }
    // Help comes before the other options are checked.
    expect(parseCommand(['serve', '--port', 'eighty', '--help'])).toMatchObject({ command: 'help' });
    expect(() => parseCommand(['help', 'start'])).toThrow(/unknown command "start"/);
    expect(USAGE).toMatch(/^ {2}serve /m);
  });

  it("lists every option of serve with its environment variable, as README's table does", () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('### `eventsync serve`'));
    const table = section.slice(0, section.indexOf('\n\n', section.indexOf('| option')));
    const rows = table.split('\n').filter((row) => row.startsWith('| `--'));
    expect(rows.map((row) => /^\| `--([a-z-]+)`/.exec(row)![1])).toEqual(Object.keys(SERVE_ENV));
    for (const [name, variable] of Object.entries(SERVE_ENV)) {
      expect(SERVE_USAGE, name).toMatch(new RegExp(`^ {2}--${name} [\\s\\S]*?\\[${variable}\\]$`, 'm'));
      expect(
        rows.find((row) => row.startsWith(`| \`--${name}\``)),
        name,
      ).toContain(`\`${variable}\``);
    }
  });
});

describe('eventsync serve: what it prints', () => {
  it('redacts the password of every URL in a text, whatever it holds', () => {
    for (const [text, redacted] of [
      ['postgres://me:s3cret@db:5432/app', 'postgres://me:***@db:5432/app'],
      ['at postgresql://me:p@ss/w:rd@db/app failed', 'at postgresql://me:***@db/app failed'],
      ['postgress://:s3cret@db/app', 'postgress://:***@db/app'],
      [
        '{"db":"postgres://me:s3cret@db/app","principal":"a@b"}',
        '{"db":"postgres://me:***@db/app","principal":"a@b"}',
      ],
      ['two: pg://a:x@h1 and pg://b:y@h2', 'two: pg://a:***@h1 and pg://b:***@h2'],
    ]) {
      expect(redactCredentials(text!), text).toBe(redacted);
    }
    for (const kept of [
      'postgres://me@db/app',
      'http://127.0.0.1:8080/api',
      'mail a@b',
      'pglite:/var/lib/es',
    ]) {
      expect(redactCredentials(kept), kept).toBe(kept);
    }
  });

  it('writes JSON lines, or readable ones, never with a password, stacks only at debug', () => {
    const written: string[] = [];
    const out = { write: (text: string) => written.push(text) };
    const url = 'postgres://me:s3cret@db/app';
    const error = new Error(`connect to ${url} refused`);

    cliLogger('info', 'json', out).error({ err: error, db: url }, 'eventsync: could not start');
    const json = JSON.parse(written[0]!);
    expect(json).toMatchObject({
      level: 50,
      msg: 'eventsync: could not start',
      db: 'postgres://me:***@db/app',
    });
    expect(json.err.message).toBe('connect to postgres://me:***@db/app refused');

    written.length = 0;
    cliLogger('info', 'pretty', out).info(
      { url: 'http://127.0.0.1:8080', auth: 'none: anyone' },
      'eventsync: listening',
    );
    cliLogger('info', 'pretty', out).debug({}, 'not at info');
    cliLogger('info', 'pretty', out).error({ err: error }, 'eventsync: failed');
    cliLogger('debug', 'pretty', out).error({ err: error }, 'eventsync: failed');
    expect(written[0]).toMatch(
      /^\d\d:\d\d:\d\d INFO {2}eventsync: listening {2}url=http:\/\/127\.0\.0\.1:8080 auth="none: anyone"\n$/,
    );
    expect(written[1]).toMatch(
      /ERROR eventsync: failed {2}error="connect to postgres:\/\/me:\*\*\*@db\/app refused"\n$/,
    );
    expect(written[2]).toMatch(/\n {4}Error: connect to postgres:\/\/me:\*\*\*@db\/app refused\n +at /);
    expect(written.join('')).not.toContain('s3cret');
    expect(written).toHaveLength(3);
  });

  it('formats any pino line, also one without details', () => {
    const line = JSON.stringify({
      level: 30,
      time: Date.now(),
      pid: 1,
      hostname: 'h',
      msg: 'eventsync: stopped',
    });
    expect(prettyLine(line, false)).toMatch(/^\d\d:\d\d:\d\d INFO {2}eventsync: stopped\n$/);
  });
});
