// Start-up recovery of an apply a crash interrupted (ConfigApplier.recover): what stays, what is put back,
// when the unit is restarted to find out, and that the record is gone afterwards. Real files in a temp
// tree; the unit's restarts and state are fakes.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ConfigApplier } from '../../src/config/applier.js';
import { ApplyJournal, monotonicUs, sha256, type TxnRecord } from '../../src/config/transaction.js';

process.env.OPENAUTO_LOG_STDERR = '1';

const OLD = Buffer.from('ssid=Old\n');
const NEW = Buffer.from('ssid=New\n');

describe('ConfigApplier.recover', () => {
  let root: string;
  let conf: string;
  let stateDir: string;
  let restarts: number;
  let unit: { activeState: string; activeEnterMonotonicUs: bigint };
  /** Whether the unit starts with the file in place (by its content). */
  let startsWith: (content: string) => boolean;

  const applier = () =>
    new ConfigApplier({
      paths: {
        config: path.join(root, 'config.yaml'),
        hostapdConf: conf,
        networkDir: path.join(root, 'network'),
        templates: path.join(root, 'templates'),
        zoneinfo: path.join(root, 'zoneinfo'),
        groupFile: path.join(root, 'group'),
        stateDir,
      },
      restartUnit: async () => {
        restarts++;
        const ok = startsWith(await readFile(conf, 'utf8'));
        unit = { activeState: ok ? 'active' : 'failed', activeEnterMonotonicUs: monotonicUs() };
        if (!ok) throw new Error('hostapd.service restart job failed');
      },
      unitActivity: async () => unit,
      setAdapter: async () => ({ changed: false }),
      getTimezone: async () => 'UTC',
      setTimezone: async () => undefined,
    });

  const record = (phase: TxnRecord['phase'], placedAtUs?: bigint): TxnRecord => ({
    version: 1,
    section: 'wifi',
    file: conf,
    unit: 'hostapd.service',
    phase,
    previous: {
      data: OLD.toString('base64'),
      mode: 0o640,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
    },
    newSha256: sha256(NEW),
    ...(placedAtUs !== undefined ? { placedAtUs: String(placedAtUs) } : {}),
  });

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'oa-recover-'));
    conf = path.join(root, 'hostapd.conf');
    stateDir = path.join(root, 'state');
    await mkdir(stateDir);
    restarts = 0;
    startsWith = (c) => !c.includes('New');
    unit = { activeState: 'active', activeEnterMonotonicUs: 1n };
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const setup = async (inPlace: Buffer, rec: TxnRecord) => {
    await writeFile(conf, inPlace, { mode: 0o600 });
    await new ApplyJournal(stateDir).write(rec);
  };

  it('stopped before the write: nothing restarted, record removed', async () => {
    await setup(OLD, record('prepared'));
    await applier().recover();
    assert.deepEqual(await readFile(conf), OLD);
    assert.equal(restarts, 0);
    assert.deepEqual(await readdir(stateDir), []);
  });

  it('new file in place and the unit active since then: kept without a restart', async () => {
    const placed = monotonicUs();
    unit = { activeState: 'active', activeEnterMonotonicUs: placed + 1000n };
    await setup(NEW, record('written', placed));
    await applier().recover();
    assert.deepEqual(await readFile(conf), NEW);
    assert.equal(restarts, 0);
    assert.deepEqual(await readdir(stateDir), []);
  });

  it('new file in place, unit active only from before it: restarted to find out, kept when it starts', async () => {
    startsWith = () => true;
    const placed = monotonicUs();
    unit = { activeState: 'active', activeEnterMonotonicUs: placed - 1000n };
    await setup(NEW, record('written', placed));
    await applier().recover();
    assert.deepEqual(await readFile(conf), NEW);
    assert.equal(restarts, 1);
    assert.deepEqual(await readdir(stateDir), []);
  });

  it('new file the unit refuses: the previous file (content and mode) is back and the unit restarted', async () => {
    unit = { activeState: 'failed', activeEnterMonotonicUs: 1n };
    await setup(NEW, record('prepared'));
    // What it did is logged with its outcome.
    const logged: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => {
      logged.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    try {
      await applier().recover();
    } finally {
      process.stderr.write = write;
    }
    assert.ok(
      logged.some(
        (l) => /interrupted apply of wifi: previous file restored/.test(l) && /OUTCOME=rolled-back/.test(l),
      ),
      logged.join(''),
    );
    assert.deepEqual(await readFile(conf), OLD);
    assert.equal((await stat(conf)).mode & 0o777, 0o640);
    assert.equal(restarts, 2);
    assert.equal(unit.activeState, 'active');
    assert.deepEqual(await readdir(stateDir), []);
  });

  it('killed during the rollback: the previous file in place is started', async () => {
    unit = { activeState: 'activating', activeEnterMonotonicUs: 1n };
    await setup(OLD, record('restored', monotonicUs()));
    await applier().recover();
    assert.deepEqual(await readFile(conf), OLD);
    assert.equal(restarts, 1);
    assert.equal(unit.activeState, 'active');
  });

  it('a file someone else changed since is left alone', async () => {
    const theirs = Buffer.from('ssid=Theirs\n');
    await setup(theirs, record('written', monotonicUs()));
    await applier().recover();
    assert.deepEqual(await readFile(conf), theirs);
    assert.equal(restarts, 0);
    assert.deepEqual(await readdir(stateDir), []);
  });

  it('a record naming another file is ignored (nothing written there)', async () => {
    const elsewhere = path.join(root, 'elsewhere.conf');
    await writeFile(elsewhere, NEW);
    await setup(NEW, { ...record('written', monotonicUs()), file: elsewhere });
    unit = { activeState: 'failed', activeEnterMonotonicUs: 1n };
    await applier().recover();
    assert.deepEqual(await readFile(elsewhere), NEW);
    assert.equal(restarts, 0);
    assert.deepEqual(await readdir(stateDir), []);
  });

  it('an unreadable record is removed and changes nothing', async () => {
    await writeFile(conf, NEW);
    await writeFile(path.join(stateDir, 'apply-wifi.json'), '{"version": 2}');
    await applier().recover();
    assert.deepEqual(await readFile(conf), NEW);
    assert.equal(restarts, 0);
    assert.deepEqual(await readdir(stateDir), []);
  });
});

describe('a live apply keeps its record only while it runs', () => {
  it('record with the previous file during the restart, gone after success and after a rollback', async () => {
    const { FakeSystem, makeSandbox, validConfig } = await import('../fixtures/config/harness.js');
    const sb = await makeSandbox();
    try {
      const stateDir = path.join(sb.root, 'state');
      const paths = { ...sb.paths, stateDir };
      await writeFile(paths.hostapdConf, OLD);
      const sys = new FakeSystem();
      const seen: TxnRecord[] = [];
      sys.onRestart = async () => {
        const { records } = await new ApplyJournal(stateDir).pending();
        seen.push(...records);
      };
      sys.failRestart = (_unit, call) => call === 1; // the second apply's first restart fails
      const applier = new ConfigApplier(sys.deps(paths));
      await sb.writeConfig(validConfig());
      assert.equal((await applier.apply('wifi')).changed, true);
      assert.deepEqual(await readdir(stateDir), []);
      assert.equal(seen[0]?.phase, 'written');
      assert.deepEqual(Buffer.from(seen[0]?.previous?.data ?? '', 'base64'), OLD);
      const applied = await readFile(paths.hostapdConf);
      await sb.writeConfig({ ...validConfig(), wifi: { ...validConfig().wifi, ssid: 'Other' } });
      await assert.rejects(applier.apply('wifi'), /RestartFailed|failed to start/);
      assert.deepEqual(await readFile(paths.hostapdConf), applied, 'rolled back');
      assert.deepEqual(
        seen.slice(1).map((r) => r.phase),
        ['written', 'restored'],
      );
      assert.deepEqual(await readdir(stateDir), []);
      assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
    } finally {
      await sb.cleanup();
    }
  });
});
