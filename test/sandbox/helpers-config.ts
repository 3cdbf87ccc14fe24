// Helpers for the config applier's sandbox tests (config.test.ts): writing the app's config.yaml, calling
// ApplyConfig through every face (busctl, openautoctl, the legacy socket from inside and from the host),
// and looking at files, units and the daemon's process from outside the container.
import { constants } from 'node:fs';
import { chown, open, readdir, readFile, readlink, rename, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { APP_CONFIG, APP_USER, BUS_NAME, INTERFACE, OBJECT_PATH, type Sandbox } from './harness.js';

/** The config.yaml the shipping app writes (its older layout), with a valid WPA2 passphrase. */
export const SHIPPING_APP_YAML = `connection:
  wifi_ap: {interface: wlan0, ssid: Prodigy_3fa9, password: q7GkL2xPz9RbT4mW, channel: 36, band: a}
  bt_name: Prodigy_3fa9
  bt_discoverable: true
  tcp_port: 5277
identity: {head_unit_name: OpenAuto Prodigy}
`;

export const HOSTAPD_CONF = '/etc/hostapd/hostapd.conf';
export const NETWORK_FILE = '/etc/systemd/network/10-openauto-ap.network';
export const HOSTAPD_ENV = '/etc/openauto-sandbox/hostapd.env';
export const HOSTAPD_STARTS = '/run/openauto-sandbox/hostapd.starts';
export const SOCKET = '/run/openauto/system.sock';
/** Names of the applier's temp files (see src/config/atomic.ts). */
export const TEMP_FILE = /\.openauto-tmp-/;

/** The shipping app's file plus canonical sections (YAML text appended as is). */
export function appConfig(extra = ''): string {
  return SHIPPING_APP_YAML + extra;
}

/**
 * Replaces the app user's config.yaml (as the app would: new file, then rename), keeping its owner and mode
 * 0600. Written from the host side, so it costs no process in the container.
 */
export async function writeAppConfig(sb: Sandbox, text: string): Promise<void> {
  const target = join(sb.root, APP_CONFIG);
  const st = await stat(target);
  const tmp = join(sb.root, `${APP_CONFIG}.test-tmp`);
  await writeFile(tmp, text, { mode: 0o600 });
  await chown(tmp, st.uid, st.gid);
  await rename(tmp, target);
}

/** What an ApplyConfig call came back with. */
export type ApplyOutcome =
  | { ok: true; changed: boolean; restarted: string[] }
  | { ok: false; error: string; message: string };

/** `openautoctl --json apply SECTION` as `user`: the result, or the D-Bus error name and message. */
export async function applyCtl(sb: Sandbox, section: string, user = 'root'): Promise<ApplyOutcome> {
  const r = await sb.exec(['openautoctl', '--json', 'apply', section], { user, timeoutMs: 60_000 });
  if (r.code === 0) {
    const j = JSON.parse(r.stdout.trim()) as { changed: boolean; restarted: string[] };
    return { ok: true, changed: j.changed, restarted: j.restarted };
  }
  // openautoctl prints "openautoctl: <error name>: <message>".
  const m = /^openautoctl: ([A-Za-z0-9_.]+): ([\s\S]*)$/.exec(r.stderr.trim());
  if (!m)
    throw new Error(`openautoctl apply ${section} exited ${r.code ?? r.signal}: ${r.stderr}${r.stdout}`);
  return { ok: false, error: m[1] as string, message: (m[2] as string).trim() };
}

/** `busctl call org.openauto.System /org/openauto/System org.openauto.System1 ApplyConfig s SECTION`.
 * busctl prints only the error's message, so `error` is '' on failure. */
export async function applyBusctl(sb: Sandbox, section: string, user = 'root'): Promise<ApplyOutcome> {
  const r = await sb.busctl(
    ['--json=short', '--timeout=60', 'call', BUS_NAME, OBJECT_PATH, INTERFACE, 'ApplyConfig', 's', section],
    { user, timeoutMs: 60_000 },
  );
  if (r.code === 0) {
    const { data } = JSON.parse(r.stdout.trim()) as { data: [boolean, string[]] };
    return { ok: true, changed: data[0], restarted: data[1] };
  }
  return { ok: false, error: '', message: r.stderr.trim().replace(/^Call failed: /, '') };
}

/** A small NDJSON client run inside the container (as `user`): sends one request line read from stdin and
 * prints the first answer line. */
const SOCKET_CLIENT = String.raw`
const net = require('node:net');
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  const c = net.connect(process.argv[1]);
  let buf = '';
  c.on('data', (d) => {
    buf += d;
    const i = buf.indexOf('\n');
    if (i >= 0) {
      process.stdout.write(buf.slice(0, i) + '\n');
      c.destroy();
    }
  });
  c.on('error', (e) => {
    process.stderr.write('socket error ' + (e.code || e.message) + '\n');
    process.exit(3);
  });
  c.on('end', () => { if (buf.indexOf('\n') < 0) { process.stderr.write('closed without an answer\n'); process.exit(4); } });
  c.write(input.trim() + '\n');
});
`;

/** Sends one request over /run/openauto/system.sock from inside the container as `user`; the parsed answer. */
export async function socketCall(
  sb: Sandbox,
  request: Record<string, unknown>,
  user: string = APP_USER,
): Promise<Record<string, unknown>> {
  const r = await sb.exec(['node', '-e', SOCKET_CLIENT, SOCKET], {
    user,
    input: JSON.stringify(request),
    timeoutMs: 60_000,
  });
  if (r.code !== 0) throw new Error(`socket client exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout.trim()) as Record<string, unknown>;
}

/** The answer to one NDJSON request sent from the host through the container's socket, or how it ended. */
export type HostSocketResult =
  | { kind: 'answer'; answer: Record<string, unknown> }
  | { kind: 'closed' }
  | { kind: 'error'; code: string }
  | { kind: 'timeout' };

/** One request over the container's socket, straight from the host (no process started in the container):
 * the test controls the timing to the millisecond. */
export function hostSocketCall(
  sb: Sandbox,
  request: Record<string, unknown>,
  timeoutMs: number,
): Promise<HostSocketResult> {
  return new Promise((resolve) => {
    const c = net.connect(join(sb.root, SOCKET));
    let buf = '';
    let done = false;
    const finish = (r: HostSocketResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      c.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    c.on('connect', () => c.write(`${JSON.stringify(request)}\n`));
    c.on('data', (d) => {
      buf += d.toString('utf8');
      const i = buf.indexOf('\n');
      if (i >= 0) finish({ kind: 'answer', answer: JSON.parse(buf.slice(0, i)) as Record<string, unknown> });
    });
    c.on('error', (e: NodeJS.ErrnoException) => finish({ kind: 'error', code: e.code ?? e.message }));
    c.on('close', () => finish({ kind: 'closed' }));
  });
}

/** Waits until the daemon answers `ping` on its socket (it opens the socket only after its start-up
 * housekeeping, temp-file cleaning included, and its first health check). */
export async function waitSocketReady(sb: Sandbox, timeoutMs = 20_000): Promise<void> {
  await sb.waitFor(
    async () => {
      const r = await hostSocketCall(sb, { id: 'ready', method: 'ping' }, 1000);
      return r.kind === 'answer' && r.answer.result === 'pong';
    },
    timeoutMs,
    20,
  );
}

/** `systemctl show -P PROP UNIT`. */
export async function unitProp(sb: Sandbox, unit: string, prop: string): Promise<string> {
  return (await sb.execOk(['systemctl', 'show', '-P', prop, unit])).trim();
}

/** The moments that show whether a unit was (re)started. */
export async function unitStamp(sb: Sandbox, unit: string): Promise<{ enter: string; pid: string }> {
  const out = await sb.execOk([
    'systemctl',
    'show',
    '-p',
    'ActiveEnterTimestampMonotonic',
    '-p',
    'MainPID',
    unit,
  ]);
  const get = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(out)?.[1] ?? '';
  return { enter: get('ActiveEnterTimestampMonotonic'), pid: get('MainPID') };
}

/** How many times the hostapd stand-in has been started since boot. */
export async function hostapdStarts(sb: Sandbox): Promise<number> {
  try {
    return (await sb.readFile(HOSTAPD_STARTS)).split('\n').filter((l) => l.trim() !== '').length;
  } catch {
    return 0;
  }
}

/** Bytes of a file in the container. */
export function readBytes(sb: Sandbox, path: string): Promise<Buffer> {
  return readFile(join(sb.root, path));
}

/** `stat -c '%a %U %G %i'` of a file in the container: mode, owner, group (names as the container knows
 * them), inode. */
export async function statInside(
  sb: Sandbox,
  path: string,
): Promise<{ mode: string; owner: string; group: string; inode: string }> {
  const [mode = '', owner = '', group = '', inode = ''] = (
    await sb.execOk(['stat', '-c', '%a %U %G %i', path])
  )
    .trim()
    .split(' ');
  return { mode, owner, group, inode };
}

/** The applier's temp files in a directory of the container. */
export async function tempFiles(sb: Sandbox, dir: string): Promise<string[]> {
  return (await readdir(join(sb.root, dir))).filter((n) => TEMP_FILE.test(n));
}

/** IPv4 addresses (with prefix) of an interface in the container. */
export async function ipv4(sb: Sandbox, iface: string): Promise<string[]> {
  const out = await sb.execOk(['ip', '-4', '-o', 'addr', 'show', 'dev', iface]);
  return [...out.matchAll(/\binet (\d+\.\d+\.\d+\.\d+\/\d+)/g)].map((m) => m[1] as string);
}

/** A property of BlueZ's hci0 Adapter1, as busctl's JSON gives it. */
export async function adapterProp(sb: Sandbox, prop: string): Promise<unknown> {
  const out = await sb.execOk([
    'busctl',
    '--json=short',
    'get-property',
    'org.bluez',
    '/org/bluez/hci0',
    'org.bluez.Adapter1',
    prop,
  ]);
  return (JSON.parse(out.trim()) as { data: unknown }).data;
}

/** GetHealth as a plain map. */
export async function health(sb: Sandbox): Promise<Record<string, string>> {
  const data = await sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'GetHealth');
  return data[0] as Record<string, string>;
}

/** Host PIDs of the daemon's node process in this container (normally exactly one). */
export async function daemonHostPids(sb: Sandbox): Promise<number[]> {
  const ns = await readlink(`/proc/${sb.leader}/ns/pid`);
  const pids: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if ((await readlink(`/proc/${e}/ns/pid`)) !== ns) continue;
      const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8');
      if (cmd.split('\0').includes('/usr/lib/openauto-system/dist/bin/openauto-system.js'))
        pids.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Whether a host process still runs (a zombie counts as gone). */
export async function processAlive(pid: number): Promise<boolean> {
  try {
    const s = await readFile(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** One look at a file as a reader (hostapd, the app) would see it: content and the mode/group of that very
 * inode (fstat on the opened descriptor, so content and metadata belong together). */
export async function readerView(
  hostPath: string,
): Promise<{ data: Buffer; mode: number; gid: number } | { missing: true }> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(hostPath, constants.O_RDONLY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { missing: true };
    throw err;
  }
  try {
    const st = await fh.stat();
    return { data: await fh.readFile(), mode: st.mode & 0o7777, gid: st.gid };
  } finally {
    await fh.close();
  }
}

/** gid of a group in the container's /etc/group. */
export async function groupId(sb: Sandbox, name: string): Promise<number> {
  const line = (await sb.readFile('/etc/group')).split('\n').find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no group ${name}`);
  return Number(line.split(':')[2]);
}

export { prng, sleep } from '../helpers/common.js';
