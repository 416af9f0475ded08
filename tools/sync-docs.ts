// Reference pages generated from the code: the configuration schema, the rule registry, the
// coded errors and the webhook resources. `npm run docs` writes them; a test fails when stale.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CONFIG_SCHEMA } from '../src/config/schema.ts';
import { CERT_ERRORS, ERRORS } from '../src/errors.ts';
import { ISTIO_KIND_DECISIONS } from '../src/policies/lib/istio-kinds.ts';
import { RULES } from '../src/policies/registry.ts';
import { CLASS_EFFECT, fieldTable } from '../src/policies/lib/proxy-config-fields.ts';
import { NARROWING } from '../src/policies/lib/install-values.ts';

/** A schema node of CONFIG_SCHEMA, read as the JSON Schema it is. */
type Node = Readonly<Record<string, unknown>>;

const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A section of fixed keys (a map of free keys has additionalProperties as a schema instead). */
const isSection = (s: Node): boolean => isNode(s['properties']);

function defaultText(s: Node): string {
  if (isSection(s) || s['default'] === undefined) return '';
  return `\`${JSON.stringify(s['default'])}\``;
}

function typeText(s: Node): string {
  if (Array.isArray(s['enum'])) return s['enum'].map((e) => `\`${String(e)}\``).join(' \\| ');
  if (Array.isArray(s['type'])) return s['type'].join(' or ');
  switch (s['type']) {
    case 'integer':
      return `integer ${String(s['minimum'])}–${String(s['maximum'])}`;
    case 'array':
      return `list of ${typeText(s['items'] as Node)}`;
    case 'object':
      // A section, a map of free keys, or any JSON map passed through unchanged.
      if (isSection(s)) return 'object';
      return isNode(s['additionalProperties']) ? `map of ${typeText(s['additionalProperties'])}` : 'json';
    default:
      return String(s['type']);
  }
}

function rows(s: Node, key: string, out: string[]): void {
  const description = String(s['description']);
  if (isSection(s)) {
    if (key !== '') out.push(`| \`${key}\` | map | | ${description} |`);
    for (const [k, v] of Object.entries(s['properties'] as Record<string, Node>)) rows(v, key === '' ? k : `${key}.${k}`, out);
    return;
  }
  out.push(`| \`${key}\` | ${typeText(s)} | ${defaultText(s).replaceAll('|', '\\|')} | ${description.replaceAll('|', '\\|')} |`);
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
  const audited = RULES.filter((r) => r.defaultMode === 'audit').map((r) => `\`${r.id}\``);
  out.push(
    '',
    '## Default modes',
    '',
    `Opinionated rules report by default: with \`rules.<id>.mode: inherit\` (the default) they run in audit mode even when the global or namespace mode is enforce; pin \`rules.<id>.mode: enforce\` to deny. They are ${audited.join(', ')}.`,
    'Some findings are advisory: a check that needs objects admission does not see (for example whether an AuthorizationPolicy pairs with a RequestAuthentication) warns at admission, whatever the mode, and is judged by `meshguard scan`, which lists those objects.',
  );
  out.push('', '## Webhook resources', '', '| id | webhook | group | versions | resources |', '|---|---|---|---|---|');
  for (const r of RULES) {
    for (const w of r.webhook) {
      out.push(`| \`${r.id}\` | ${w.placement ?? 'default'} | \`${w.apiGroup === '' ? 'core' : w.apiGroup}\` | ${w.apiVersions.join(', ')} | ${w.resources.join(', ')} |`);
    }
  }
  out.push(...proxyConfigFields(), ...istioKindsReference());
  return `${out.join('\n')}\n`;
}

/** The ProxyConfig field table of workload-capture-bypass and mesh-config-outbound-policy. */
function proxyConfigFields(): string[] {
  const values = (list: readonly string[]): string => (list.length === 0 ? 'denied' : list.includes('*') ? 'any value' : list.map((v) => `\`${v}\``).join(', '));
  const out = [
    '',
    '## ProxyConfig fields',
    '',
    '`workload-capture-bypass` reads the `proxy.istio.io/config` annotation as Istio does (a ProxyConfig in YAML or JSON, proto or JSON field names, enums by name or number) and judges each field it sets.',
    'The annotation is denied when it does not parse (the message names the parse error), or when a field is set to a value its list does not allow.',
    '`proxyConfig.allow` replaces the list of a field (dotted path, e.g. `tracing.zipkin` or `proxyMetadata.MY_VAR`); fields and proxyMetadata keys not listed here follow `proxyConfig.unknownFields` (default deny).',
    '`mesh-config-outbound-policy` judges the mesh config\'s `defaultConfig` on the capture fields only (mesh-wide column); `istioInstall.allow` with `meshConfig.defaultConfig.<path>` overrides it.',
    '',
    '| field | what it changes | allowed in a workload | allowed mesh-wide |',
    '|---|---|---|---|',
  ];
  for (const [path, cls, allow, meshAllow] of fieldTable()) {
    out.push(`| \`${path}\` | ${cls}: ${CLASS_EFFECT[cls]} | ${values(allow)} | ${cls === 'capture' ? values(meshAllow) : 'any value'} |`);
  }
  out.push(
    '',
    '## Install values that narrow capture mesh-wide',
    '',
    '`mesh-config-outbound-policy` denies these Helm values when they differ from full capture, in an IstioOperator\'s `spec.values` and in the `values` key of the `istio-sidecar-injector[-<revision>]` ConfigMap in istio-system, unless `istioInstall.allow` lists the value.',
    'With the Istio CNI the injector copies them onto every pod as `traffic.sidecar.istio.io/*` annotations; `workload-capture-bypass` accepts such an annotation when it equals the mesh-wide value (`istioInstall.injectorValues`, or the values the cluster view discovers).',
    '',
    '| value | full capture | otherwise |',
    '|---|---|---|',
  );
  for (const [key, n] of Object.entries(NARROWING)) if (n !== undefined) out.push(`| \`global.proxy.${key}\` | \`${JSON.stringify(n.full)}\` | ${n.effect} |`);
  return out;
}

/** Every kind of Istio's CRD set and what meshguard does about it (ISTIO_KIND_DECISIONS). */
function istioKindsReference(): string[] {
  const out = [
    '',
    '## Istio kinds',
    '',
    'Every kind of the Istio CRD set (`manifests/charts/base/files/crd-all.gen.yaml` of the pinned Istio module) in every served version, and what meshguard does about it in a tenant namespace: *covered* (the rules judge what it changes), *restricted* (only in `istioAdminNamespaces`) or *allowed* (deliberately not judged, for the reason given). From `ISTIO_KIND_DECISIONS` in `src/policies/lib/istio-kinds.ts`; a unit test keeps it equal to the CRD file.',
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
  out.push(
    '',
    '## Serving certificate errors',
    '',
    'A serving certificate that cannot be used is refused with one of these codes: at start,',
    '`meshguard serve` exits with code 2 and prints the code; on reload, the certificate in service',
    'is kept, the error is logged with its code and `meshguard_certificate_reload_failing` is 1.',
    '',
    '| code | meaning |',
    '|---|---|',
  );
  for (const e of Object.values(CERT_ERRORS)) out.push(`| \`${e.code}\` | ${e.summary} |`);
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
  const root = fileURLToPath(new URL('../', import.meta.url));
  for (const [page, make] of Object.entries(PAGES)) writeFileSync(`${root}${page}`, make());
  process.stdout.write(`wrote ${Object.keys(PAGES).join(', ')}\n`);
}
