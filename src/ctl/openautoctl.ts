#!/usr/bin/env node
// openautoctl: a small command-line client of org.openauto.System1 over D-Bus, for people at a shell and for
// scripts (--json). It needs nothing the daemon does not export to every local user, except apply/restart,
// which polkit decides.
import dbus from 'dbus-next';
import { Bus } from '../bus/connection.js';

const NAME = 'org.openauto.System';
const PATH = '/org/openauto/System';
const IFACE = 'org.openauto.System1';

const USAGE = `Usage: openautoctl [--json] COMMAND
Commands:
  health            the state of hostapd, networkd and bluetooth
  status            the full status dump
  apply SECTION     apply wifi, network, bluetooth or time from config.yaml
  restart NAME      restart hostapd, networkd or bluetooth
  watch             print every HealthChanged until interrupted
Options:
  --json            machine-readable output (one JSON document; one per line for watch)
  --help            this text
`;

/** D-Bus values (variants, BigInt) → plain JSON. */
function plain(v: unknown): unknown {
  if (v instanceof dbus.Variant) return plain(v.value);
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

function printHealth(h: Record<string, string>): void {
  for (const [k, v] of Object.entries(h)) console.log(`${k.padEnd(10)} ${v}`);
}

function printTree(v: unknown, indent = ''): void {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (x && typeof x === 'object' && !Array.isArray(x)) {
        console.log(`${indent}${k}:`);
        printTree(x, `${indent}  `);
      } else console.log(`${indent}${k}: ${Array.isArray(x) ? x.join(', ') : String(x)}`);
    }
  }
}

async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const args = argv.filter((a) => a !== '--json');
  if (args.length === 0 || args.includes('--help') || args.includes('-h')) {
    process.stdout.write(USAGE);
    return args.length === 0 ? 2 : 0;
  }
  const [cmd, arg] = args;
  const bus = await Bus.connect();
  const call = (member: string, signature = '', body: unknown[] = []) =>
    bus.call({
      destination: NAME,
      path: PATH,
      interface: IFACE,
      member,
      signature,
      body,
      // apply and restart wait for systemd jobs and maybe for a password prompt.
      timeoutMs: 90_000,
      flags: 0x4,
    });
  try {
    switch (cmd) {
      case 'health': {
        const h = plain((await call('GetHealth')).body[0]) as Record<string, string>;
        if (json) console.log(JSON.stringify(h));
        else printHealth(h);
        return Object.values(h).every((s) => s === 'active') ? 0 : 1;
      }
      case 'status': {
        const s = plain((await call('GetStatus')).body[0]);
        if (json) console.log(JSON.stringify(s, null, 2));
        else printTree(s);
        return 0;
      }
      case 'apply': {
        if (!arg) throw new Error('apply needs a SECTION (wifi, network, bluetooth, time)');
        const [changed, restarted] = (await call('ApplyConfig', 's', [arg])).body as [boolean, string[]];
        if (json) console.log(JSON.stringify({ changed, restarted }));
        else
          console.log(
            changed ? `applied ${arg}; restarted: ${restarted.join(', ') || 'nothing'}` : `${arg}: unchanged`,
          );
        return 0;
      }
      case 'restart': {
        if (!arg) throw new Error('restart needs a NAME (hostapd, networkd, bluetooth)');
        await call('RestartService', 's', [arg]);
        if (json) console.log(JSON.stringify({ ok: true, name: arg }));
        else console.log(`restarted ${arg}`);
        return 0;
      }
      case 'watch': {
        const rule = `type='signal',sender='${NAME}',path='${PATH}',interface='${IFACE}',member='HealthChanged'`;
        bus.onSignal({ sender: NAME, interface: IFACE, member: 'HealthChanged', path: PATH }, (msg) => {
          const h = plain(msg.body[0]) as Record<string, string>;
          if (json) console.log(JSON.stringify({ time: new Date().toISOString(), health: h }));
          else
            console.log(
              `${new Date().toISOString()} ${Object.entries(h)
                .map(([k, v]) => `${k}=${v}`)
                .join(' ')}`,
            );
        });
        await bus.trackOwner(NAME);
        await bus.addMatch(rule);
        if (!json) console.error('watching HealthChanged (Ctrl-C to stop)');
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
          bus.onClose(resolve);
        });
        return 0;
      }
      default:
        process.stderr.write(`openautoctl: unknown command '${cmd}'\n${USAGE}`);
        return 2;
    }
  } finally {
    bus.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const text =
      err instanceof dbus.DBusError
        ? `${err.type}: ${err.text}`
        : err instanceof Error
          ? err.message
          : String(err);
    process.stderr.write(`openautoctl: ${text}\n`);
    process.exitCode = 1;
  },
);
