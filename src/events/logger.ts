/** The part of pino's interface eventsync uses; pass a pino logger, or anything shaped like it. */
export interface Logger {
  error(details: object, message?: string): void;
  warn(details: object, message?: string): void;
  info(details: object, message?: string): void;
  debug(details: object, message?: string): void;
}

/** Errors and warnings to the console; quiet otherwise. */
export const consoleLogger: Logger = {
  error: (details, message) => console.error(message ?? 'eventsync error', details),
  warn: (details, message) => console.warn(message ?? 'eventsync warning', details),
  info: () => {},
  debug: () => {},
};
