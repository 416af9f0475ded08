// Where a rule's field path (metadata.labels["istio-injection"], spec.template.spec.containers[0]
// .securityContext.privileged) sits in the YAML source: line and column of the deepest node of
// the path that exists (a missing field points at its nearest present parent), from the yaml
// package's node ranges.
import { isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

export type PathSegment = string | number;

export interface SourcePosition {
  /** 1-based */
  readonly line: number;
  /** 1-based */
  readonly column: number;
}

const IDENT = /^[A-Za-z0-9_$-]+/;
const INDEX = /^\[(\d+)\]/;
const QUOTED = /^\[("(?:[^"\\]|\\.)*")\]/;

/** The segments of a field path as rules write it; parsing stops at anything else. */
export function parsePath(path: string): PathSegment[] {
  const out: PathSegment[] = [];
  let rest = path;
  while (rest !== '') {
    if (rest.startsWith('.')) {
      rest = rest.slice(1);
      continue;
    }
    const ident = IDENT.exec(rest);
    if (ident !== null) {
      out.push(ident[0]);
      rest = rest.slice(ident[0].length);
      continue;
    }
    const index = INDEX.exec(rest);
    if (index !== null) {
      out.push(Number(index[1]));
      rest = rest.slice(index[0].length);
      continue;
    }
    const quoted = QUOTED.exec(rest);
    if (quoted !== null) {
      try {
        out.push(JSON.parse(quoted[1] ?? '""') as string);
      } catch {
        break;
      }
      rest = rest.slice(quoted[0].length);
      continue;
    }
    break;
  }
  return out;
}

/** The offset of the deepest node along `segments` (a map entry's key, a list item). */
export function locateOffset(doc: Document, segments: readonly PathSegment[]): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? doc.range?.[0] ?? 0;
  for (const seg of segments) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (pair === undefined) break;
      offset = (pair.key as Node).range?.[0] ?? offset;
      node = pair.value;
      continue;
    }
    if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as Node | undefined;
      if (item === undefined || item === null) break;
      offset = item.range?.[0] ?? offset;
      node = item;
      continue;
    }
    break;
  }
  return offset;
}

export function locate(doc: Document, lc: LineCounter, base: readonly PathSegment[], path: string | undefined): SourcePosition {
  const { line, col } = lc.linePos(locateOffset(doc, [...base, ...(path === undefined ? [] : parsePath(path))]));
  return { line, column: col };
}
