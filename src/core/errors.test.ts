import { describe, expect, it } from 'vitest';
import { ClosedError, EventSyncError, NotFoundError } from './errors.js';

describe('EventSyncError.is', () => {
  it('recognises a code by value, whatever made the error', () => {
    expect(EventSyncError.is(new NotFoundError('games', 'g'), 'not_found')).toBe(true);
    expect(EventSyncError.is({ code: 'not_found', message: 'from the wire' }, 'not_found')).toBe(true);
    expect(EventSyncError.is({ code: 'not_found' }, 'closed')).toBe(false);
    expect(EventSyncError.is({ code: '23505' })).toBe(false);
    expect(EventSyncError.is({ code: 'constructor' })).toBe(false);
    expect(EventSyncError.is(null)).toBe(false);
  });
});

describe('ClosedError.is', () => {
  it('tells a closed object from a server that ended a connection (both code closed)', () => {
    expect(ClosedError.is(new ClosedError('the database'))).toBe(true);
    expect(ClosedError.is(ClosedError.transactionEnded())).toBe(true);
    const copy = Object.assign(new Error('the database is closed'), { name: 'ClosedError', code: 'closed' });
    expect(ClosedError.is(copy)).toBe(true); // another copy of the package
    expect(ClosedError.is(new EventSyncError('closed', 'the server is shutting down (57P01)'))).toBe(false);
  });
});
