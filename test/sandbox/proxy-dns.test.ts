// The proxy route's DNS against the real systemd-resolved. The sandbox boots without resolved (the host has
// none: installing it there would replace the host's /etc/resolv.conf), so this test fetches Debian's
// systemd-resolved package of exactly the host's systemd version (`apt-get download`, nothing installed on
// the host), installs it with dpkg INSIDE the container (the writes go to the container's in-memory
// overlay) and starts it there. wlan0 is managed by systemd-networkd, as on the device. A "phone" network
// namespace on the far end of wlan0 runs a real SOCKS5 server (microsocks), so the route really comes up.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { APP_USER, daemonBuilt, Sandbox, sandboxUnavailable } from './harness.js';
import { SOCKET_LINES_CLIENT } from './helpers-socket.js';

const skip = sandboxUnavailable() ?? (daemonBuilt ? undefined : 'the daemon is not built (npm run build)');

const PHONE = '10.0.0.31';
const PASSWORD = 'Dns-Ph0ne-9931';
/** The daemon's check interval here (--proxy-verify-ms; 10 s by default). */
const VERIFY_MS = 2000;

interface Status {
  ok: boolean;
  state: string;
  checks: { listener: boolean; iptables: boolean; upstream: boolean };
  error: string | null;
}

/**
 * Debian's systemd-resolved .deb of the host's systemd version (the container boots the host's systemd; a
 * resolved of another version may not run with its libsystemd-shared). Downloaded, never installed here.
 */
function downloadResolved(): { deb: Buffer; version: string } {
  // `dpkg-query -W NAME` prints "NAME<tab>VERSION".
  const q = spawnSync('dpkg-query', ['-W', 'systemd'], { encoding: 'utf8' });
  const version = q.stdout.trim().split('\t')[1] ?? '';
  if (q.status !== 0 || version === '')
    throw new Error(`cannot read the host's systemd version: ${q.stderr}`);
  const dir = mkdtempSync(join(tmpdir(), 'openauto-resolved-'));
  try {
    const download = () =>
      spawnSync('apt-get', ['download', '-q', `systemd-resolved=${version}`], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 120_000,
      });
    let r = download();
    if (r.status !== 0) {
      // Package lists absent or older than the installed systemd: refresh them once (as deps.sh does).
      spawnSync('apt-get', ['update', '-qq'], { encoding: 'utf8', timeout: 300_000 });
      r = download();
    }
    const file = readdirSync(dir).find((f) => f.endsWith('.deb'));
    if (r.status !== 0 || file === undefined)
      throw new Error(`apt-get download systemd-resolved=${version} failed: ${r.stderr}${r.stdout}`);
    return { deb: readFileSync(join(dir, file)), version };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('proxy route DNS through the real systemd-resolved', { skip }, () => {
  let sb: Sandbox;

  const socketLines = async (...requests: unknown[]): Promise<string[]> =>
    (
      await sb.execOk(['node', '-e', SOCKET_LINES_CLIENT, ...requests.map((r) => JSON.stringify(r))], {
        user: APP_USER,
        timeoutMs: 30_000,
      })
    )
      .trim()
      .split('\n');
  const setRoute = async (params: Record<string, unknown>): Promise<Status> => {
    const [line] = await socketLines({ id: '1', method: 'set_proxy_route', params });
    return (JSON.parse(line ?? '') as { result: Status }).result;
  };
  const on = () => setRoute({ active: true, host: PHONE, port: 1080, user: 'oap', password: PASSWORD });
  const off = () => setRoute({ active: false });
  /** What `resolvectl dns wlan0` / `resolvectl domain wlan0` print after "Link N (wlan0):". */
  const resolvectl = async (verb: 'dns' | 'domain') =>
    (await sb.execOk(['resolvectl', verb, 'wlan0'])).replace(/^Link \d+ \(wlan0\):/, '').trim();
  /** The Link's DNS property as resolved exports it on D-Bus (a(iay): family, address bytes). */
  const linkDns = async (): Promise<string> => {
    const index = (await sb.execOk(['cat', '/sys/class/net/wlan0/ifindex'])).trim();
    const [linkPath] = (await sb.call(
      'org.freedesktop.resolve1',
      '/org/freedesktop/resolve1',
      'org.freedesktop.resolve1.Manager',
      'GetLink',
      ['i', index],
    )) as string[];
    const r = await sb.busctl([
      'get-property',
      'org.freedesktop.resolve1',
      String(linkPath),
      'org.freedesktop.resolve1.Link',
      'DNS',
    ]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  const daemonLog = async (message: string) =>
    (await sb.journal('openauto-system', { match: { MESSAGE: message } })).map((e) => ({
      error: e.ERROR,
      link: e.LINK,
    }));

  before(async () => {
    const { deb, version } = downloadResolved();
    sb = await Sandbox.start({ name: 'proxydns', env: { OPENAUTO_PROXY_VERIFY_MS: VERIFY_MS } });
    await sb.waitFor(async () => (await sb.unitState('openauto-system.service')) === 'active', 15_000);
    // The phone: wlan0's peer in its own namespace with a SOCKS5 server, so the route comes up "active".
    await sb.execOk([
      'sh',
      '-c',
      [
        'ip netns add phone',
        'ip link set wlan0-peer netns phone',
        `ip -n phone addr add ${PHONE}/24 dev wlan0-peer`,
        'ip -n phone link set wlan0-peer up',
        'ip -n phone link set lo up',
      ].join(' && '),
    ]);
    await sb.execOk([
      'systemd-run',
      '--unit=phone-socks',
      '-p',
      'NetworkNamespacePath=/run/netns/phone',
      '/usr/bin/microsocks',
      '-i',
      PHONE,
      '-p',
      '1080',
      '-u',
      'oap',
      '-P',
      PASSWORD,
    ]);
    // resolved: the sandbox masks it (boot speed); unmask, install the package, start it.
    await sb.writeFile('/tmp/systemd-resolved.deb', deb);
    await sb.execOk(['rm', '-f', '/etc/systemd/system/systemd-resolved.service']);
    await sb.execOk(['systemctl', 'daemon-reload']);
    await sb.execOk(['dpkg', '-i', '/tmp/systemd-resolved.deb'], { timeoutMs: 120_000 });
    assert.equal(
      (await sb.execOk(['dpkg-query', '-W', 'systemd-resolved'])).trim().split('\t')[1],
      version,
      'resolved is the version of the systemd the container boots',
    );
    await sb.execOk(['systemctl', 'start', 'systemd-resolved.service']);
    // wlan0 is networkd's, as on the device; resolved knows it and it has no DNS of its own.
    await sb.waitFor(async () => /wlan0\s+ether\s+\S+\s+configured/.test(await sb.execOk(['networkctl'])));
    assert.equal(await resolvectl('dns'), '');
    assert.equal(await resolvectl('domain'), '');
  });
  after(async () => {
    await sb?.stop();
  });

  it('set_proxy_route active → resolved has 1.1.1.1 and the routing domain ~. on wlan0', async () => {
    const r = await on();
    assert.equal(r.state, 'active', JSON.stringify(r));
    assert.equal(await resolvectl('dns'), '1.1.1.1');
    assert.equal(await resolvectl('domain'), '~.');
    assert.equal(await linkDns(), 'a(iay) 1 2 4 1 1 1 1');
    assert.deepEqual(await daemonLog('setting the AP link DNS through systemd-resolved failed'), []);
  });

  it('the daemon restarted with the route on: the DNS stays; lost while it was down, it is set again', async () => {
    await sb.execOk(['systemctl', 'restart', 'openauto-system.service']);
    assert.equal(await resolvectl('dns'), '1.1.1.1');
    assert.equal(await resolvectl('domain'), '~.');
    await sb.execOk(['systemctl', 'stop', 'openauto-system.service']);
    await sb.execOk(['resolvectl', 'revert', 'wlan0']);
    assert.equal(await resolvectl('dns'), '');
    await sb.execOk(['systemctl', 'start', 'openauto-system.service']);
    // Adopted: the route is still on, and its DNS is back.
    await sb.waitFor(async () => (await resolvectl('dns')) === '1.1.1.1', 10_000);
    assert.equal(await resolvectl('domain'), '~.');
    const [line] = await socketLines({ id: 's', method: 'get_proxy_status', params: { verify: true } });
    assert.equal((JSON.parse(line ?? '') as { result: Status }).result.state, 'active');
  });

  it('networkd restarted with the route on (it forgets the link DNS): set again within the verify interval', async () => {
    // networkd drops what it was given over D-Bus when it restarts or reconfigures the link; the daemon's
    // own repairs and config applies do both.
    const lost = 'the AP link lost its DNS while the proxy route is on: setting it again';
    // While resolved has it, the checks leave it alone.
    await new Promise((r) => setTimeout(r, 2 * VERIFY_MS + 500));
    assert.equal((await daemonLog(lost)).length, 0, 'set again although resolved had it');
    await sb.execOk(['systemctl', 'restart', 'systemd-networkd.service']);
    await sb.waitFor(async () => (await resolvectl('dns')) === '', 5_000, 50);
    const t0 = Date.now();
    await sb.waitFor(async () => (await resolvectl('dns')) === '1.1.1.1', 2 * VERIFY_MS + 5_000, 200);
    console.log(`# networkd restarted → the AP link's DNS set again after ${Date.now() - t0} ms`);
    assert.equal(await resolvectl('domain'), '~.');
    await new Promise((r) => setTimeout(r, 2 * VERIFY_MS + 500));
    assert.deepEqual(await daemonLog(lost), [{ error: undefined, link: 'wlan0' }], 'set again once');
  });

  it('active:false → reverted: resolvectl dns wlan0 and domain are empty again', async () => {
    const r = await off();
    assert.equal(r.state, 'disabled', JSON.stringify(r));
    assert.equal(await resolvectl('dns'), '');
    assert.equal(await resolvectl('domain'), '');
    assert.equal(await linkDns(), 'a(iay) 0');
    assert.deepEqual(await daemonLog('setting the AP link DNS through systemd-resolved failed'), []);
  });

  it('resolved stopped: the route still comes up, DNS skipped and logged; resolved started: DNS set', async () => {
    await sb.execOk(['systemctl', 'stop', 'systemd-resolved.service']);
    const r = await on();
    assert.equal(r.state, 'active', JSON.stringify(r));
    assert.deepEqual(await daemonLog('systemd-resolved is not running: the AP link DNS is left alone'), [
      { error: undefined, link: 'wlan0' },
    ]);
    assert.equal(await sb.unitState('systemd-resolved.service'), 'inactive', 'not started by the daemon');
    // resolved comes up while the route is on: the next check gives the link its DNS.
    await sb.execOk(['systemctl', 'start', 'systemd-resolved.service']);
    await sb.waitFor(async () => (await resolvectl('dns')) === '1.1.1.1', 2 * VERIFY_MS + 5_000, 200);
    assert.equal(await resolvectl('domain'), '~.');
    assert.equal((await off()).state, 'disabled');
    assert.equal(await resolvectl('dns'), '');
    assert.equal(await resolvectl('domain'), '');
  });
});
