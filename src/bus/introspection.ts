// Reads dbus/org.openauto.System1.xml, the one description of the interface, into a member table. The daemon
// exports exactly these members, and its live introspection serves the file's own <interface> element (names,
// directions, annotations), so the file and the export cannot drift apart.

export interface MethodSpec {
  name: string;
  inSignature: string;
  outSignature: string;
}
export interface PropertySpec {
  name: string;
  signature: string;
  access: 'read' | 'readwrite' | 'write';
}
export interface SignalSpec {
  name: string;
  signature: string;
}
export interface InterfaceSpec {
  name: string;
  methods: MethodSpec[];
  properties: PropertySpec[];
  signals: SignalSpec[];
}

/** One element of an introspection document: its tag, attributes and child elements (text is ignored). */
export interface XmlElement {
  tag: string;
  attrs: Record<string, string>;
  children: XmlElement[];
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decode(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|apos);/g, (_, e: string) => ENTITIES[e] ?? '');
}

function attributes(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/([A-Za-z_:][\w.:-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
    out[m[1] as string] = decode(m[2] ?? m[3] ?? '');
  }
  return out;
}

/**
 * Parses the elements of an introspection document into a tree under a synthetic root. Introspection XML
 * carries no text content that matters, only elements and attributes, so a tag scanner is enough; comments,
 * the prolog and the doctype are skipped.
 */
export function parseXml(xml: string): XmlElement {
  const root: XmlElement = { tag: '', attrs: {}, children: [] };
  const stack: XmlElement[] = [root];
  const clean = xml.replace(/<!--[\s\S]*?-->/g, '').replace(/<[?!][^>]*>/g, '');
  for (const m of clean.matchAll(/<(\/?)([A-Za-z_][\w.:-]*)((?:[^>"']|"[^"]*"|'[^']*')*?)(\/?)>/g)) {
    const [, closing, tag = '', rest = '', selfClosing] = m;
    const top = stack[stack.length - 1] as XmlElement;
    if (closing) {
      if (top.tag !== tag) throw new Error(`introspection XML: </${tag}> closes <${top.tag}>`);
      stack.pop();
      continue;
    }
    const el: XmlElement = { tag, attrs: attributes(rest), children: [] };
    top.children.push(el);
    if (!selfClosing) stack.push(el);
  }
  if (stack.length !== 1)
    throw new Error(`introspection XML: <${stack[stack.length - 1]?.tag}> is not closed`);
  return root;
}

/** The <interface name="NAME"> element of a document (under its <node>). */
export function interfaceElement(xml: string, name: string): XmlElement {
  const node = parseXml(xml).children.find((e) => e.tag === 'node');
  const iface = node?.children.find((e) => e.tag === 'interface' && e.attrs.name === name);
  if (!iface) throw new Error(`interface ${name} not found`);
  return iface;
}

/** The names of every <interface> of the document's <node>. */
export function interfaceNames(xml: string): string[] {
  const node = parseXml(xml).children.find((e) => e.tag === 'node');
  return (node?.children ?? []).filter((e) => e.tag === 'interface').map((e) => e.attrs.name ?? '');
}

/** The element in the shape dbus-next's introspection builder (xml2js) takes: {$: attrs, child: [...]}. */
export function toXml2js(el: XmlElement): Record<string, unknown> {
  const out: Record<string, unknown> = { $: { ...el.attrs } };
  for (const c of el.children) {
    if (!Array.isArray(out[c.tag])) out[c.tag] = [];
    (out[c.tag] as unknown[]).push(toXml2js(c));
  }
  return out;
}

function signature(
  args: XmlElement[],
  direction: 'in' | 'out' | undefined,
  defaultDir: 'in' | 'out',
): string {
  return args
    .filter((a) => direction === undefined || (a.attrs.direction ?? defaultDir) === direction)
    .map((a) => a.attrs.type ?? '')
    .join('');
}

/** Parses one <interface> out of an introspection document into its methods, properties and signals. */
export function parseInterface(xml: string, name: string): InterfaceSpec {
  const iface = interfaceElement(xml, name);
  const spec: InterfaceSpec = { name, methods: [], properties: [], signals: [] };
  for (const el of iface.children) {
    const memberName = el.attrs.name;
    if (!memberName) continue;
    const args = el.children.filter((c) => c.tag === 'arg');
    if (el.tag === 'method') {
      spec.methods.push({
        name: memberName,
        inSignature: signature(args, 'in', 'in'),
        outSignature: signature(args, 'out', 'in'),
      });
    } else if (el.tag === 'signal') {
      spec.signals.push({ name: memberName, signature: signature(args, undefined, 'out') });
    } else if (el.tag === 'property') {
      const access = (el.attrs.access ?? 'read') as PropertySpec['access'];
      spec.properties.push({ name: memberName, signature: el.attrs.type ?? '', access });
    }
  }
  return spec;
}
