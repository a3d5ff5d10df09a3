/** encodeOnce: one frame sent to many sockets is rendered and encoded once, and only that frame. */
import { describe, expect, it } from 'vitest';
import { encodeOnce } from '../../src/server/encode-once.js';

describe('encodeOnce', () => {
  it('hands out the same bytes while the frame and id stay the same, new bytes when either changes', () => {
    let renders = 0;
    const encode = encodeOnce((frame, id) => {
      renders++;
      return `${id}:${frame}`;
    });
    const frame = JSON.stringify({ type: 'event', text: 'ünïcode' });
    const first = encode(frame, 'a/1');
    expect(encode(frame, 'a/1')).toBe(first);
    expect(renders).toBe(1);
    expect(first.toString('utf8')).toBe(`a/1:${frame}`);
    expect(encode(frame, 'a/2').toString('utf8')).toBe(`a/2:${frame}`);
    expect(encode('{"other":1}', 'a/2').toString('utf8')).toBe('a/2:{"other":1}');
    expect(renders).toBe(3);
  });

  it('encodes the frame as it is by default', () => {
    const encode = encodeOnce();
    expect(encode('{"x":"é"}').toString('utf8')).toBe('{"x":"é"}');
    expect(encode('{"x":"é"}').length).toBe(Buffer.byteLength('{"x":"é"}'));
  });
});
