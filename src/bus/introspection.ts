// Reads dbus/org.openauto.System1.xml, the one description of the interface, into a member table. The daemon
// exports exactly these members, so the file and the export cannot drift apart.

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

function attr(tag: string, name: string): string | undefined {
  return new RegExp(`\\b${name}="([^"]*)"`).exec(tag)?.[1];
}

function args(body: string, direction?: 'in' | 'out'): string {
  const out: string[] = [];
  for (const m of body.matchAll(/<arg\b[^>]*>/g)) {
    const dir = attr(m[0], 'direction') ?? (direction === undefined ? undefined : 'in');
    if (direction !== undefined && dir !== direction) continue;
    out.push(attr(m[0], 'type') ?? '');
  }
  return out.join('');
}

/** Parses one <interface> out of an introspection document; our own file, so a small parser is enough. */
export function parseInterface(xml: string, name: string): InterfaceSpec {
  const clean = xml.replace(/<!--[\s\S]*?-->/g, '');
  const ifaceRe = new RegExp(
    `<interface\\s+name="${name.replace(/\./g, '\\.')}"\\s*>([\\s\\S]*?)</interface>`,
  );
  const body = ifaceRe.exec(clean)?.[1];
  if (body === undefined) throw new Error(`interface ${name} not found`);
  const spec: InterfaceSpec = { name, methods: [], properties: [], signals: [] };
  // Elements are either self-closing or have a body up to their closing tag.
  for (const m of body.matchAll(/<(method|signal|property)\b([^>]*?)(\/>|>([\s\S]*?)<\/\1>)/g)) {
    const [, kind, head = '', , inner = ''] = m;
    const memberName = attr(head, 'name');
    if (!memberName) continue;
    if (kind === 'method') {
      spec.methods.push({
        name: memberName,
        inSignature: args(inner, 'in'),
        outSignature: args(inner, 'out'),
      });
    } else if (kind === 'signal') {
      spec.signals.push({ name: memberName, signature: args(inner) });
    } else {
      const access = (attr(head, 'access') ?? 'read') as PropertySpec['access'];
      spec.properties.push({ name: memberName, signature: attr(head, 'type') ?? '', access });
    }
  }
  return spec;
}
