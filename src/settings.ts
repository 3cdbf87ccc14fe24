// Every path and timing the daemon uses, from flags, then environment, then defaults. Paths are settings so
// tests (and packagers) can redirect every file the daemon touches.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_AP_INTERFACE, isInterfaceName } from './config/schema.js';
import { DEFAULT_RECOVERY_SETTINGS as R, type RecoverySettings } from './health/recovery.js';
import type { RestartRules } from './proxy/state.js';

/** The installed package's root (…/openauto-system): two levels up from dist/src/ (tsc) or dist/bin/ (the bundle).
 * Read when asked, not at load: a start-up snapshot is loaded before it knows where it is installed. */
export function packageRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

export interface Settings {
  config: string;
  socket: string;
  hostapdConf: string;
  networkDir: string;
  templates: string;
  interfaceXml: string;
  zoneinfo: string;
  groupFile: string;
  /** Where an apply in progress is recorded (the unit's StateDirectory=), to finish or undo it after a crash. */
  stateDir: string;
  /** Safety-net poll of unit state (the signals do the real work). */
  pollMs: number;
  fastRetries: number;
  fastRetryMs: number;
  slowRetryMs: number;
  activatingTimeoutMs: number;
  healthyResetMs: number;
  /** Bound on a unit's restart job (RestartUnit → JobRemoved). */
  restartTimeoutMs: number;
  /** A successful recovery resets the retry counter at once (the contract); off: only 120 s healthy does. */
  resetOnRecovery: boolean;
  /** A degraded unit is repaired once it has been degraded this long (a check may lag a start). */
  degradedGraceMs: number;
  btProfiles: string[];
  socketEnabled: boolean;
  /** How often the heap's growth is checked for a collection (memory/heap-trim.ts). */
  heapTrimMs: number;
  /** The access point's interface: chosen when installing, never by config.yaml (which may only repeat it). */
  apInterface: string;
  /** Where the proxy route's files are rendered (redsocks.conf, the nft table, the route unit's environment). */
  proxyDir: string;
  /** How often the proxy route is re-verified while it is on. */
  proxyVerifyMs: number;
}

interface Option {
  key: keyof Settings;
  flag: string;
  env: string;
  kind: 'path' | 'ms' | 'count' | 'list' | 'bool' | 'ifname';
  help: string;
}

const OPTIONS: Option[] = [
  { key: 'config', flag: '--config', env: 'OPENAUTO_CONFIG', kind: 'path', help: "the app's config.yaml" },
  { key: 'socket', flag: '--socket', env: 'OPENAUTO_SOCKET', kind: 'path', help: 'legacy NDJSON socket' },
  {
    key: 'hostapdConf',
    flag: '--hostapd-conf',
    env: 'OPENAUTO_HOSTAPD_CONF',
    kind: 'path',
    help: 'hostapd.conf',
  },
  {
    key: 'networkDir',
    flag: '--network-dir',
    env: 'OPENAUTO_NETWORK_DIR',
    kind: 'path',
    help: 'directory of the .network file',
  },
  {
    key: 'templates',
    flag: '--templates',
    env: 'OPENAUTO_TEMPLATES',
    kind: 'path',
    help: 'templates directory',
  },
  {
    key: 'interfaceXml',
    flag: '--interface-xml',
    env: 'OPENAUTO_INTERFACE_XML',
    kind: 'path',
    help: 'org.openauto.System1.xml',
  },
  { key: 'zoneinfo', flag: '--zoneinfo', env: 'OPENAUTO_ZONEINFO', kind: 'path', help: 'IANA zone database' },
  {
    key: 'groupFile',
    flag: '--group-file',
    env: 'OPENAUTO_GROUP_FILE',
    kind: 'path',
    help: 'group database',
  },
  {
    key: 'stateDir',
    flag: '--state-dir',
    env: 'OPENAUTO_STATE_DIR',
    kind: 'path',
    help: 'record of an apply in progress (crash-safe rollback)',
  },
  { key: 'pollMs', flag: '--poll-ms', env: 'OPENAUTO_POLL_MS', kind: 'ms', help: 'safety-net poll interval' },
  {
    key: 'fastRetries',
    flag: '--fast-retries',
    env: 'OPENAUTO_FAST_RETRIES',
    kind: 'count',
    help: 'fast retries',
  },
  {
    key: 'fastRetryMs',
    flag: '--fast-retry-ms',
    env: 'OPENAUTO_FAST_RETRY_MS',
    kind: 'ms',
    help: 'fast retry gap',
  },
  {
    key: 'slowRetryMs',
    flag: '--slow-retry-ms',
    env: 'OPENAUTO_SLOW_RETRY_MS',
    kind: 'ms',
    help: 'slow retry gap',
  },
  {
    key: 'activatingTimeoutMs',
    flag: '--activating-timeout-ms',
    env: 'OPENAUTO_ACTIVATING_TIMEOUT_MS',
    kind: 'ms',
    help: 'activating longer than this counts as failed',
  },
  {
    key: 'healthyResetMs',
    flag: '--healthy-reset-ms',
    env: 'OPENAUTO_HEALTHY_RESET_MS',
    kind: 'ms',
    help: 'healthy this long resets the retry counter',
  },
  {
    key: 'restartTimeoutMs',
    flag: '--restart-timeout-ms',
    env: 'OPENAUTO_RESTART_TIMEOUT_MS',
    kind: 'ms',
    help: 'bound on one restart job',
  },
  {
    key: 'resetOnRecovery',
    flag: '--reset-on-recovery',
    env: 'OPENAUTO_RESET_ON_RECOVERY',
    kind: 'bool',
    help: 'a recovery resets the retry counter at once (1/0)',
  },
  {
    key: 'degradedGraceMs',
    flag: '--degraded-grace-ms',
    env: 'OPENAUTO_DEGRADED_GRACE_MS',
    kind: 'ms',
    help: 'how long a unit may be degraded before it is repaired',
  },
  {
    key: 'btProfiles',
    flag: '--bt-profiles',
    env: 'OPENAUTO_BT_PROFILES',
    kind: 'list',
    help: 'BlueZ profiles to register (aa,hfp-ag,hsp-hs)',
  },
  {
    key: 'socketEnabled',
    flag: '--socket-enabled',
    env: 'OPENAUTO_SOCKET_ENABLED',
    kind: 'bool',
    help: 'serve the legacy socket (1/0)',
  },
  {
    key: 'heapTrimMs',
    flag: '--heap-trim-ms',
    env: 'OPENAUTO_HEAP_TRIM_MS',
    kind: 'ms',
    help: 'how often a grown heap is collected',
  },
  {
    key: 'apInterface',
    flag: '--ap-interface',
    env: 'OPENAUTO_AP_INTERFACE',
    kind: 'ifname',
    help: "the access point's network interface (config.yaml may not name another)",
  },
  {
    key: 'proxyDir',
    flag: '--proxy-dir',
    env: 'OPENAUTO_PROXY_DIR',
    kind: 'path',
    help: "directory of the proxy route's rendered files",
  },
  {
    key: 'proxyVerifyMs',
    flag: '--proxy-verify-ms',
    env: 'OPENAUTO_PROXY_VERIFY_MS',
    kind: 'ms',
    help: 'how often the proxy route is re-verified while on',
  },
];

export function defaults(): Settings {
  return {
    config: '/etc/openauto/config.yaml',
    socket: '/run/openauto/system.sock',
    hostapdConf: '/etc/hostapd/hostapd.conf',
    networkDir: '/etc/systemd/network',
    templates: join(packageRoot(), 'templates'),
    interfaceXml: join(packageRoot(), 'dbus', 'org.openauto.System1.xml'),
    zoneinfo: '/usr/share/zoneinfo',
    groupFile: '/etc/group',
    stateDir: '/var/lib/openauto-system/apply',
    pollMs: 5000,
    // The repair rules' own defaults (health/recovery.ts), under the flags' names.
    fastRetries: R.fastRetries,
    fastRetryMs: R.fastRetryIntervalMs,
    slowRetryMs: R.slowRetryIntervalMs,
    activatingTimeoutMs: R.activatingTimeoutMs,
    healthyResetMs: R.healthyResetMs,
    restartTimeoutMs: 5000,
    resetOnRecovery: R.resetOnRecovery,
    degradedGraceMs: R.degradedGraceMs,
    btProfiles: ['aa', 'hfp-ag', 'hsp-hs'],
    socketEnabled: true,
    heapTrimMs: 30_000,
    apInterface: DEFAULT_AP_INTERFACE,
    proxyDir: '/run/openauto',
    proxyVerifyMs: 10_000,
  };
}

/** The installed package's version (journal, GetStatus); 'unknown' when package.json cannot be read. */
export function packageVersion(): string {
  try {
    return String(
      (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version,
    );
  } catch {
    return 'unknown';
  }
}

/** The repair rules' timings for the health monitor's trackers. */
export function recoveryRules(s: Settings): RecoverySettings {
  return {
    fastRetries: s.fastRetries,
    fastRetryIntervalMs: s.fastRetryMs,
    slowRetryIntervalMs: s.slowRetryMs,
    activatingTimeoutMs: s.activatingTimeoutMs,
    healthyResetMs: s.healthyResetMs,
    degradedGraceMs: s.degradedGraceMs,
    resetOnRecovery: s.resetOnRecovery,
  };
}

/** The same rules for the proxy route's redsocks unit. */
export function restartRules(s: Settings): RestartRules {
  const { fastRetries, fastRetryMs, slowRetryMs, healthyResetMs, resetOnRecovery } = s;
  return { fastRetries, fastRetryMs, slowRetryMs, healthyResetMs, resetOnRecovery };
}

export class UsageError extends Error {}

function parseValue(opt: Option, raw: string): Settings[keyof Settings] {
  switch (opt.kind) {
    case 'path':
      if (raw === '' || raw.includes('\0')) throw new UsageError(`${opt.flag}: needs a path`);
      return resolve(raw);
    case 'ms':
    case 'count': {
      if (!/^\d{1,9}$/.test(raw)) throw new UsageError(`${opt.flag}: needs a whole number, got '${raw}'`);
      const n = Number(raw);
      if (opt.kind === 'ms' && n < 10) throw new UsageError(`${opt.flag}: at least 10 ms`);
      return n;
    }
    case 'list':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    case 'ifname':
      if (!isInterfaceName(raw))
        throw new UsageError(`${opt.flag}: needs a network interface name like wlan0, got '${raw}'`);
      return raw;
    case 'bool':
      if (!/^(1|0|true|false|yes|no)$/.test(raw)) throw new UsageError(`${opt.flag}: needs 1 or 0`);
      return /^(1|true|yes)$/.test(raw);
  }
}

export function usage(): string {
  const lines = OPTIONS.map((o) => `  ${`${o.flag} VALUE`.padEnd(32)} ${o.help} (env ${o.env})`);
  return [
    'Usage: openauto-system [OPTIONS]',
    '',
    'The OpenAuto Prodigy system service: claims org.openauto.System on the system bus.',
    '',
    ...lines,
    `  ${'--help'.padEnd(32)} this text`,
    '',
  ].join('\n');
}

/** Flags win over environment variables, which win over defaults. Throws UsageError for bad input. */
export function parseSettings(argv: string[], env: NodeJS.ProcessEnv): Settings {
  const s = defaults() as unknown as Record<string, unknown>;
  for (const opt of OPTIONS) {
    const raw = env[opt.env];
    if (raw !== undefined && raw !== '') s[opt.key] = parseValue(opt, raw);
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: Object.fromEntries(OPTIONS.map((o) => [o.flag.slice(2), { type: 'string' as const }])),
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (see --help)`);
  }
  for (const opt of OPTIONS) {
    const value = values[opt.flag.slice(2)];
    if (typeof value === 'string') s[opt.key] = parseValue(opt, value);
  }
  return s as unknown as Settings;
}

/** The settings from the command line and environment; undefined after --help. Exits 2 on bad usage. */
export function readSettings(argv: string[], env: NodeJS.ProcessEnv): Settings | undefined {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage());
    return undefined;
  }
  try {
    return parseSettings(argv, env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`openauto-system: ${err.message}\n`);
    process.exit(2);
  }
}
