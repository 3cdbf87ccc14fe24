// The org.openauto.System1 face: a declarative table of handlers, one per member of
// dbus/org.openauto.System1.xml. Each handler reads its arguments, lets the service layer validate,
// authorize, apply and reply; errors are mapped to the contract's D-Bus error names, so no JavaScript
// stack, path or file content ever reaches a caller.
import { readFileSync } from 'node:fs';
import dbus from 'dbus-next';
import { DBUS_ERROR_NAMES, ServiceError, toServiceError } from '../errors.js';
import type { HealthMap } from '../health/states.js';
import { errText, log } from '../log/journal.js';
import type { Caller, Json, ProxyReply, SystemService } from '../service.js';
import { ALLOW_INTERACTIVE_AUTHORIZATION, type Bus, type DBusMessage, errorReply } from './connection.js';
import { type InterfaceSpec, interfaceElement, parseInterface, toXml2js } from './introspection.js';
import { BUSY_MESSAGE } from './polkit.js';
import { RawReplies } from './raw-reply.js';
import { HealthReplyCache, StatusReplyCache } from './reply-cache.js';
import { toVariantDict } from './variant.js';

export const BUS_NAME = 'org.openauto.System';
export const OBJECT_PATH = '/org/openauto/System';
export const INTERFACE = 'org.openauto.System1';

/** Who called the method being dispatched right now; recorded synchronously just before dispatch. */
interface CallContext {
  sender: string;
  interactive: boolean;
}

type Handler = (ctx: CallContext, ...args: unknown[]) => unknown;

/** One entry per method of the XML. */
function methodHandlers(service: SystemService): Record<string, Handler> {
  return {
    GetHealth: () => service.getHealth(),
    GetStatus: () => toVariantDict(service.getStatus()),
    RestartService: async (ctx, name) => {
      await service.restartService(String(name), dbusCaller(ctx));
    },
    ApplyConfig: async (ctx, section) => {
      const r = await service.applyConfig(String(section), dbusCaller(ctx));
      return [r.changed, r.restarted];
    },
    ClaimProfile: async (ctx, uuid, handler) => {
      await service.claimProfile(String(uuid), String(handler), dbusCaller(ctx));
    },
    ReleaseProfile: async (ctx, uuid) => {
      await service.releaseProfile(String(uuid), dbusCaller(ctx));
    },
    SetProxyRoute: async (ctx, active, host, port, user, password) => {
      if (!service.setProxyRoute)
        throw new ServiceError('InvalidArgs', 'the proxy route is not managed here');
      const params = { active, host, port: Number(port), user, password };
      return proxyDict(await service.setProxyRoute(params, dbusCaller(ctx)));
    },
    GetProxyStatus: async (_ctx, verify) => {
      if (!service.getProxyStatus)
        throw new ServiceError('InvalidArgs', 'the proxy route is not managed here');
      return proxyDict(await service.getProxyStatus(verify === true));
    },
  };
}

/** The proxy status as a{sv}: D-Bus has no null, so an absent error or check time is "". */
function proxyDict(reply: ProxyReply) {
  const flat: { [key: string]: Json } = { ...reply, checks: { ...reply.checks } };
  for (const k of ['error_code', 'error', 'verified_at']) if (flat[k] === null) flat[k] = '';
  return toVariantDict(flat);
}

/** The members whose handlers ask polkit (through the Authorizer) for non-root callers. */
const NEEDS_POLKIT = new Set(['RestartService', 'ApplyConfig', 'ClaimProfile', 'SetProxyRoute']);

function dbusCaller(ctx: CallContext): Caller {
  return { kind: 'dbus', sender: ctx.sender, interactive: ctx.interactive };
}

function toDBusError(err: unknown, member: string): InstanceType<typeof dbus.DBusError> {
  const se = toServiceError(err);
  if (se.code === 'Internal')
    log.err('method failed', { member, error: errText(err), error_code: 'Internal' });
  return new dbus.DBusError(DBUS_ERROR_NAMES[se.code], se.message);
}

export class System1Export {
  private iface: InstanceType<typeof dbus.interface.Interface> | undefined;
  private readonly spec: InterfaceSpec;
  private readonly introspection: Record<string, unknown>;

  constructor(
    private readonly bus: Bus,
    private readonly service: SystemService,
    private readonly version: string,
    xmlPath: string,
    /** Callers over the authorization limits are answered Busy before dispatch (polkit.ts). */
    private readonly admission?: { refusesNow(sender: string): boolean },
  ) {
    const xml = readFileSync(xmlPath, 'utf8');
    this.spec = parseInterface(xml, INTERFACE);
    this.introspection = toXml2js(interfaceElement(xml, INTERFACE));
  }

  /** Exports the object; call before claiming the bus name. */
  export(): void {
    const handlers = methodHandlers(this.service);
    const service = this.service;
    const version = this.version;
    const spec = this.spec;
    let current: CallContext = { sender: '', interactive: false };
    const raw = new RawReplies(this.bus);
    const statusReply = new StatusReplyCache(raw);
    const healthReply = new HealthReplyCache(raw);
    const admission = this.admission;

    const introspection = this.introspection;
    // dbus-next's own introspection of an interface drops argument names and annotations (Qt's type names,
    // EmitsChangedSignal): the object introspects as the XML's own <interface> element instead.
    class System1 extends dbus.interface.Interface {
      $introspect(): Record<string, unknown> {
        return introspection;
      }
    }
    const proto = System1.prototype as unknown as Record<string, unknown>;
    const methods: Record<string, { inSignature: string; outSignature: string }> = {};
    for (const m of spec.methods) {
      const handler = handlers[m.name];
      if (!handler) throw new Error(`no handler for ${INTERFACE}.${m.name} described in the XML`);
      methods[m.name] = { inSignature: m.inSignature, outSignature: m.outSignature };
      proto[m.name] = (...args: unknown[]) => {
        // Read the caller before the first await: the context belongs to this dispatch only.
        const ctx = current;
        try {
          const result = handler(ctx, ...args);
          if (result instanceof Promise)
            return result.catch((err: unknown) => Promise.reject(toDBusError(err, m.name)));
          return result;
        } catch (err) {
          throw toDBusError(err, m.name);
        }
      };
    }
    const propertyGetters: Record<string, () => unknown> = {
      Health: () => service.getHealth(),
      Version: () => version,
      ProxyState: () => service.proxyStatus?.().state ?? 'disabled',
    };
    const properties: Record<string, { signature: string; access: typeof dbus.interface.ACCESS_READ }> = {};
    for (const p of spec.properties) {
      const get = propertyGetters[p.name];
      if (!get) throw new Error(`no getter for ${INTERFACE}.${p.name} described in the XML`);
      properties[p.name] = { signature: p.signature, access: dbus.interface.ACCESS_READ };
      Object.defineProperty(proto, p.name, { get, configurable: true });
    }
    const signals: Record<string, { signature: string }> = {};
    for (const s of spec.signals) {
      signals[s.name] = { signature: s.signature };
      // The signal's body is what this function returns; dbus-next wraps it to emit.
      proto[s.name] = (value: unknown) => value;
    }
    System1.configureMembers({ methods, properties, signals });
    this.iface = new System1(INTERFACE);

    // Runs synchronously before dbus-next dispatches each call: records the sender (handlers do not see it)
    // and answers wrong argument types with InvalidArgs rather than a misleading UnknownMethod.
    this.bus.raw.addMethodHandler((msg: DBusMessage) => {
      if (msg.path !== OBJECT_PATH || msg.interface !== INTERFACE) return false;
      current = {
        sender: msg.sender,
        interactive: (msg.flags & ALLOW_INTERACTIVE_AUTHORIZATION) !== 0,
      };
      const m = spec.methods.find((x) => x.name === msg.member);
      if (m && (msg.signature ?? '') !== m.inSignature) {
        this.bus.send(
          errorReply(
            msg,
            DBUS_ERROR_NAMES.InvalidArgs,
            `${m.name} takes arguments of signature '${m.inSignature}'`,
          ),
        );
        return true;
      }
      // A caller flooding methods that need polkit: Busy at once, the cheapest answer there is.
      if (m && NEEDS_POLKIT.has(m.name) && admission?.refusesNow(msg.sender)) {
        if (raw.error(msg, DBUS_ERROR_NAMES.Busy, BUSY_MESSAGE)) return true;
      }
      // GetHealth too, from the map's body marshalled once per healthChanged (reply-cache.ts).
      if (m?.name === 'GetHealth' && service.healthJson) {
        try {
          return healthReply.reply(msg, service.healthJson(), () => service.getHealth());
        } catch (err) {
          log.err('GetHealth reply failed', { error: errText(err), error_code: 'Internal' });
        }
      }
      // GetStatus is open to everyone: answered from bytes marshalled once per change (reply-cache.ts).
      if (m?.name === 'GetStatus') {
        try {
          const key = service.statusJson ? service.statusJson() : JSON.stringify(service.getStatus());
          return statusReply.reply(msg, key, () => service.getStatus());
        } catch (err) {
          log.err('GetStatus reply failed', { error: errText(err), error_code: 'Internal' });
        }
      }
      return false;
    });
    this.bus.raw.export(OBJECT_PATH, this.iface);
  }

  /** Emits HealthChanged and PropertiesChanged(Health). */
  healthChanged(health: HealthMap): void {
    if (!this.iface) return;
    const emit = (this.iface as unknown as Record<string, (h: HealthMap) => void>).HealthChanged;
    emit?.call(this.iface, { ...health });
    dbus.interface.Interface.emitPropertiesChanged(this.iface, { Health: { ...health } }, []);
  }

  /** Emits PropertiesChanged(ProxyState). */
  proxyChanged(state: string): void {
    if (!this.iface) return;
    dbus.interface.Interface.emitPropertiesChanged(this.iface, { ProxyState: state }, []);
  }
}
