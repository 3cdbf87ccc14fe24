// A client of the legacy socket for reliability tests: one long-lived connection, pinging at a fixed rate and
// recording when each request went out and when its answer came back.
import net from 'node:net';

/**
 * A one-shot client of the legacy socket, run inside the container with `node -e SOCKET_LINES_CLIENT LINE…`:
 * sends each line, prints each answer line, ends after as many answers (a refused connection prints
 * `ERROR code`, no answer within 20 s prints `TIMEOUT`).
 */
export const SOCKET_LINES_CLIENT = `
const net = require('node:net');
const lines = process.argv.slice(1); // node -e: argv[1] is the first argument
const s = net.connect('/run/openauto/system.sock');
let buf = '', got = 0;
s.on('error', (e) => { console.log('ERROR ' + e.code); process.exit(0); });
s.on('connect', () => { for (const l of lines) s.write(l + '\\n'); });
s.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) { console.log(buf.slice(0, i)); buf = buf.slice(i + 1); got++; }
  if (got >= lines.length) s.end();
});
s.on('close', () => process.exit(0));
setTimeout(() => { console.log('TIMEOUT'); process.exit(0); }, 20000);
`;

/** One connection sending `ping` every `everyMs`, recording when each request went out and came back. */
export class Pinger {
  readonly sent = new Map<number, number>();
  readonly answered = new Map<number, number>();
  closedAt: number | undefined;
  events: string[] = [];
  /** Lines that are neither events nor answers to ping/ask (errors with id null). */
  readonly others: string[] = [];
  private next = 1;
  private timer: NodeJS.Timeout | undefined;
  private buf = '';
  private readonly waiters = new Map<string, (line: string) => void>();

  constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('end', () => {
      this.closedAt ??= Date.now();
    });
    socket.on('close', () => {
      this.closedAt ??= Date.now();
    });
    socket.on('error', () => {});
  }

  static connect(path: string): Promise<Pinger> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path);
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new Pinger(s));
      });
    });
  }

  private onData(d: string): void {
    this.buf += d;
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl < 0) return;
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const msg = JSON.parse(line) as { id?: unknown; event?: string; result?: unknown };
      if (msg.event) {
        this.events.push(line);
        continue;
      }
      if (typeof msg.id === 'number') this.answered.set(msg.id, Date.now());
      else if (typeof msg.id === 'string' && this.waiters.has(msg.id)) this.waiters.get(msg.id)?.(line);
      else this.others.push(line);
    }
  }

  /** One request with a string id; its answer line. */
  ask(method: string, id: string): Promise<string> {
    return new Promise((resolve) => {
      this.waiters.set(id, resolve);
      this.socket.write(`${JSON.stringify({ id, method })}\n`);
    });
  }

  start(everyMs: number): void {
    this.timer = setInterval(() => {
      if (this.closedAt !== undefined) return;
      const id = this.next++;
      this.sent.set(id, Date.now());
      this.socket.write(`${JSON.stringify({ id, method: 'ping' })}\n`);
    }, everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  unanswered(): number[] {
    return [...this.sent.keys()].filter((id) => !this.answered.has(id));
  }
}
