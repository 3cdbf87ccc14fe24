// Claims on BlueZ profiles (src/bluez/claims.ts): one holder per profile, re-claiming replaces the handler,
// only the holder releases, and leaving the bus ends every claim of that client.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ClaimTable } from '../../src/bluez/claims.js';

describe('ClaimTable', () => {
  it('one holder per profile; the holder may replace its handler', () => {
    const t = new ClaimTable<'aa' | 'hsp-hs'>();
    assert.deepEqual(t.claim('aa', ':1.5', '/app/a', 1), { ok: true, replaced: false });
    assert.deepEqual(t.claim('aa', ':1.6', '/other', 2), { ok: false, heldBy: ':1.5' });
    assert.deepEqual(t.claim('aa', ':1.5', '/app/b', 3), { ok: true, replaced: true });
    assert.deepEqual(t.get('aa'), { sender: ':1.5', handler: '/app/b', since: 3 });
    assert.equal(t.get('hsp-hs'), undefined);
  });

  it('only the holder releases', () => {
    const t = new ClaimTable();
    t.claim('aa', ':1.5', '/app', 1);
    assert.equal(t.release('aa', ':1.6'), false);
    assert.equal(t.get('aa')?.sender, ':1.5');
    assert.equal(t.release('aa', ':1.5'), true);
    assert.equal(t.release('aa', ':1.5'), false);
    assert.equal(t.get('aa'), undefined);
  });

  it('a client leaving the bus releases all of its claims and nobody else’s', () => {
    const t = new ClaimTable();
    t.claim('aa', ':1.5', '/app', 1);
    t.claim('hfp-ag', ':1.5', '/app', 1);
    t.claim('hsp-hs', ':1.9', '/other', 1);
    assert.deepEqual(t.senderGone(':1.5').sort(), ['aa', 'hfp-ag']);
    assert.equal(t.get('aa'), undefined);
    assert.equal(t.get('hsp-hs')?.sender, ':1.9');
    assert.deepEqual(t.senderGone(':1.5'), []);
  });
});
