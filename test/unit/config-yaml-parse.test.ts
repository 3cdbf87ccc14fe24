// The YAML guard (src/config/yaml-parse.ts): pathological files are refused by a pre-scan before the
// parser sees them, at a cost far below the parser's; legitimate files parse as before; duplicate keys are
// still refused (now with a linear check), with the position of the repeated key.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_YAML_DEPTH, MAX_YAML_NODES, parseSliced, tooComplex } from '../../src/config/yaml-parse.js';

const SHIPPING = `connection:
  wifi_ap: {interface: wlan0, ssid: Prodigy_3fa9, password: q7GkL2xPz9RbT4mW, channel: 36, band: a}
  bt_name: Prodigy_3fa9
  bt_discoverable: true
  tcp_port: 5277
identity: {head_unit_name: OpenAuto Prodigy}
`;

describe('pre-scan', () => {
  test('the shipping file and a full app config are far below the limits', () => {
    assert.equal(tooComplex(SHIPPING), undefined);
    const full = `${SHIPPING}${Array.from({ length: 100 }, (_, i) => `s${i}: {a: 1, b: [x, y]}`).join('\n')}\n`;
    assert.equal(tooComplex(full), undefined);
  });

  test('254 KiB of "[" (the issue), "{", "- " and keys are refused for their node count', () => {
    for (const text of [
      `x: ${'['.repeat(254 * 1024)}`,
      `x: ${'{'.repeat(100_000)}`,
      `${'- '.repeat(MAX_YAML_NODES + 1)}x`,
      Array.from({ length: MAX_YAML_NODES + 1 }, (_, i) => `k${i}: v`).join('\n'),
      `a: [${'1,'.repeat(MAX_YAML_NODES)}1]`,
    ]) {
      assert.equal(tooComplex(text), 'nodes', text.slice(0, 20));
    }
  });

  test(`nesting deeper than ${MAX_YAML_DEPTH} is refused; ${MAX_YAML_DEPTH} is fine`, () => {
    const nest = (n: number) => `a: ${'['.repeat(n)}${']'.repeat(n)}`;
    assert.equal(tooComplex(nest(MAX_YAML_DEPTH)), undefined);
    assert.equal(tooComplex(nest(MAX_YAML_DEPTH + 1)), 'depth');
    assert.equal(tooComplex(`a: ${'{b: '.repeat(MAX_YAML_DEPTH + 1)}`), 'depth');
    // Siblings are not nesting.
    assert.equal(tooComplex(`a: [${'[1], '.repeat(200)}[1]]`), undefined);
  });

  test('the pre-scan of the worst file costs far less than parsing it', () => {
    const text = `x: ${'['.repeat(254 * 1024)}`;
    const t = performance.now();
    for (let i = 0; i < 10; i++) tooComplex(text);
    const ms = (performance.now() - t) / 10;
    assert.ok(ms < 50, `pre-scan took ${ms.toFixed(1)} ms`); // ~0.3 ms measured; the parser takes seconds
  });
});

describe('parseSliced', () => {
  test('parses like the library, and gives the event loop back on a large file', async () => {
    const { doc } = await parseSliced(SHIPPING);
    assert.deepEqual(doc.errors, []);
    assert.equal(doc.getIn(['connection', 'wifi_ap', 'ssid']), 'Prodigy_3fa9');

    const big = Array.from({ length: MAX_YAML_NODES - 1 }, (_, i) => `k${i}: v${i}`).join('\n');
    assert.equal(tooComplex(big), undefined);
    let ticks = 0;
    let stop = false;
    const tick = () => {
      ticks++;
      if (!stop) setImmediate(tick);
    };
    setImmediate(tick);
    const parsed = await parseSliced(big);
    stop = true;
    assert.deepEqual(parsed.doc.errors, []);
    assert.equal(parsed.doc.get(`k${MAX_YAML_NODES - 2}`), `v${MAX_YAML_NODES - 2}`);
    assert.ok(ticks >= 5, `the event loop ran ${ticks} times during the parse`);
  });

  test('duplicate keys are refused at the repeated key, at any depth; 1 and "1" differ', async () => {
    const cases: [string, number, number][] = [
      ['a: 1\nb: 2\na: 3\n', 3, 1],
      ['wifi:\n  ssid: Car\n  ssid: Other\n', 3, 3],
      ['x: [{k: 1, k: 2}]\n', 1, 12],
    ];
    for (const [text, line, col] of cases) {
      const { doc, lineCounter } = await parseSliced(text);
      const e = doc.errors[0];
      assert.equal(e?.code, 'DUPLICATE_KEY', text);
      assert.deepEqual(lineCounter.linePos(e.pos[0]), { line, col }, text);
    }
    assert.deepEqual((await parseSliced('1: a\n"1": b\n')).doc.errors, []);
  });

  test('a second document is an error', async () => {
    const { doc } = await parseSliced('a: 1\n---\nb: 2\n');
    assert.equal(doc.errors[0]?.code, 'MULTIPLE_DOCS');
  });
});
