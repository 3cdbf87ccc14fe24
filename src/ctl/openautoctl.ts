#!/usr/bin/env node
// openautoctl: a small command-line client of org.openauto.System1 over D-Bus, for people at a shell and for
// scripts (--json). It needs nothing the daemon does not export to every local user, except apply/restart,
// which polkit decides.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import dbus from 'dbus-next';
import { ALLOW_INTERACTIVE_AUTHORIZATION, Bus } from '../bus/connection.js';
import { INTERFACE as IFACE, BUS_NAME as NAME, OBJECT_PATH as PATH } from '../bus/system1.js';

const USAGE = `Usage: openautoctl [--json] COMMAND
Commands:
  health            the state of hostapd, networkd and bluetooth
  status            the full status dump
  apply SECTION     apply wifi, network, bluetooth or time from config.yaml
  restart NAME      restart hostapd, networkd or bluetooth
  watch             print every HealthChanged until interrupted
  proxy on HOST PORT [--user U] --password-file F
                    route this machine's TCP traffic through the SOCKS5 proxy at HOST:PORT
                    (the password is read from the first line of F, never from the command line)
  proxy off         turn the proxy route off
  proxy status [--verify]
                    the proxy route's state (--verify: run the checks now)
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

type Options = { json?: boolean; user?: string; 'password-file'?: string; verify?: boolean };

async function main(argv: string[]): Promise<number> {
  let parsed: { values: Options & { help?: boolean }; positionals: string[] };
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        user: { type: 'string' },
        'password-file': { type: 'string' },
        verify: { type: 'boolean' },
      },
    });
  } catch (err) {
    process.stderr.write(`openautoctl: ${(err as Error).message.split('\n')[0]}\n${USAGE}`);
    return 2;
  }
  const { values: opts, positionals: args } = parsed;
  const json = opts.json === true;
  if (args.length === 0 || opts.help) {
    process.stdout.write(USAGE);
    return args.length === 0 && !opts.help ? 2 : 0;
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
      flags: ALLOW_INTERACTIVE_AUTHORIZATION,
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
        // On stderr also with --json: a script knows from it that no later HealthChanged is missed.
        console.error('watching HealthChanged (Ctrl-C to stop)');
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
          bus.onClose(resolve);
        });
        return 0;
      }
      case 'proxy':
        return await proxy(args.slice(1), opts, call);
      default:
        process.stderr.write(`openautoctl: unknown command '${cmd}'\n${USAGE}`);
        return 2;
    }
  } finally {
    bus.close();
  }
}

type Call = (member: string, signature?: string, body?: unknown[]) => Promise<{ body: unknown[] }>;

/** Prints a proxy status; exit status 0 unless the route failed (or a request was refused). */
function printProxy(s: Record<string, unknown>, json: boolean): number {
  if (json) console.log(JSON.stringify(s));
  else {
    const checks = s.checks as Record<string, boolean> | undefined;
    console.log(`state      ${String(s.state)}`);
    if (checks)
      console.log(
        `checks     ${Object.entries(checks)
          .map(([k, v]) => `${k}=${v ? 'ok' : 'FAIL'}`)
          .join(' ')}`,
      );
    if (s.error) console.log(`error      ${String(s.error)}`);
    if (s.verified_at) console.log(`verified   ${String(s.verified_at)}`);
  }
  return s.ok === false ? 1 : 0;
}

async function proxy(args: string[], opts: Options, call: Call): Promise<number> {
  const [sub, ...rest] = args;
  const json = opts.json === true;
  switch (sub) {
    case 'on': {
      const user = opts.user ?? 'oap';
      const file = opts['password-file'];
      if (!file) throw new Error('proxy on needs --password-file FILE');
      const [host, portText, ...extra] = rest;
      if (!host || !portText || extra.length > 0)
        throw new Error('usage: proxy on HOST PORT [--user U] --password-file F');
      if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new Error('PORT must be 1–65535');
      const password = (readFileSync(file, 'utf8').split('\n')[0] ?? '').replace(/\r$/, '');
      const r = await call('SetProxyRoute', 'bsqss', [true, host, Number(portText), user, password]);
      return printProxy(plain(r.body[0]) as Record<string, unknown>, json);
    }
    case 'off': {
      const r = await call('SetProxyRoute', 'bsqss', [false, '', 0, '', '']);
      return printProxy(plain(r.body[0]) as Record<string, unknown>, json);
    }
    case 'status': {
      const r = await call('GetProxyStatus', 'b', [opts.verify === true]);
      return printProxy(plain(r.body[0]) as Record<string, unknown>, json);
    }
    default:
      throw new Error('proxy needs on, off or status');
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
