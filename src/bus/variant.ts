// Turns the JSON-shaped status dump into D-Bus variants (a{sv}), so GetStatus and the socket's get_status
// carry the same content.
import dbus from 'dbus-next';
import type { Json } from '../service.js';

const { Variant } = dbus;
type V = InstanceType<typeof Variant>;

export function toVariant(value: Json): V {
  if (typeof value === 'string') return new Variant('s', value);
  if (typeof value === 'boolean') return new Variant('b', value);
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) ? new Variant('x', BigInt(value)) : new Variant('d', value);
  }
  if (value === null) return new Variant('a{sv}', {});
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'string')) return new Variant('as', value);
    return new Variant('av', value.map(toVariant));
  }
  return new Variant('a{sv}', toVariantDict(value));
}

/** An object's entries as an a{sv} body; null members are left out (D-Bus has no null). */
export function toVariantDict(obj: { [key: string]: Json }): Record<string, V> {
  const out: Record<string, V> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === null) continue;
    out[k] = toVariant(v);
  }
  return out;
}
