// A stand-in for RawReplies (src/bus/raw-reply.ts) that records each method return as the whole message the
// real one would write (our header encoder in front of the cached body), for comparing with dbus-next's own.
import type { DBusMessage } from '../../../src/bus/connection.js';
import { encodeHeader } from '../../../src/bus/raw-reply.js';

export function recordedReplies(): { replies: never; written: Buffer[] } {
  const written: Buffer[] = [];
  const replies = {
    methodReturn: (c: DBusMessage, sig: string, body: Buffer) => {
      written.push(
        Buffer.concat([
          encodeHeader(2, 4, body.length, [
            [5, 'u', c.serial ?? 0],
            [6, 's', c.sender],
            [8, 'g', sig],
          ]),
          body,
        ]),
      );
      return true;
    },
  };
  return { replies: replies as never, written };
}
