// Start-up's file work run once while the start-up snapshot is built (main.ts, scripts/snapshot.mjs): reading,
// validating and rendering a sample config.yaml in a temporary directory, as the applier's start does with the
// real one. V8 keeps the bytecode it compiled for it in the snapshot, so a start does not compile that code
// again in its interpreter. (Warming dbus-next's message writer and reader the same way made no measurable
// difference: not done.) Nothing outside the temporary directory is touched, and nothing is logged (the
// first log line picks the journal or stderr: that must be the start's choice, not the build's).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigApplier } from './config/applier.js';
import { defaults } from './settings.js';

const SAMPLE = `connection:
  wifi_ap: {interface: wlan0, ssid: Prodigy, password: warm-up-only, channel: 36, band: a}
  bt_name: Prodigy
  bt_discoverable: true
identity: {head_unit_name: OpenAuto Prodigy}
`;

export async function warmUp(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'openauto-warm-up-'));
  try {
    const d = defaults();
    const config = join(dir, 'config.yaml');
    await writeFile(config, SAMPLE);
    const refuse = () => Promise.reject(new Error('warm-up: no system changes'));
    const applier = new ConfigApplier({
      paths: { ...d, config, hostapdConf: join(dir, 'hostapd.conf'), networkDir: dir, stateDir: undefined },
      restartUnit: refuse,
      setAdapter: refuse,
      getTimezone: refuse,
      setTimezone: refuse,
    });
    await applier.cleanup();
    await applier.recover();
    await applier.inspect();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
