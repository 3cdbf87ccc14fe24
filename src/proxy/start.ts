// The proxy route at start-up: adopts a route a previous instance left running (or removes one nobody
// accounts for). A failure is logged and start-up goes on: the route is an extra, not the daemon's job.
import type { Bus } from '../bus/connection.js';
import { errText, log } from '../log/journal.js';
import { restartRules, type Settings } from '../settings.js';
import type { SystemdManager } from '../systemd/manager.js';
import { ProxyRoute } from './route.js';

export async function startProxyRoute(
  bus: Bus,
  systemd: SystemdManager,
  settings: Settings,
  link: () => string,
): Promise<ProxyRoute> {
  const proxy = new ProxyRoute({
    bus,
    systemd,
    dir: settings.proxyDir,
    templates: settings.templates,
    groupFile: settings.groupFile,
    link,
    verifyMs: settings.proxyVerifyMs,
    jobTimeoutMs: settings.restartTimeoutMs,
    rules: restartRules(settings),
  });
  await proxy
    .start()
    .catch((err: unknown) =>
      log.err('adopting the proxy route failed', { error: errText(err), error_code: 'ProxyStartFailed' }),
    );
  return proxy;
}
