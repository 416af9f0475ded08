// Reference pages generated from the code: the configuration schema, the rule registry, the
// coded errors and the webhook resources. `npm run docs` writes them; a test fails when stale.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CONFIG_SCHEMA } from '../config/schema.ts';
import type { Schema } from '../config/schema-dsl.ts';
import { ERRORS } from '../errors.ts';
import { ISTIO_KIND_DECISIONS } from '../policies/lib/istio.ts';
import { RULES } from '../policies/registry.ts';

function defaultText(s: Schema): string {
  if (s.type === 'object') return '';
  const d = 'default' in s ? s.default : undefined;
  return d === undefined ? '' : `\`${JSON.stringify(d)}\``;
}

function typeText(s: Schema): string {
  switch (s.type) {
    case 'string':
      return s.enum !== undefined ? s.enum.map((e) => `\`${e}\``).join(' \\| ') : s.nullable === true ? 'string or null' : 'string';
    case 'integer':
      return `integer ${s.min}–${s.max}`;
    case 'array':
      return `list of ${typeText(s.items)}`;
    case 'map':
      return `map of ${typeText(s.values)}`;
    default:
      return s.type;
  }
}

function rows(s: Schema, key: string, out: string[]): void {
  if (s.type === 'object') {
    if (key !== '') out.push(`| \`${key}\` | map | | ${s.description} |`);
    for (const [k, v] of Object.entries(s.props)) rows(v, key === '' ? k : `${key}.${k}`, out);
    return;
  }
  out.push(`| \`${key}\` | ${typeText(s)} | ${defaultText(s).replaceAll('|', '\\|')} | ${s.description.replaceAll('|', '\\|')} |`);
}

export function configReference(): string {
  const out = [
    '# Configuration reference',
    '',
    'Generated from `src/config/schema.ts` by `npm run docs`; a test fails when this page is stale.',
    'A YAML or JSON file passed with `--config`; flags and `MESHGUARD_*` variables override it (see `meshguard serve --help`).',
    'Unknown keys and bad values stop meshguard at start-up with a message that names the key.',
    '',
    '| key | type | default | meaning |',
    '|---|---|---|---|',
  ];
  rows(CONFIG_SCHEMA, '', out);
  return `${out.join('\n')}\n`;
}

export function rulesReference(): string {
  const out = [
    '# Rule reference',
    '',
    'Generated from the rule registry (`src/policies/registry.ts`) by `npm run docs`; a test fails when this page is stale.',
    'Each id is the module name under `src/policies/`, the name in messages (`policy <id>: ...`), the metrics label and the key under `rules:` in the configuration (`enabled`, `mode`).',
    '',
    '| id | type | kinds | operations | what it checks | fix |',
    '|---|---|---|---|---|---|',
  ];
  for (const r of RULES) {
    const kinds = r.match.kinds.map((k) => (k.group === '' ? k.kind : `${k.kind}.${k.group}`)).join(', ');
    const ops = [...r.match.operations, ...(r.match.subResources ?? []).filter((s) => s !== '').map((s) => `(${s})`)].join(', ');
    out.push(`| \`${r.id}\` | ${r.type} | ${kinds} | ${ops} | ${r.title} | ${r.fix.replaceAll('|', '\\|')} |`);
  }
  out.push('', '## Webhook resources', '', '| id | webhook | group | versions | resources |', '|---|---|---|---|---|');
  for (const r of RULES) {
    for (const w of r.webhook) {
      out.push(`| \`${r.id}\` | ${w.placement ?? 'default'} | \`${w.apiGroup === '' ? 'core' : w.apiGroup}\` | ${w.apiVersions.join(', ')} | ${w.resources.join(', ')} |`);
    }
  }
  out.push(...istioKindsReference());
  return `${out.join('\n')}\n`;
}

/** Every kind of Istio's CRD set and what meshguard does about it (ISTIO_KIND_DECISIONS). */
function istioKindsReference(): string[] {
  const out = [
    '',
    '## Istio kinds',
    '',
    'Every kind of the Istio CRD set (`manifests/charts/base/files/crd-all.gen.yaml` of the pinned Istio module) in every served version, and what meshguard does about it in a tenant namespace: *covered* (the rules judge what it changes), *restricted* (only in `istioAdminNamespaces`) or *allowed* (deliberately not judged, for the reason given). From `ISTIO_KIND_DECISIONS` in `src/policies/lib/istio.ts`; a unit test keeps it equal to the CRD file.',
    '',
    '| kind | group | versions | decision | rules | why |',
    '|---|---|---|---|---|---|',
  ];
  for (const d of ISTIO_KIND_DECISIONS) {
    const rules = d.rules.map((id) => `\`${id}\``).join(', ');
    const versions = d.crd === false ? `${d.kind.versions.join(', ')} (no CRD: offline input)` : d.kind.versions.join(', ');
    out.push(`| ${d.kind.kind} | \`${d.kind.group}\` | ${versions} | ${d.decision} | ${rules} | ${d.reason.replaceAll('|', '\\|')} |`);
  }
  return out;
}

export function errorsReference(): string {
  const out = [
    '# Error codes',
    '',
    'Generated from `src/errors.ts` by `npm run docs`. Every refused request gets one of these, as',
    '`{"statusCode", "code", "error", "message"}`; never a stack trace.',
    '',
    '| code | HTTP status | meaning |',
    '|---|---|---|',
  ];
  for (const e of Object.values(ERRORS)) out.push(`| \`${e.code}\` | ${e.statusCode} | ${e.summary} |`);
  return `${out.join('\n')}\n`;
}

export const PAGES: Readonly<Record<string, () => string>> = {
  'docs/configuration.md': configReference,
  'docs/rules.md': rulesReference,
  'docs/errors.md': errorsReference,
};

function invokedDirectly(): boolean {
  return process.argv[1] === fileURLToPath(import.meta.url);
}

if (invokedDirectly()) {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  for (const [page, make] of Object.entries(PAGES)) writeFileSync(`${root}${page}`, make());
  process.stdout.write(`wrote ${Object.keys(PAGES).join(', ')}\n`);
}
