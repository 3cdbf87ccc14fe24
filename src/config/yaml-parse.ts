// Parsing config.yaml without letting its owner stall the daemon. The YAML parser's cost grows with nesting
// and node count (254 KiB of "[" kept the event loop busy for seconds, and its duplicate-key check is
// quadratic in a mapping's size), and one busy event loop means nobody gets GetHealth meanwhile. So:
//   1. a pre-scan with native regular expressions (well under a millisecond for the largest file we read)
//      refuses a file with more than MAX_YAML_NODES structural indicators or nested deeper than
//      MAX_YAML_DEPTH, before the parser sees a byte of it;
//   2. lexing and parsing run in slices, giving the event loop back between them;
//   3. duplicate keys are found with one Set per mapping (linear), not by the library's pairwise check.
// The counts over-estimate (a "," or "[" inside a quoted string or comment counts too): a legitimate file is
// far below them (the shipping app's config.yaml has about 20 indicators, a full one about 100).
import {
  Composer,
  type Document,
  isMap,
  isScalar,
  isSeq,
  Lexer,
  LineCounter,
  type Node,
  Parser,
  YAMLParseError,
} from 'yaml';

/** Structural indicators allowed: `[`, `{`, `,`, and `-`, `?`, `:` followed by a blank. */
export const MAX_YAML_NODES = 1000;
/** Nesting of flow collections (`[` / `{`) allowed. */
export const MAX_YAML_DEPTH = 32;
/** Tokens lexed and parsed between two returns to the event loop. */
const SLICE_TOKENS = 256;

const INDICATORS = /[[{,]|[-?:](?=[ \t\r\n]|$)/g;
const BRACKETS = /[[\]{}]/g;

export type TooComplex = 'nodes' | 'depth';

/** What the pre-scan found wrong, or undefined. Costs a few native regex passes, no parsing. */
export function tooComplex(text: string): TooComplex | undefined {
  INDICATORS.lastIndex = 0;
  let n = 0;
  while (INDICATORS.exec(text) !== null) if (++n > MAX_YAML_NODES) return 'nodes';
  // At most MAX_YAML_NODES opening brackets remain here, so this loop is short.
  let depth = 0;
  for (const m of text.match(BRACKETS) ?? []) {
    if (m === '[' || m === '{') {
      if (++depth > MAX_YAML_DEPTH) return 'depth';
    } else if (depth > 0) depth--;
  }
  return undefined;
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export interface Parsed {
  doc: Document;
  lineCounter: LineCounter;
}

/**
 * Parses one YAML document as the daemon reads config.yaml (YAML 1.2 core schema, strict, no merge keys,
 * unique keys), in slices. Errors are in doc.errors, as parseDocument leaves them; call tooComplex first.
 */
export async function parseSliced(text: string): Promise<Parsed> {
  const lineCounter = new LineCounter();
  const parser = new Parser(lineCounter.addNewLine);
  lineCounter.addNewLine(0); // what Parser.parse() does first
  const tokens = [];
  let n = 0;
  for (const lexeme of new Lexer().lex(text, false)) {
    for (const t of parser.next(lexeme)) tokens.push(t);
    if (++n % SLICE_TOKENS === 0) await yieldToLoop();
  }
  for (const t of parser.end()) tokens.push(t);
  const composer = new Composer({
    prettyErrors: false, // pretty errors quote the offending source line
    uniqueKeys: false, // checked below, linearly
    strict: true,
    version: '1.2',
    schema: 'core',
    merge: false,
  });
  let doc: Document | undefined;
  for (const d of composer.compose(tokens, true, text.length)) {
    if (!doc) {
      doc = d;
    } else {
      doc.errors.push(new YAMLParseError([d.range[0], d.range[1]], 'MULTIPLE_DOCS', 'multiple documents'));
      break;
    }
  }
  // compose(…, forceDoc = true) always yields a document.
  const out = doc as Document;
  if (out.errors.length === 0) {
    const dup = firstDuplicateKey(out.contents as Node | null);
    if (dup !== undefined)
      out.errors.push(new YAMLParseError([dup, dup + 1], 'DUPLICATE_KEY', 'duplicate key'));
  }
  return { doc: out, lineCounter };
}

/** Offset of the first key (in the text) that repeats an earlier scalar key of the same mapping. */
function firstDuplicateKey(root: Node | null): number | undefined {
  const todo: unknown[] = [root];
  let first: number | undefined;
  while (todo.length > 0) {
    const node = todo.pop();
    if (isMap(node)) {
      const seen = new Set<string>();
      for (const pair of node.items) {
        const key = pair.key;
        if (isScalar(key)) {
          // typeof keeps `1` and `"1"` apart, as the library's own check does.
          const id = `${typeof key.value}:${String(key.value)}`;
          if (seen.has(id)) {
            const at = key.range?.[0] ?? 0;
            if (first === undefined || at < first) first = at;
          }
          seen.add(id);
        } else {
          todo.push(key);
        }
        todo.push(pair.value);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) todo.push(item);
    }
  }
  return first;
}
