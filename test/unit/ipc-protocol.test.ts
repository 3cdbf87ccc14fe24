// Conformance of the legacy NDJSON socket: every example of the contract and the seed answered byte for byte,
// every error code reachable, ids echoed verbatim, framing, pipelining and subscriptions.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import fc from 'fast-check';
import { ERROR_CODES, ServiceError, SOCKET_ERROR_CODES } from '../../src/errors.js';
import { handleLine, handleParsedLine, METHODS, rawMember, SOCKET_CODES } from '../../src/ipc/protocol.js';
import { SocketServer } from '../../src/ipc/socket-server.js';
import { FakeService, LineClient, sleep } from './helpers/fake-service.js';

const HEALTH = '{"hostapd":"active","networkd":"active","bluetooth":"active"}';

let dir: string;
let path: string;
let service: FakeService;
let server: SocketServer;
let client: LineClient;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'oas-ipc-'));
  path = join(dir, 'system.sock');
});

after(() => rmSync(dir, { recursive: true, force: true }));

async function fresh(): Promise<void> {
  client?.close();
  if (server) await server.close();
  service = new FakeService();
  server = new SocketServer(service, { path, group: 'no-such-group' });
  await server.start();
  client = await LineClient.connect(path);
}

describe('socket conformance: the contract table', () => {
  beforeEach(fresh);
  after(async () => {
    client.close();
    await server.close();
  });

  it('get_health', async () => {
    assert.equal(await client.call('{"id":"1","method":"get_health"}'), `{"id":"1","result":${HEALTH}}`);
  });

  it('get_status is the GetStatus dump as JSON', async () => {
    assert.equal(
      await client.call('{"id":"2","method":"get_status"}'),
      `{"id":"2","result":${JSON.stringify(service.status)}}`,
    );
  });

  it('apply_config', async () => {
    assert.equal(
      await client.call('{"id":"3","method":"apply_config","params":{"section":"wifi"}}'),
      '{"id":"3","result":{"ok":true,"changed":true,"restarted":["hostapd"]}}',
    );
    assert.deepEqual(service.calls, [{ method: 'applyConfig', arg: 'wifi', caller: { kind: 'socket' } }]);
  });

  it('restart_service', async () => {
    assert.equal(
      await client.call('{"id":"4","method":"restart_service","params":{"name":"hostapd"}}'),
      '{"id":"4","result":{"ok":true,"name":"hostapd"}}',
    );
    assert.deepEqual(service.calls, [
      { method: 'restartService', arg: 'hostapd', caller: { kind: 'socket' } },
    ]);
  });

  it('ping', async () => {
    assert.equal(await client.call('{"id":"5","method":"ping"}'), '{"id":"5","result":"pong"}');
  });

  it('the error example', async () => {
    service.restartImpl = () => {
      throw new ServiceError('RestartFailed', 'hostapd failed to start');
    };
    assert.equal(
      await client.call('{"id":"4","method":"restart_service","params":{"name":"hostapd"}}'),
      '{"id":"4","error":{"code":"RESTART_FAILED","message":"hostapd failed to start"}}',
    );
  });
});

describe('socket conformance: the seed examples', () => {
  beforeEach(fresh);
  after(async () => {
    client.close();
    await server.close();
  });

  it('requests written with spaces, string ids', async () => {
    assert.equal(
      await client.call('{"id": "abc123", "method": "get_health"}'),
      `{"id":"abc123","result":${HEALTH}}`,
    );
    // The seed's response shows {"ok":true,"restarted":[…]}; the contract adds "changed". Both keys the
    // seed shows are there with the seed's values.
    const line = await client.call(
      '{"id": "abc124", "method": "apply_config", "params": {"section": "wifi"}}',
    );
    assert.equal(line, '{"id":"abc124","result":{"ok":true,"changed":true,"restarted":["hostapd"]}}');
    const r = JSON.parse(line) as { result: { ok: boolean; restarted: string[] } };
    assert.equal(r.result.ok, true);
    assert.deepEqual(r.result.restarted, ['hostapd']);
  });

  it('the seed error example', async () => {
    service.applyImpl = () => {
      throw new ServiceError('RestartFailed', 'hostapd failed to start');
    };
    assert.equal(
      await client.call('{"id": "abc124", "method": "apply_config", "params": {"section": "wifi"}}'),
      '{"id":"abc124","error":{"code":"RESTART_FAILED","message":"hostapd failed to start"}}',
    );
  });
});

describe('socket conformance: every error code', () => {
  beforeEach(fresh);
  after(async () => {
    client.close();
    await server.close();
  });

  const seen = new Set<string>();
  const expectError = async (request: string | Buffer, expected: string) => {
    const n = client.lines.length + 1;
    client.send(request);
    await client.waitLines(n);
    const line = client.lines[n - 1] as string;
    assert.equal(line, expected);
    seen.add((JSON.parse(line) as { error: { code: string } }).error.code);
  };

  it('PARSE_ERROR: not JSON, invalid UTF-8, NUL bytes', async () => {
    const e = '{"id":null,"error":{"code":"PARSE_ERROR","message":"request is not valid JSON"}}';
    const u = '{"id":null,"error":{"code":"PARSE_ERROR","message":"request is not valid UTF-8"}}';
    await expectError('hello', e);
    await expectError('{"id":"1","method":"ping"', e);
    await expectError('{"id":"1","method":"ping"}}', e);
    await expectError(Buffer.from('{"id":"1","method":"p\x00ing"}', 'latin1'), e);
    await expectError(Buffer.from([0x7b, 0xff, 0x7d]), u);
    await expectError(Buffer.from('{"id":"\xc3\x28","method":"ping"}', 'latin1'), u);
    await expectError(Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]), u); // an encoded surrogate
    await expectError(Buffer.from([0x22, 0xc0, 0xaf, 0x22]), u); // overlong
  });

  it('INVALID_REQUEST: not an object, method not a string', async () => {
    const notObject =
      '{"id":null,"error":{"code":"INVALID_REQUEST","message":"request must be a JSON object"}}';
    await expectError('[{"id":"1","method":"ping"}]', notObject);
    await expectError('"ping"', notObject);
    await expectError('42', notObject);
    await expectError('null', notObject);
    await expectError(
      '{"id":7}',
      '{"id":7,"error":{"code":"INVALID_REQUEST","message":"method must be a string"}}',
    );
    await expectError(
      '{"id":"x","method":["ping"]}',
      '{"id":"x","error":{"code":"INVALID_REQUEST","message":"method must be a string"}}',
    );
  });

  it('UNKNOWN_METHOD, including names that exist on every JS object', async () => {
    const msg =
      'unknown method; the methods are get_health, get_status, apply_config, restart_service, ping, subscribe, unsubscribe, set_proxy_route, get_proxy_status';
    for (const m of [
      'reboot',
      '__proto__',
      'constructor',
      'toString',
      'valueOf',
      'hasOwnProperty',
      'GetHealth',
      'get_health ',
      '',
    ]) {
      await expectError(
        `{"id":1,"method":${JSON.stringify(m)}}`,
        `{"id":1,"error":{"code":"UNKNOWN_METHOD","message":"${msg}"}}`,
      );
    }
  });

  it('INVALID_PARAMS: missing or mistyped section/name, params not an object', async () => {
    const section = '{"id":9,"error":{"code":"INVALID_PARAMS","message":"params.section must be a string"}}';
    const name = '{"id":9,"error":{"code":"INVALID_PARAMS","message":"params.name must be a string"}}';
    const obj = '{"id":9,"error":{"code":"INVALID_PARAMS","message":"params must be an object"}}';
    await expectError('{"id":9,"method":"apply_config"}', section);
    await expectError('{"id":9,"method":"apply_config","params":{}}', section);
    await expectError('{"id":9,"method":"apply_config","params":{"section":5}}', section);
    await expectError('{"id":9,"method":"apply_config","params":{"section":null}}', section);
    await expectError('{"id":9,"method":"apply_config","params":{"section":["wifi"]}}', section);
    await expectError('{"id":9,"method":"restart_service"}', name);
    await expectError('{"id":9,"method":"restart_service","params":{"name":true}}', name);
    await expectError('{"id":9,"method":"apply_config","params":["wifi"]}', obj);
    await expectError('{"id":9,"method":"get_health","params":"x"}', obj);
    await expectError('{"id":9,"method":"ping","params":0}', obj);
    // A ServiceError InvalidArgs from the service maps to INVALID_PARAMS as well.
    service.applyImpl = () => {
      throw new ServiceError('InvalidArgs', 'section must not be empty');
    };
    await expectError(
      '{"id":9,"method":"apply_config","params":{"section":""}}',
      '{"id":9,"error":{"code":"INVALID_PARAMS","message":"section must not be empty"}}',
    );
    assert.equal(service.calls.length, 1, 'only the well-typed request reached the service');
  });

  it('UNKNOWN_SECTION, UNKNOWN_SERVICE (decided by the service, not the shim)', async () => {
    await expectError(
      '{"id":10,"method":"apply_config","params":{"section":"bogus"}}',
      '{"id":10,"error":{"code":"UNKNOWN_SECTION","message":"unknown section; the sections are wifi, network, bluetooth, time"}}',
    );
    await expectError(
      '{"id":11,"method":"restart_service","params":{"name":"sshd"}}',
      '{"id":11,"error":{"code":"UNKNOWN_SERVICE","message":"unknown service; the services are hostapd, networkd, bluetooth"}}',
    );
    // Names every JavaScript object has are unknown like any other.
    const names = ['constructor', '__proto__', 'toString', 'valueOf', 'hasOwnProperty'];
    for (const name of names) {
      await expectError(
        `{"id":12,"method":"apply_config","params":{"section":"${name}"}}`,
        '{"id":12,"error":{"code":"UNKNOWN_SECTION","message":"unknown section; the sections are wifi, network, bluetooth, time"}}',
      );
      await expectError(
        `{"id":13,"method":"restart_service","params":{"name":"${name}"}}`,
        '{"id":13,"error":{"code":"UNKNOWN_SERVICE","message":"unknown service; the services are hostapd, networkd, bluetooth"}}',
      );
    }
    assert.deepEqual(
      service.calls.map((c) => c.arg),
      ['bogus', 'sshd', ...names.flatMap((n) => [n, n])],
    );
  });

  it('VALIDATION_FAILED, CONFIG_UNREADABLE, RESTART_FAILED', async () => {
    service.applyImpl = () => {
      throw new ServiceError('InvalidConfig', 'wifi.password: 8–63 printable ASCII characters (got 7)');
    };
    await expectError(
      '{"id":12,"method":"apply_config","params":{"section":"wifi"}}',
      '{"id":12,"error":{"code":"VALIDATION_FAILED","message":"wifi.password: 8–63 printable ASCII characters (got 7)"}}',
    );
    service.applyImpl = () => {
      throw new ServiceError('ConfigUnreadable', 'config.yaml is not valid YAML (line 3)');
    };
    await expectError(
      '{"id":13,"method":"apply_config","params":{"section":"wifi"}}',
      '{"id":13,"error":{"code":"CONFIG_UNREADABLE","message":"config.yaml is not valid YAML (line 3)"}}',
    );
    service.applyImpl = () => {
      throw new ServiceError(
        'RestartFailed',
        'hostapd failed to start; the previous hostapd.conf was restored',
      );
    };
    await expectError(
      '{"id":14,"method":"apply_config","params":{"section":"wifi"}}',
      '{"id":14,"error":{"code":"RESTART_FAILED","message":"hostapd failed to start; the previous hostapd.conf was restored"}}',
    );
  });

  it('INTERNAL_ERROR: an unexpected throw never leaks its message, stack or paths', async () => {
    const bland = 'internal error (see the journal)';
    service.applyImpl = () => {
      throw new Error('EACCES: permission denied, open /etc/hostapd/hostapd.conf');
    };
    await expectError(
      '{"id":15,"method":"apply_config","params":{"section":"wifi"}}',
      `{"id":15,"error":{"code":"INTERNAL_ERROR","message":"${bland}"}}`,
    );
    service.getHealthImpl = () => {
      throw new TypeError("Cannot read properties of undefined (reading 'state') at /usr/lib/x.js:1:1");
    };
    await expectError(
      '{"id":16,"method":"get_health"}',
      `{"id":16,"error":{"code":"INTERNAL_ERROR","message":"${bland}"}}`,
    );
    await expectError(
      '{"id":17,"method":"subscribe"}',
      `{"id":17,"error":{"code":"INTERNAL_ERROR","message":"${bland}"}}`,
    );
    service.status = { n: 1n } as never; // BigInt cannot be serialised
    await expectError(
      '{"id":18,"method":"get_status"}',
      `{"id":18,"error":{"code":"INTERNAL_ERROR","message":"${bland}"}}`,
    );
    service.restartImpl = () => Promise.reject('a string, not an Error');
    await expectError(
      '{"id":19,"method":"restart_service","params":{"name":"hostapd"}}',
      `{"id":19,"error":{"code":"INTERNAL_ERROR","message":"${bland}"}}`,
    );
  });

  it('every service error code maps through SOCKET_ERROR_CODES', async () => {
    for (const code of ERROR_CODES) {
      service.restartImpl = () => {
        throw new ServiceError(code, `message for ${code}`);
      };
      await expectError(
        `{"id":"${code}","method":"restart_service","params":{"name":"hostapd"}}`,
        `{"id":"${code}","error":{"code":"${SOCKET_ERROR_CODES[code]}","message":"message for ${code}"}}`,
      );
    }
  });

  it('LINE_TOO_LONG: error, then the connection is closed', async () => {
    client.send('x'.repeat(65537));
    await client.waitClosed();
    assert.deepEqual(client.lines, [
      '{"id":null,"error":{"code":"LINE_TOO_LONG","message":"request line longer than 65536 bytes"}}',
    ]);
    seen.add('LINE_TOO_LONG');
  });

  it('reached every contract error code', () => {
    assert.deepEqual([...seen].sort(), [...SOCKET_CODES].sort());
  });
});

describe('socket ids', () => {
  before(fresh);
  after(async () => {
    client.close();
    await server.close();
  });

  it('are echoed byte for byte, whatever JSON value they are', async () => {
    const deep = `${'['.repeat(20000)}${']'.repeat(20000)}`;
    const ids = [
      '"1"',
      '1',
      '-0.0',
      '1e999',
      '123456789012345678901234567890',
      '1.50',
      'true',
      'false',
      '{"a":[1,{"b":null}],"c":"d"}',
      '[1, 2 ,\t3]',
      '"\\u00e9\\"\\\\"',
      '"\\ud800"',
      '"é ✓ 🚗"',
      deep,
      '{}',
      '[]',
      '""',
    ];
    for (const id of ids) {
      const line = await client.call(`{"id":${id},"method":"ping"}`);
      assert.equal(line, `{"id":${id},"result":"pong"}`, id.slice(0, 40));
    }
    // id after method, spaces around it, key spelt with an escape, duplicate keys (the last counts, as in
    // JSON.parse), a member with a nested "id" before it.
    assert.equal(await client.call('{ "method" : "ping" , "id" : "z" }'), '{"id":"z","result":"pong"}');
    assert.equal(await client.call('{"\\u0069d":"esc","method":"ping"}'), '{"id":"esc","result":"pong"}');
    assert.equal(await client.call('{"id":"a","method":"ping","id":"b"}'), '{"id":"b","result":"pong"}');
    assert.equal(
      await client.call('{"params":{"id":"inner","x":["}",{"id":1}]},"id":"outer","method":"ping"}'),
      '{"id":"outer","result":"pong"}',
    );
  });

  it('a missing id is answered with id null', async () => {
    assert.equal(await client.call('{"method":"ping"}'), '{"id":null,"result":"pong"}');
    assert.equal(await client.call('{"id":null,"method":"ping"}'), '{"id":null,"result":"pong"}');
  });

  it('rawMember agrees with JSON.parse on arbitrary objects', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.jsonValue()),
        fc.jsonValue(),
        fc.boolean(),
        (obj, id, pretty) => {
          const o = { ...obj, id };
          const text = pretty ? JSON.stringify(o, null, 2) : JSON.stringify(o);
          const raw = rawMember(text, 'id');
          assert.ok(raw !== undefined);
          assert.deepEqual(JSON.parse(raw), (JSON.parse(text) as { id: unknown }).id);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('the common request read without JSON.parse', () => {
  /** Both ways on one line, each with a service and session of its own: their answers and effects. */
  async function both(line: Buffer) {
    const run = async (way: typeof handleLine) => {
      const service = new FakeService();
      const session = { subscribed: false };
      const answer = await way(line, service, session);
      return { answer, calls: service.calls, subscribed: session.subscribed };
    };
    return { quick: await run(handleLine), parsed: await run(handleParsedLine) };
  }

  const id = fc.oneof(
    fc.integer().map(String),
    fc.string({ unit: 'binary-ascii' }).map((t) => JSON.stringify(t)),
    fc.string({ unit: 'binary-ascii' }).map((t) => `"${t}"`), // may hold '"' or '\\': not always JSON
    fc.constantFrom(
      '-0',
      '01',
      '-',
      '1.5',
      '1e3',
      '-01',
      '0x1',
      'null',
      'true',
      '[1]',
      '{}',
      '""',
      '"\\u0041"',
    ),
    fc.string({ unit: 'grapheme' }).map((t) => JSON.stringify(t)),
  );
  const method = fc.oneof(
    fc.constantFrom(...METHODS, 'get_healt', 'GET_HEALTH', 'get-health', '', 'constructor', '__proto__'),
    fc.string({ unit: 'binary-ascii', maxLength: 12 }),
  );

  it('answers every line as JSON.parse would read it (random lines near the common form)', async () => {
    await fc.assert(
      fc.asyncProperty(id, method, fc.nat(40), fc.string({ maxLength: 3 }), async (i, m, cut, extra) => {
        const common = `{"id":${i},"method":"${m}"}`;
        for (const text of [common, common.slice(0, cut), `${common}${extra}`, `${extra}${common}`]) {
          const { quick, parsed } = await both(Buffer.from(text));
          assert.deepEqual(quick, parsed, text);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('and on arbitrary bytes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 60 }), async (bytes) => {
        const { quick, parsed } = await both(Buffer.from(bytes));
        assert.deepEqual(quick, parsed);
      }),
      { numRuns: 2000 },
    );
  });

  it("reads the shipping client's lines the quick way, with their ids as sent", async () => {
    for (const [line, answer] of [
      ['{"id":"7","method":"ping"}', '{"id":"7","result":"pong"}'],
      ['{"id":-0,"method":"ping"}', '{"id":-0,"result":"pong"}'],
      ['{"id":"a b!~","method":"ping"}', '{"id":"a b!~","result":"pong"}'],
      ['{"id":12,"method":"nope"}', /^\{"id":12,"error":\{"code":"UNKNOWN_METHOD"/],
    ] as const) {
      const got = handleLine(Buffer.from(line), new FakeService(), { subscribed: false });
      if (typeof answer === 'string') assert.equal(got, answer);
      else assert.match(String(got), answer);
    }
  });
});

describe('socket framing and pipelining', () => {
  beforeEach(fresh);
  after(async () => {
    client.close();
    await server.close();
  });

  it('params may be omitted, null or carry extra members; extra top-level members are ignored', async () => {
    assert.equal(await client.call('{"id":"1","method":"ping","params":null}'), '{"id":"1","result":"pong"}');
    assert.equal(
      await client.call('{"id":"2","method":"ping","params":{"x":[1]}}'),
      '{"id":"2","result":"pong"}',
    );
    assert.equal(
      await client.call(
        '{"jsonrpc":"2.0","id":"3","method":"apply_config","params":{"section":"wifi","force":1}}',
      ),
      '{"id":"3","result":{"ok":true,"changed":true,"restarted":["hostapd"]}}',
    );
  });

  it('restart_service echoes the name as sent (an alias stays an alias)', async () => {
    assert.equal(
      await client.call('{"id":"1","method":"restart_service","params":{"name":"systemd-networkd"}}'),
      '{"id":"1","result":{"ok":true,"name":"systemd-networkd"}}',
    );
  });

  it('partial lines across writes, CRLF, blank lines', async () => {
    const text =
      '{"id":"a","method":"ping"}\r\n\n   \r\n\t\n{"id":"b","method":"get_health"}\n{"id":"c","method":"ping"}\n';
    for (const byte of Buffer.from(text)) {
      client.socket.write(Buffer.from([byte]));
      await sleep(0);
    }
    const lines = await client.waitLines(3);
    assert.deepEqual(lines, [
      '{"id":"a","result":"pong"}',
      `{"id":"b","result":${HEALTH}}`,
      '{"id":"c","result":"pong"}',
    ]);
    // A trailing request: its answer comes after anything the blank lines could have caused.
    client.socket.write('{"id":"z","method":"ping"}\n');
    assert.equal(
      (await client.waitLines(4))[3],
      '{"id":"z","result":"pong"}',
      'blank lines are not answered',
    );
  });

  it('a multi-byte character split across writes', async () => {
    const buf = Buffer.from('{"id":"é🚗","method":"ping"}\n');
    const cut = buf.indexOf(0xf0) + 2; // inside the 4-byte emoji
    client.socket.write(buf.subarray(0, cut));
    await sleep(20);
    client.socket.write(buf.subarray(cut));
    assert.deepEqual(await client.waitLines(1), ['{"id":"é🚗","result":"pong"}']);
  });

  it('a line of exactly 65536 bytes is accepted, also with CRLF', async () => {
    const pad = (n: number) => {
      const head = '{"id":"big","method":"ping","pad":"';
      return `${head}${'x'.repeat(n - head.length - 2)}"}`;
    };
    assert.equal(Buffer.byteLength(pad(65536)), 65536);
    client.socket.write(`${pad(65536)}\n${pad(65536)}\r\n`);
    assert.deepEqual(await client.waitLines(2), [
      '{"id":"big","result":"pong"}',
      '{"id":"big","result":"pong"}',
    ]);
    client.socket.write(`${pad(65537)}\r\n`);
    await client.waitClosed();
    assert.match(client.lines[2] as string, /LINE_TOO_LONG/);
  });

  it('pipelined requests: fast ones answer in order, slow ones when done, ids match', async () => {
    service.delayMs = 100;
    client.socket.write(
      [
        '{"id":"1","method":"apply_config","params":{"section":"wifi"}}',
        '{"id":"2","method":"ping"}',
        '{"id":"3","method":"get_health"}',
        '{"id":"4","method":"restart_service","params":{"name":"bluetooth"}}',
        '{"id":"5","method":"nope"}',
        '',
      ].join('\n'),
    );
    const lines = await client.waitLines(5);
    const ids = lines.map((l) => (JSON.parse(l) as { id: string }).id);
    assert.deepEqual(ids.slice(0, 3), ['2', '3', '5']);
    assert.deepEqual(ids.slice(3).sort(), ['1', '4']);
  });

  it('requests before an over-long line are still answered, in-flight ones too', async () => {
    service.delayMs = 100;
    client.socket.write(
      '{"id":"1","method":"apply_config","params":{"section":"wifi"}}\n{"id":"2","method":"ping"}\n',
    );
    client.socket.write(Buffer.alloc(200_000, 0x41));
    client.socket.write('\n{"id":"3","method":"ping"}\n');
    await client.waitClosed();
    assert.deepEqual(client.lines, [
      '{"id":"2","result":"pong"}',
      '{"id":null,"error":{"code":"LINE_TOO_LONG","message":"request line longer than 65536 bytes"}}',
      '{"id":"1","result":{"ok":true,"changed":true,"restarted":["hostapd"]}}',
    ]);
  });

  it('a client that shuts down its side still gets every answer, then the end', async () => {
    service.delayMs = 100;
    // what `printf … | socat - UNIX-CONNECT:…` does: requests, the last without a newline, then EOF
    client.socket.end(
      '{"id":"1","method":"apply_config","params":{"section":"wifi"}}\n{"id":"2","method":"ping"}\n{"id":"3","method":"get_health"}',
    );
    await client.waitClosed();
    assert.deepEqual(client.lines, [
      '{"id":"2","result":"pong"}',
      `{"id":"3","result":${HEALTH}}`,
      '{"id":"1","result":{"ok":true,"changed":true,"restarted":["hostapd"]}}',
    ]);
  });

  it('other clients are unaffected by one that errs', async () => {
    const other = await LineClient.connect(path);
    client.send('garbage');
    client.send('x'.repeat(70000));
    await client.waitClosed();
    assert.equal(await other.call('{"id":"ok","method":"ping"}'), '{"id":"ok","result":"pong"}');
    other.close();
  });
});

describe('socket subscriptions', () => {
  beforeEach(fresh);
  after(async () => {
    client.close();
    await server.close();
  });

  it('subscribe answers with the current map, then delivers health_changed on every change', async () => {
    const bystander = await LineClient.connect(path);
    assert.equal(
      await client.call('{"id":"s","method":"subscribe"}'),
      `{"id":"s","result":{"ok":true,"health":${HEALTH}}}`,
    );
    service.setHealth({ hostapd: 'failed', networkd: 'active', bluetooth: 'active' });
    service.setHealth({ hostapd: 'activating', networkd: 'degraded', bluetooth: 'missing' });
    await client.waitLines(3);
    assert.deepEqual(client.lines.slice(1), [
      '{"event":"health_changed","params":{"hostapd":"failed","networkd":"active","bluetooth":"active"}}',
      '{"event":"health_changed","params":{"hostapd":"activating","networkd":"degraded","bluetooth":"missing"}}',
    ]);
    // Requests still work while subscribed, and events interleave with answers.
    assert.equal(await client.call('{"id":"p","method":"ping"}'), '{"id":"p","result":"pong"}');
    // The bystander's own answer comes after any event it could have been sent.
    assert.equal(await bystander.call('{"id":"b","method":"ping"}'), '{"id":"b","result":"pong"}');
    assert.equal(bystander.lines.length, 1, 'a connection that did not subscribe gets no events');
    bystander.close();
  });

  it('unsubscribe stops events; several subscribers each get every event', async () => {
    const second = await LineClient.connect(path);
    await client.call('{"id":"1","method":"subscribe"}');
    await second.call('{"id":"1","method":"subscribe"}');
    service.setHealth({ hostapd: 'failed', networkd: 'active', bluetooth: 'active' });
    await client.waitLines(2);
    await second.waitLines(2);
    assert.equal(await client.call('{"id":"2","method":"unsubscribe"}'), '{"id":"2","result":{"ok":true}}');
    service.setHealth({ hostapd: 'active', networkd: 'active', bluetooth: 'active' });
    await second.waitLines(3);
    await sleep(30);
    assert.equal(client.lines.length, 3);
    assert.equal(second.lines[2], `{"event":"health_changed","params":${HEALTH}}`);
    second.close();
  });

  it('close() stops listening to the service', async () => {
    await client.call('{"id":"1","method":"subscribe"}');
    assert.equal(service.listenerCount('healthChanged'), 1);
    await server.close();
    assert.equal(service.listenerCount('healthChanged'), 0);
    await client.waitClosed();
    await server.start(); // a closed server can be started again
    assert.equal(service.listenerCount('healthChanged'), 1);
  });
});
