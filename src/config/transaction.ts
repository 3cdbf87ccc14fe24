// A file-backed apply as a durable transaction. Before the new hostapd.conf or .network file replaces the old
// one, a record of the apply (the previous content with its mode and owner, a hash of the new content) is on
// disk and fsynced in the state directory; it is updated when the file in place changes (new file renamed in,
// previous put back) and removed when the apply is over. A daemon killed or a Pi powered off in between finds
// the record at its next start and finishes or undoes the apply (applier.ts: recover()): the new file stays
// only if its unit became active with it.
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import { cleanTempFiles, type FileSnapshot, writeAtomic } from './atomic.js';
import { crypto } from './crypto.js';
import { FILE_SECTION_NAMES } from './schema.js';

const PHASES = ['prepared', 'written', 'restored'] as const;

const SnapshotSchema = z.object({
  data: z.base64(),
  mode: z.number().int().min(0).max(0o7777),
  uid: z.number().int().min(0),
  gid: z.number().int().min(0),
});

export const TxnRecordSchema = z.object({
  version: z.literal(1),
  section: z.enum(FILE_SECTION_NAMES),
  file: z.string().startsWith('/'),
  unit: z.string().regex(/^[A-Za-z0-9@._-]+\.service$/),
  link: z.string().optional(),
  /** prepared: the new file may or may not be in place; written: it is; restored: the previous is back. */
  phase: z.enum(PHASES),
  previous: SnapshotSchema.nullable(),
  newSha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** CLOCK_MONOTONIC µs (systemd's *TimestampMonotonic clock) when the file in place was put there. */
  placedAtUs: z.string().regex(/^\d+$/).optional(),
});
export type TxnRecord = z.infer<typeof TxnRecordSchema>;
export type TxnPhase = TxnRecord['phase'];

export function sha256(data: Buffer): string {
  return crypto().createHash('sha256').update(data).digest('hex');
}

export function monotonicUs(): bigint {
  return process.hrtime.bigint() / 1000n;
}

export function snapshotOf(rec: TxnRecord): FileSnapshot | null {
  const p = rec.previous;
  return p === null ? null : { data: Buffer.from(p.data, 'base64'), mode: p.mode, uid: p.uid, gid: p.gid };
}

/** Which content the file in place holds, compared with a record. */
export function contentOf(rec: TxnRecord, current: Buffer | null): 'new' | 'previous' | 'other' {
  const prev = snapshotOf(rec);
  if (current === null) return prev === null ? 'previous' : 'other';
  if (sha256(current) === rec.newSha256) return 'new';
  return prev?.data.equals(current) ? 'previous' : 'other';
}

const RECORD_NAME = /^apply-(wifi|network)\.json$/;

/** The records of the state directory: apply-wifi.json, apply-network.json (0600: they hold the old file). */
export class ApplyJournal {
  constructor(private readonly dir: string) {}

  private fileOf(section: TxnRecord['section']): string {
    return path.join(this.dir, `apply-${section}.json`);
  }

  /** Writes (replaces) the record, fsynced with its directory, before the step it describes. */
  async write(rec: TxnRecord): Promise<void> {
    // StateDirectory= makes it 0700; run by hand, it is created so too.
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeAtomic(this.fileOf(rec.section), `${JSON.stringify(rec)}\n`, { mode: 0o600 });
  }

  /** The record with the file in place changed now (phase written or restored). */
  async placed(rec: TxnRecord, phase: TxnPhase): Promise<TxnRecord> {
    const next = { ...rec, phase, placedAtUs: String(monotonicUs()) };
    await this.write(next);
    return next;
  }

  /** Removes the record (the apply is over), fsynced. */
  async end(section: TxnRecord['section']): Promise<void> {
    try {
      await unlink(this.fileOf(section));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const fh = await open(this.dir, constants.O_RDONLY | constants.O_DIRECTORY).catch(() => undefined);
    try {
      await fh?.sync();
    } finally {
      await fh?.close();
    }
  }

  /** Records left by an apply that did not finish; a record that cannot be read is reported as `bad`. */
  async pending(): Promise<{ records: TxnRecord[]; bad: string[] }> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], bad: [] };
      throw err;
    }
    const records: TxnRecord[] = [];
    const bad: string[] = [];
    for (const name of names.sort()) {
      const m = RECORD_NAME.exec(name);
      if (!m) continue;
      try {
        const rec = TxnRecordSchema.parse(JSON.parse(await readFile(path.join(this.dir, name), 'utf8')));
        if (rec.section !== m[1]) throw new Error('section does not match the name');
        records.push(rec);
      } catch {
        bad.push(m[1] as string);
      }
    }
    return { records, bad };
  }

  /** Temp files of an interrupted record write. */
  cleanTemp(): Promise<number> {
    return cleanTempFiles(
      this.dir,
      FILE_SECTION_NAMES.map((s) => this.fileOf(s)),
    );
  }
}
