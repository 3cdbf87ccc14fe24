// A private dbus-daemon for unit tests of bus-level code (unix fd passing, BlueZ profiles): permissive
// policy, its own socket in a temporary directory, stopped by the test. The daemon's Bus.connect() talks to
// it through DBUS_SYSTEM_BUS_ADDRESS.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DBUS_DAEMON = '/usr/bin/dbus-daemon';

/** Why private-bus tests cannot run here, or undefined. */
export function privateBusUnavailable(): string | undefined {
  return existsSync(DBUS_DAEMON) ? undefined : 'dbus-daemon is not installed';
}

export interface PrivateBus {
  address: string;
  dir: string;
  stop(): Promise<void>;
}

export async function startPrivateBus(): Promise<PrivateBus> {
  const dir = mkdtempSync(join(tmpdir(), 'oa-bluez-bus-'));
  const socket = join(dir, 'bus');
  const config = join(dir, 'bus.conf');
  writeFileSync(
    config,
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <limit name="max_replies_per_connection">100000</limit>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`,
  );
  const child: ChildProcess = spawn(DBUS_DAEMON, ['--config-file', config, '--nofork', '--print-address=1'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('dbus-daemon did not start')), 5000);
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        clearTimeout(timer);
        resolve(line.trim());
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`dbus-daemon exited with ${code}`));
    });
  });
  return {
    address,
    dir,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
