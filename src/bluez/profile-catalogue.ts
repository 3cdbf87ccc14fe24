// The Bluetooth profiles the daemon can own, and which of them the btProfiles setting enables (hfp-ag is
// optional: BlueZ lets one program hold a UUID, and PipeWire or oFono may need it for call audio).
import dbus from 'dbus-next';
import { type Fields, log } from '../log/journal.js';

const { Variant } = dbus;
type V = InstanceType<typeof Variant>;

export const BLUEZ = 'org.bluez';
export const PROFILE_IFACE = 'org.bluez.Profile1';
const PROFILE_ROOT = '/org/openauto/System/bluez';

export type ProfileKey = 'aa' | 'hfp-ag' | 'hsp-hs';

export interface ProfileDef {
  key: ProfileKey;
  uuid: string;
  /** Human-readable, also the SDP service name. */
  name: string;
  /** Our org.bluez.Profile1 object. */
  path: string;
  /** RegisterProfile options. */
  options: () => Record<string, V>;
}

/**
 * Android Auto wireless is an RFCOMM server on channel 8 (what phones look for); HFP AG and HSP HS take
 * BlueZ's defaults for their well-known UUIDs. All need a paired link but no per-connection authorization:
 * a head unit has nobody to click "allow" while driving.
 */
export const PROFILES: Record<ProfileKey, ProfileDef> = {
  aa: {
    key: 'aa',
    uuid: '4de17a00-52cb-11e6-bdf4-0800200c9a66',
    name: 'OpenAuto Android Auto Wireless',
    path: `${PROFILE_ROOT}/android_auto`,
    options: () => ({
      Name: new Variant('s', 'OpenAuto Android Auto Wireless'),
      Role: new Variant('s', 'server'),
      Channel: new Variant('q', 8),
      RequireAuthentication: new Variant('b', true),
      RequireAuthorization: new Variant('b', false),
    }),
  },
  'hfp-ag': {
    key: 'hfp-ag',
    uuid: '0000111f-0000-1000-8000-00805f9b34fb',
    name: 'OpenAuto HFP Audio Gateway',
    path: `${PROFILE_ROOT}/hfp_ag`,
    options: () => ({
      Name: new Variant('s', 'OpenAuto HFP Audio Gateway'),
      RequireAuthentication: new Variant('b', true),
      RequireAuthorization: new Variant('b', false),
    }),
  },
  'hsp-hs': {
    key: 'hsp-hs',
    uuid: '00001108-0000-1000-8000-00805f9b34fb',
    name: 'OpenAuto HSP Headset',
    path: `${PROFILE_ROOT}/hsp_hs`,
    options: () => ({
      Name: new Variant('s', 'OpenAuto HSP Headset'),
      RequireAuthentication: new Variant('b', true),
      RequireAuthorization: new Variant('b', false),
    }),
  },
};

/** The enabled profiles from the btProfiles setting (unknown names are logged and skipped, duplicates once). */
export function enabledProfiles(names: readonly string[]): ProfileDef[] {
  const out: ProfileDef[] = [];
  for (const raw of names) {
    const name = raw.trim().toLowerCase();
    // Own keys only: "constructor" is not a profile.
    const def = Object.hasOwn(PROFILES, name)
      ? (PROFILES as Record<string, ProfileDef | undefined>)[name]
      : undefined;
    if (!def) {
      log.warning(`unknown Bluetooth profile '${raw}' in the btProfiles setting; use aa, hfp-ag or hsp-hs`, {
        profile: raw,
        error_code: 'UnknownProfile',
      });
      continue;
    }
    if (!out.includes(def)) out.push(def);
  }
  return out;
}

/** The journal fields every line about a profile carries. */
export function profileFields(def: ProfileDef, extra: Fields = {}): Fields {
  return { profile: def.key, uuid: def.uuid, ...extra };
}
