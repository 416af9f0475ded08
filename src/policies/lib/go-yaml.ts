// YAML or JSON text read the way Istio reads it: sigs.k8s.io/yaml turns YAML 1.1 (go-yaml v2:
// yes/on are booleans, 0755 is octal) into JSON before protobuf or the chart values see it
// (pkg/util/protomarshal ApplyYAML in the pinned istio.io/istio module, and the injector's
// values). What go-yaml v2 does not have (timestamps, sets, sexagesimal numbers) stays a string,
// and anything readers disagree on (duplicate keys, several documents) is an error.
import { isMap, isScalar, parseAllDocuments, visit, type Document, type Tags } from 'yaml';
import { isRecord } from '../../core/objects.ts';

// go-yaml v2 (what Istio's YAMLToJSON uses) has no timestamps, binary, sets or sexagesimal
// numbers: those read as strings there, so they must not become Dates or numbers here.
const GO_YAML_V2_EXTRAS = new Set(['timestamp', 'binary', 'omap', 'pairs', 'set', 'intTime', 'floatTime'].flatMap((n) => [n, `tag:yaml.org,2002:${n}`]));
const goYamlTags = (tags: Tags): Tags =>
  tags.filter((t) => (typeof t === 'string' ? !GO_YAML_V2_EXTRAS.has(t) : !(GO_YAML_V2_EXTRAS.has(t.tag) || ('format' in t && t.format === 'TIME'))));

/** The first line of a parser message, without the code excerpt that follows it. */
export function firstLine(message: string): string {
  const line = (message.split('\n')[0] ?? '').replace(/:$/, '');
  return line.length > 160 ? `${line.slice(0, 159)}…` : line;
}

/**
 * The first key that a mapping repeats (as JSON sees keys: 1 and "1" are the same), or a key
 * that is not a scalar; one pass with a set per mapping (the parser's own uniqueKeys check
 * compares every pair of keys). Readers disagree on which duplicate wins, so it is an error.
 */
function duplicateKey(doc: Document): string | undefined {
  let found: string | undefined;
  visit(doc, {
    Map(_key, map) {
      if (!isMap(map)) return undefined;
      const seen = new Set<string>();
      for (const pair of map.items) {
        const k = pair.key;
        if (!isScalar(k)) {
          found = 'a mapping key is not a plain value';
          return visit.BREAK;
        }
        const name = String(k.value);
        if (name === '<<') continue; // YAML 1.1 merge keys
        if (seen.has(name)) {
          found = `map keys must be unique; ${JSON.stringify(name)} is repeated${k.range === undefined || k.range === null ? '' : ` at offset ${k.range[0]}`}`;
          return visit.BREAK;
        }
        seen.add(name);
      }
      return undefined;
    },
  });
  return found;
}

/**
 * YAML or JSON text as go-yaml v2 reads it (Istio's protomarshal.ApplyYAML and the injector's
 * values), as a mapping, or why it does not parse. Empty and `null` are an empty mapping (Istio
 * treats a top-level null as no change).
 */
export function parseGoYamlMapping(text: string): { readonly value: Readonly<Record<string, unknown>> } | { readonly error: string } {
  let docs;
  try {
    docs = parseAllDocuments(text, { version: '1.1', customTags: goYamlTags, uniqueKeys: false, merge: true });
  } catch (err) {
    return { error: `not valid YAML or JSON: ${firstLine(err instanceof Error ? err.message : String(err))}` };
  }
  if (!Array.isArray(docs)) return { value: {} };
  if (docs.length > 1) return { error: 'holds several YAML documents; Istio reads only the first' };
  const doc = docs[0];
  if (doc === undefined) return { value: {} };
  const problem = doc.errors[0];
  if (problem !== undefined) return { error: `not valid YAML or JSON: ${firstLine(problem.message)}` };
  const duplicate = duplicateKey(doc);
  if (duplicate !== undefined) return { error: `not valid YAML or JSON: ${duplicate}` };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { error: `not valid YAML or JSON: ${firstLine(err instanceof Error ? err.message : String(err))}` };
  }
  if (value === null || value === undefined) return { value: {} };
  if (!isRecord(value)) return { error: 'is not a mapping' };
  return { value };
}

