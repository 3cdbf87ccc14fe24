// Rendering the proxy route's three files from templates/ with the shared template engine: the redsocks
// configuration (holds the password), the nftables table and the route unit's environment. Every value was
// validated by request.ts; here each is checked once more against its syntax's allow-list right before it is
// placed, so a future rule change cannot open an injection into redsocks' or nft's language.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { renderTemplate, type TemplateVars } from '../config/render.js';
import { ServiceError } from '../errors.js';
import { isIpv4, type ProxyConfig } from './request.js';

export const REDSOCKS_TEMPLATE = 'redsocks.conf.tmpl';
export const NFT_TEMPLATE = 'openauto-proxy-route.nft.tmpl';
export const ENV_TEMPLATE = 'openauto-proxy-route.env.tmpl';

/** Where redsocks listens (the redirect's target); loopback only. */
export const LISTEN_PORT = 12345;
/** The default route's metric over the AP link: high, so any other uplink (a wired one at home) wins. */
export const ROUTE_METRIC = 4242;

const SAFE_CREDENTIAL = /^[\x20-\x21\x23-\x3a\x3c-\x5b\x5d-\x7a\x7c\x7e]{1,255}$/;
const SAFE_IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const SAFE_NETWORK = /^[0-9.]{7,15}\/[0-9]{1,2}$/;

function refuse(field: string): never {
  throw new ServiceError('InvalidArgs', `${field}: refused at render time (unsafe characters)`);
}

function checked(c: ProxyConfig): ProxyConfig {
  if (!isIpv4(c.host)) refuse('host');
  if (!Number.isInteger(c.port) || c.port < 1 || c.port > 65535) refuse('port');
  // A lone "=" is redsocks' own '=' to its parser, quoted or not.
  if (!SAFE_CREDENTIAL.test(c.user) || c.user === '=') refuse('user');
  if (!SAFE_CREDENTIAL.test(c.password) || c.password === '=') refuse('password');
  if (c.skip_interfaces.some((i) => !SAFE_IFNAME.test(i))) refuse('skip_interfaces');
  if (c.skip_networks.some((n) => !SAFE_NETWORK.test(n))) refuse('skip_networks');
  return c;
}

export function redsocksVars(config: ProxyConfig): TemplateVars {
  const c = checked(config);
  return { listen_port: LISTEN_PORT, host: c.host, port: c.port, user: c.user, password: c.password };
}

export function nftVars(config: ProxyConfig): TemplateVars {
  const c = checked(config);
  // An empty set is not valid nft syntax: the loopback interface and network are always kept direct anyway
  // (the redirect's own target and the daemon's listener check live there).
  const ifaces = [...new Set(['lo', ...c.skip_interfaces])];
  const nets = [...new Set(['127.0.0.0/8', ...c.skip_networks])];
  return {
    host: c.host,
    port: c.port,
    listen_port: LISTEN_PORT,
    skip_interfaces: ifaces.map((i) => `"${i}"`).join(', '),
    skip_networks: nets.join(', '),
  };
}

export function envVars(link: string): TemplateVars {
  if (!SAFE_IFNAME.test(link)) refuse('link');
  return { link, metric: ROUTE_METRIC };
}

export interface RenderedRoute {
  redsocks: string;
  nft: string;
  env: string;
}

/** Renders all three files in memory (nothing is written if any of them fails). */
export async function renderRoute(
  templatesDir: string,
  c: ProxyConfig,
  link: string,
): Promise<RenderedRoute> {
  const load = (name: string) => readFile(path.join(templatesDir, name), 'utf8');
  const [r, n, e] = await Promise.all([load(REDSOCKS_TEMPLATE), load(NFT_TEMPLATE), load(ENV_TEMPLATE)]);
  return {
    redsocks: renderTemplate(r, redsocksVars(c), REDSOCKS_TEMPLATE),
    nft: renderTemplate(n, nftVars(c), NFT_TEMPLATE),
    env: renderTemplate(e, envVars(link), ENV_TEMPLATE),
  };
}
