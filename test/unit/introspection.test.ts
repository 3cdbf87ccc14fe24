// The introspection parser: the daemon's member table and its live introspection both come from it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  interfaceElement,
  interfaceNames,
  parseInterface,
  parseXml,
  toXml2js,
} from '../../src/bus/introspection.js';

const XML = join(fileURLToPath(import.meta.url), '..', '..', '..', '..', 'dbus', 'org.openauto.System1.xml');

describe('introspection parser', () => {
  it('reads the member table of dbus/org.openauto.System1.xml', () => {
    const spec = parseInterface(readFileSync(XML, 'utf8'), 'org.openauto.System1');
    const byName = Object.fromEntries(spec.methods.map((m) => [m.name, m]));
    assert.deepEqual(byName.GetHealth, { name: 'GetHealth', inSignature: '', outSignature: 'a{ss}' });
    assert.deepEqual(byName.ApplyConfig, { name: 'ApplyConfig', inSignature: 's', outSignature: 'bas' });
    assert.deepEqual(byName.ClaimProfile, { name: 'ClaimProfile', inSignature: 'so', outSignature: '' });
    assert.deepEqual(
      spec.signals.find((s) => s.name === 'HealthChanged'),
      { name: 'HealthChanged', signature: 'a{ss}' },
    );
    assert.deepEqual(
      spec.properties.find((p) => p.name === 'Version'),
      { name: 'Version', signature: 's', access: 'read' },
    );
  });

  it('keeps argument names, directions and annotations, and skips comments', () => {
    const el = interfaceElement(
      `<?xml version="1.0"?>
      <!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN" "x">
      <node><!-- <interface name="a.B"><method name="Fake"/></interface> -->
        <interface name='a.B'>
          <method name="M"><arg name="x" type="s" direction="in"/><arg type="a{sv}" direction='out'/>
            <annotation name="k" value="&lt;v&amp;&quot;&gt;"/></method>
          <annotation name="iface.level" value="1"/>
        </interface>
        <interface name="org.freedesktop.DBus.Peer"/>
      </node>`,
      'a.B',
    );
    assert.deepEqual(el, {
      tag: 'interface',
      attrs: { name: 'a.B' },
      children: [
        {
          tag: 'method',
          attrs: { name: 'M' },
          children: [
            { tag: 'arg', attrs: { name: 'x', type: 's', direction: 'in' }, children: [] },
            { tag: 'arg', attrs: { type: 'a{sv}', direction: 'out' }, children: [] },
            { tag: 'annotation', attrs: { name: 'k', value: '<v&">' }, children: [] },
          ],
        },
        { tag: 'annotation', attrs: { name: 'iface.level', value: '1' }, children: [] },
      ],
    });
    // The shape dbus-next's builder serializes: attributes under $, children grouped by tag.
    assert.deepEqual(toXml2js(el), {
      $: { name: 'a.B' },
      method: [
        {
          $: { name: 'M' },
          arg: [{ $: { name: 'x', type: 's', direction: 'in' } }, { $: { type: 'a{sv}', direction: 'out' } }],
          annotation: [{ $: { name: 'k', value: '<v&">' } }],
        },
      ],
      annotation: [{ $: { name: 'iface.level', value: '1' } }],
    });
  });

  it('lists the interfaces of a node and refuses broken documents', () => {
    assert.deepEqual(
      interfaceNames('<node><interface name="a.B"/><interface name="c.D"></interface></node>'),
      ['a.B', 'c.D'],
    );
    assert.throws(() => parseXml('<node><interface name="a.B"></node>'), /closes <interface>/);
    assert.throws(() => parseXml('<node><interface name="a.B">'), /not closed/);
    assert.throws(() => interfaceElement('<node/>', 'a.B'), /interface a\.B not found/);
  });
});
