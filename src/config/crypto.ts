// node:crypto, loaded at its first use (an apply's temporary file name or content hash) rather than at every
// start: under the unit's flags node compiles its own modules in the interpreter, and crypto with its dozen
// internal modules costs ~4 ms of a start that writes nothing.
import { createRequire } from 'node:module';

type Crypto = typeof import('node:crypto');
let mod: Crypto | undefined;

export function crypto(): Crypto {
  mod ??= createRequire(import.meta.url)('node:crypto') as Crypto;
  return mod;
}
