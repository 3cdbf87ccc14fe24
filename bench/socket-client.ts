// A minimal client of the legacy NDJSON socket for the benchmarks: requests may be pipelined (answers come
// back in order), event lines ({"event":…}) go to a separate handler, and a closed connection rejects every
// request still waiting. Used on the host (socket-bench.ts) and inside the sandbox (agent.ts).
import net from 'node:net';

export class SocketClosedError extends Error {
  constructor(why: string) {
    super(`socket closed: ${why}`);
    this.name = 'SocketClosedError';
  }
}

interface Waiter {
  resolve: (line: string) => void;
  reject: (err: Error) => void;
}

export class LineClient {
  private buf = '';
  private readonly waiters: Waiter[] = [];
  private closed: Error | undefined;
  /** Called with every event line (e.g. health_changed after `subscribe`). */
  onEvent: ((line: string) => void) | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl !== -1; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (line.startsWith('{"event"')) {
          this.onEvent?.(line);
          continue;
        }
        this.waiters.shift()?.resolve(line);
      }
    });
    socket.on('error', (err) => this.fail(err.message));
    socket.on('close', () => this.fail('closed by the server'));
  }

  static connect(path: string): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path, () => {
        s.off('error', reject);
        resolve(new LineClient(s));
      });
      s.once('error', reject);
    });
  }

  get isClosed(): boolean {
    return this.closed !== undefined;
  }

  /** Sends one request line (newline added when missing) and resolves with its answer line. */
  call(line: string): Promise<string> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.socket.write(line.endsWith('\n') ? line : `${line}\n`);
    });
  }

  /** call(), parsed; throws when the answer is an error object ({"error":{code,message}}). */
  async request(method: string, params?: unknown, id: unknown = 1): Promise<unknown> {
    const req: Record<string, unknown> = { id, method };
    if (params !== undefined) req.params = params;
    const answer = JSON.parse(await this.call(JSON.stringify(req))) as {
      result?: unknown;
      error?: { code: string; message: string };
    };
    if (answer.error) throw new SocketError(answer.error.code, answer.error.message);
    return answer.result;
  }

  close(): void {
    this.socket.destroy();
    this.fail('closed by the client');
  }

  private fail(why: string): void {
    if (!this.closed) this.closed = new SocketClosedError(why);
    for (const w of this.waiters.splice(0)) w.reject(this.closed);
  }
}

/** An error answer of the socket: code is the contract's (RESTART_FAILED, …). */
export class SocketError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'SocketError';
  }
}
