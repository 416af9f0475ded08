// Read manifests (multi-document YAML or JSON, files, directories or stdin) into objects that
// remember where they came from. Unreadable input is an error value, never a crash.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';
import { LineCounter, parseAllDocuments } from 'yaml';
import type { KObject } from '../core/request.ts';
import { locate, type SourcePosition } from './field-location.ts';

export interface Manifest {
  readonly file: string;
  /** The line the document starts at. */
  readonly line: number;
  readonly index: number;
  readonly object: KObject;
  /** Where a field path of this object is in the source (its nearest present parent when missing). */
  readonly locate?: (path: string | undefined) => SourcePosition;
}

export interface InputError {
  readonly file: string;
  readonly message: string;
}

const MANIFEST_EXT = /\.(ya?ml|json)$/i;
const CHART_FILE = 'Chart.yaml';
const KUSTOMIZATION_FILES: readonly string[] = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];

export interface ReadOptions {
  /** Globs (*, **, ?) over the path relative to the -f argument and the path as given; a glob
   * without '/' also matches a base name. Matching directories are skipped whole. */
  readonly exclude?: readonly string[];
}

/** A glob as a regular expression: ** any path, * and ? within one segment. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*' && glob[i + 1] === '*') {
      i++;
      if (glob[i + 1] === '/') {
        i++;
        re += '(?:.*/)?';
      } else re += '.*';
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function excluder(globs: readonly string[]): (path: string, root: string) => boolean {
  const compiled = globs.map((g) => ({ re: globToRegExp(g.replace(/\/+$/, '')), base: !g.includes('/') }));
  return (path, root) => {
    const rel = relative(root, path).split(sep).join('/');
    const given = path.split(sep).join('/');
    return compiled.some(({ re, base }) => re.test(rel) || re.test(given) || (base && re.test(basename(path))));
  };
}

/** How to feed a directory meshguard does not read raw. */
function renderHint(dir: string, names: ReadonlySet<string>): string | undefined {
  if (names.has(CHART_FILE)) return `is a Helm chart (${CHART_FILE}): its templates are not manifests. Render it and check the output: helm template RELEASE ${dir} [-f values.yaml] | meshguard check -f -`;
  const k = KUSTOMIZATION_FILES.find((n) => names.has(n));
  if (k !== undefined) return `is a kustomize directory (${k}): check what it builds: kustomize build ${dir} | meshguard check -f - (or kubectl kustomize ${dir})`;
  return undefined;
}

function filesOf(path: string, root: string, excluded: (path: string, root: string) => boolean, errors: InputError[]): string[] {
  if (path !== root && excluded(path, root)) return [];
  const st = statSync(path);
  if (!st.isDirectory()) {
    const hint = renderHint(dirname(path), new Set([basename(path)]));
    if (hint !== undefined) {
      errors.push({ file: path, message: `${dirname(path)} ${hint}` });
      return [];
    }
    return path === root || !excluded(path, root) ? [path] : [];
  }
  const entries = readdirSync(path, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
  const hint = renderHint(path, new Set(entries.filter((e) => !e.isDirectory()).map((e) => e.name)));
  if (hint !== undefined) {
    errors.push({ file: path, message: hint });
    return [];
  }
  return entries.flatMap((e) => (e.isDirectory() ? filesOf(join(path, e.name), root, excluded, errors) : MANIFEST_EXT.test(e.name) && !excluded(join(path, e.name), root) ? [join(path, e.name)] : []));
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
    const inList = items.length !== 1 || items[0] !== value;
    for (const [i, item] of items.entries()) {
      if (!isObject(item)) {
        errors.push({ file, message: `line ${line}: a list item is not a map` });
        continue;
      }
      const base = inList ? ['items', i] : [];
      manifests.push({ file, line, index: index++, object: item, locate: (path) => locate(doc, lc, base, path) });
    }
  }
  return { manifests, errors };
}

export async function readInputs(paths: readonly string[], stdin: () => Promise<string>, options: ReadOptions = {}): Promise<{ manifests: Manifest[]; errors: InputError[] }> {
  const manifests: Manifest[] = [];
  const errors: InputError[] = [];
  const excluded = excluder(options.exclude ?? []);
  for (const p of paths) {
    let files: string[];
    try {
      files = p === '-' ? ['-'] : filesOf(p, p, excluded, errors);
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
