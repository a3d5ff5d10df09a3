import { expect } from 'vitest';
import { ValidationError } from '../../src/core/errors.js';

/** Runs `fn`, expects a ValidationError and returns it. */
export function refusal(fn: () => void): ValidationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    const e = error as ValidationError;
    expect(e.code).toBe('validation');
    return e;
  }
  throw new Error('expected a ValidationError, nothing was thrown');
}
