/**
 * A frame goes to every subscriber of its document, one after another: rendering it (SSE adds
 * its `id:` and `data:` lines) and encoding it to UTF-8 once, then writing the same bytes to each
 * socket, saves a string, an encode and their garbage per client (a string written to a socket
 * is encoded on every write). The bytes are never changed after, so sockets can share them.
 *
 * Returns a function of (frame, event id) that renders and encodes only when either differs
 * from its previous call.
 */
export function encodeOnce(
  render: (frame: string, eventId: string | undefined) => string = (frame) => frame,
): (frame: string, eventId?: string) => Buffer {
  let lastFrame: string | undefined;
  let lastId: string | undefined;
  let lastBytes: Buffer = Buffer.alloc(0);
  return (frame, eventId) => {
    // Mostly the very same string objects as last time: compared by reference before content.
    if (frame !== lastFrame || eventId !== lastId) {
      lastFrame = frame;
      lastId = eventId;
      lastBytes = Buffer.from(render(frame, eventId), 'utf8');
    }
    return lastBytes;
  };
}
