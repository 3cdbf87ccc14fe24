// Caller-supplied names that exist on every JavaScript object ("constructor", "__proto__", "toString"...)
// are unknown names like any other: every lookup of a caller's name is a Map or an own-property check.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { enabledProfiles } from '../../src/bluez/profile-catalogue.js';
import { Daemon, type DaemonDeps } from '../../src/daemon.js';
import { ServiceError } from '../../src/errors.js';
import { resolveServiceName } from '../../src/health/states.js';

export const PROTO_NAMES = ['constructor', '__proto__', 'toString', 'valueOf', 'hasOwnProperty'];

/** A Daemon whose collaborators fail the test if an unknown name ever reaches them. */
function daemon(): Daemon {
  const reached = (what: string) => () => {
    throw new Error(`${what} was reached`);
  };
  const deps = {
    version: 'test',
    monitor: Object.assign(new EventEmitter(), { poke: reached('monitor.poke') }),
    restarter: { restart: reached('restarter.restart') },
    authorizer: { check: reached('authorizer.check') },
    applier: { apply: reached('applier.apply'), summary: () => ({}) },
  } as unknown as DaemonDeps;
  return new Daemon(deps);
}

describe('prototype names', () => {
  it('are not services (and the real names and the alias still are)', () => {
    for (const name of PROTO_NAMES) assert.equal(resolveServiceName(name), undefined, name);
    assert.equal(resolveServiceName('hostapd'), 'hostapd');
    assert.equal(resolveServiceName('systemd-networkd'), 'networkd');
    assert.equal(resolveServiceName('bluetooth'), 'bluetooth');
  });

  it('RestartService answers UnknownService with a clean message', async () => {
    const d = daemon();
    for (const name of PROTO_NAMES) {
      await assert.rejects(d.restartService(name, { kind: 'socket' }), (e: unknown) => {
        assert.ok(e instanceof ServiceError, `${name}: ${String(e)}`);
        assert.equal(e.code, 'UnknownService');
        assert.equal(e.message, `unknown service '${name}': use hostapd, networkd or bluetooth`);
        return true;
      });
    }
  });

  it('ApplyConfig answers UnknownSection with a clean message', async () => {
    const d = daemon();
    for (const name of PROTO_NAMES) {
      await assert.rejects(d.applyConfig(name, { kind: 'socket' }), (e: unknown) => {
        assert.ok(e instanceof ServiceError, `${name}: ${String(e)}`);
        assert.equal(e.code, 'UnknownSection');
        assert.equal(e.message, `unknown section '${name}': use wifi, network, bluetooth or time`);
        return true;
      });
    }
  });

  it('are not Bluetooth profiles in the btProfiles setting', () => {
    assert.deepEqual(enabledProfiles(PROTO_NAMES), []);
    assert.deepEqual(
      enabledProfiles(['constructor', 'aa']).map((p) => p.key),
      ['aa'],
    );
  });
});
