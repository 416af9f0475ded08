// Read manifests (multi-document YAML or JSON, files, directories or stdin) into objects that
// remember where they came from. Unreadable input is an error value, never a crash.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LineCounter, parseAllDocuments } from 'yaml';
import type { KObject } from '../admission/types.ts';

export interface Manifest {
  readonly file: string;
  readonly line: number;
  readonly index: number;
  readonly object: KObject;
}

export interface InputError {
  readonly file: string;
  readonly message: string;
}

const MANIFEST_EXT = /\.(ya?ml|json)$/i;

function filesOf(path: string): string[] {
  const st = statSync(path);
  if (!st.isDirectory()) return [path];
  return readdirSync(path, { withFileTypes: true })
    .sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((e) => (e.isDirectory() ? filesOf(join(path, e.name)) : MANIFEST_EXT.test(e.name) ? [join(path, e.name)] : []));
}

function isObject(v: unknown): v is KObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parse one text; `kind: List` (and *List) items are expanded. */
export function parseManifests(file: string, text: string): { manifests: Manifest[]; errors: InputError[] } {
  const manifests: Manifest[] = [];
  const errors: InputError[] = [];
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, uniqueKeys: false });
  const list = Array.isArray(docs) ? docs : [docs];
  let index = 0;
  for (const doc of list) {
    const line = lc.linePos(doc.range[0]).line;
    if (doc.errors.length > 0) {
      errors.push({ file, message: `line ${line}: ${doc.errors[0]?.message ?? 'invalid YAML'}` });
      continue;
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) continue;
    if (!isObject(value)) {
      errors.push({ file, message: `line ${line}: a manifest must be a map, got ${Array.isArray(value) ? 'a list' : typeof value}` });
      continue;
    }
    const items = typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value['items']) ? (value['items'] as unknown[]) : [value];
    for (const item of items) {
      if (!isObject(item)) {
        errors.push({ file, message: `line ${line}: a list item is not a map` });
        continue;
      }
      manifests.push({ file, line, index: index++, object: item });
    }
  }
  return { manifests, errors };
}

export async function readInputs(paths: readonly string[], stdin: () => Promise<string>): Promise<{ manifests: Manifest[]; errors: InputError[] }> {
  const manifests: Manifest[] = [];
  const errors: InputError[] = [];
  for (const p of paths) {
    let files: string[];
    try {
      files = p === '-' ? ['-'] : filesOf(p);
    } catch (err) {
      errors.push({ file: p, message: (err as Error).message });
      continue;
    }
    for (const f of files) {
      let text: string;
      try {
        text = f === '-' ? await stdin() : readFileSync(f, 'utf8');
      } catch (err) {
        errors.push({ file: f, message: (err as Error).message });
        continue;
      }
      const r = parseManifests(f === '-' ? '<stdin>' : f, text);
      manifests.push(...r.manifests);
      errors.push(...r.errors);
    }
  }
  return { manifests, errors };
}
