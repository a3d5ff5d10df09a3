/**
 * How the server reads JSON from clients (frames and request bodies alike): nesting deeper than
 * `maxDepth` is refused before parsing (deep input could exhaust the stack of whatever walks the
 * value later), and so is any `__proto__` key (schema validation with zod would drop it silently).
 */
export type ParsedJson = { ok: true; value: unknown } | { ok: false; reason: string };

export function parseClientJson(text: string, maxDepth: number): ParsedJson {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91 /* { [ */) {
      if (++depth > maxDepth) return { ok: false, reason: `is nested deeper than ${maxDepth} levels` };
    } else if (c === 125 || c === 93) depth--;
  }
  let protoKey = false;
  let value: unknown;
  try {
    value = JSON.parse(text, (key, v) => {
      if (key === '__proto__') protoKey = true;
      return v;
    });
  } catch {
    return { ok: false, reason: 'is not valid JSON' };
  }
  if (protoKey) return { ok: false, reason: 'has a "__proto__" key, which is not allowed' };
  return { ok: true, value };
}
