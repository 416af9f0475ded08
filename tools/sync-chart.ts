// Writes the parts of the chart that come from the code, so the chart cannot drift from it:
//   files/generated.json   the webhooks (from webhookConfigurations() over the rule registry) with
//                          placeholders for what the values decide, and the RBAC resource lists
//                          of the periodic scan and the reconciler
//   crds/meshguard.dev_meshguardexceptions.yaml  the MeshguardException CRD, its rule ids from
//                          the registry
//   values.schema.json     its `config` property: toJsonSchema(CONFIG_SCHEMA), with the rule ids
//                          as the only keys of config.rules and the template's lists required
//
//   node tools/sync-chart.ts           # rewrite both
//   node tools/sync-chart.ts --check   # exit 1 when either is stale
// test/unit/helm-chart.test.ts fails when they are stale.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { stringify as toYamlText } from 'yaml';
import { EXCEPTION_GROUP, EXCEPTION_KIND, EXCEPTION_PLURAL, EXCEPTION_VERSION } from '../src/core/exception-model.ts';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { scanTargets } from '../src/jobs/scan/targets.ts';
import { webhookConfigurations, type WebhookConfigOptions } from '../src/policies/webhook-config.ts';
import { loadConfig } from '../src/config/load.ts';
import { toJsonSchema } from '../src/config/validate.ts';
import { CONFIG_SCHEMA } from '../src/config/schema.ts';
import { RULE_IDS, RULES, VALIDATING_RULES } from '../src/policies/registry.ts';
import { MANAGED_KINDS, NAMES, NETWORK_POLICY_KIND } from '../src/jobs/reconciler/resources.ts';

export const CHART_DIR = fileURLToPath(new URL('../charts/meshguard/', import.meta.url));
export const GENERATED_FILE = join(CHART_DIR, 'files', 'generated.json');
export const SCHEMA_FILE = join(CHART_DIR, 'values.schema.json');
export const CRD_FILE = join(CHART_DIR, 'crds', 'meshguard.dev_meshguardexceptions.yaml');

/** Placeholders the webhook templates replace with values. */
export const PLACEHOLDER = Object.freeze({
  /** failurePolicy that follows the mode (or webhook.failurePolicy). */
  failurePolicy: '__FAILURE_POLICY__',
  timeoutSeconds: '__TIMEOUT_SECONDS__',
  /** In a namespaceSelector value list: config.exemptNamespaces. */
  exempt: '__EXEMPT_NAMESPACES__',
  /** In a namespaceSelector value list: the release namespace (meshguard's own). */
  release: '__RELEASE_NAMESPACE__',
});

type Json = Record<string, unknown>;
type Webhook = Json & { name: string; clientConfig: Json; namespaceSelector?: Json };

function webhooksOf(options: Partial<WebhookConfigOptions>): { mutating: Webhook[]; validating: Webhook[] } {
  const { mutating, validating } = webhookConfigurations({
    client: { service: { namespace: PLACEHOLDER.release, name: 'svc', port: 443 } },
    failurePolicy: 'Fail',
    timeoutSeconds: 5,
    exemptNamespaces: [PLACEHOLDER.exempt],
    meshguardNamespace: PLACEHOLDER.release,
    rules: RULES,
    ...options,
  });
  return { mutating: mutating['webhooks'] as Webhook[], validating: validating['webhooks'] as Webhook[] };
}

/**
 * One webhook as the template consumes it: the generated webhook without clientConfig, plus the
 * path, with placeholders where the output depends on the inputs (found by generating twice with
 * different inputs and comparing).
 */
function templateWebhook(w: Webhook, other: { ignore: Webhook; timeout: Webhook }): Json {
  const service = (w.clientConfig['service'] ?? {}) as Json;
  if (typeof service['path'] !== 'string') throw new Error(`webhook ${w.name}: expected a service clientConfig with a path`);
  const { clientConfig: _cc, ...rest } = w;
  const out: Json = { ...rest, path: service['path'] };
  if (other.ignore['failurePolicy'] !== w['failurePolicy']) out['failurePolicy'] = PLACEHOLDER.failurePolicy;
  if (other.timeout['timeoutSeconds'] !== w['timeoutSeconds']) out['timeoutSeconds'] = PLACEHOLDER.timeoutSeconds;
  const sel = w.namespaceSelector;
  if (sel !== undefined) {
    const keys = Object.keys(sel);
    if (keys.some((k) => k !== 'matchExpressions')) throw new Error(`webhook ${w.name}: the chart templates only understand matchExpressions in namespaceSelector`);
  }
  return out;
}

export interface ChartGenerated {
  readonly comment: string;
  readonly mutating: readonly Json[];
  readonly validating: readonly Json[];
  /** RBAC for the periodic scan (list) and the reconciler (read and write), by API group. */
  readonly rbac: {
    readonly scan: readonly { apiGroups: string[]; resources: string[] }[];
    readonly reconciler: readonly { apiGroups: string[]; resources: string[] }[];
    /** The reconciler's NetworkPolicies (reconciler.networkPolicies.enabled): update and delete only by these names (plus the configured extras). */
    readonly networkPolicies: { apiGroups: string[]; resources: string[]; builtinNames: string[] };
  };
}

function byGroup(entries: readonly { group: string; resource: string }[]): { apiGroups: string[]; resources: string[] }[] {
  const m = new Map<string, Set<string>>();
  for (const e of entries) m.set(e.group, (m.get(e.group) ?? new Set()).add(e.resource));
  return [...m.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([g, rs]) => ({ apiGroups: [g], resources: [...rs].sort() }));
}

export function chartGenerated(): ChartGenerated {
  const base = webhooksOf({});
  const ignore = webhooksOf({ failurePolicy: 'Ignore' });
  const timeout = webhooksOf({ timeoutSeconds: 7 });
  const pair = (kind: 'mutating' | 'validating'): Json[] =>
    base[kind].map((w, i) => templateWebhook(w, { ignore: ignore[kind][i] as Webhook, timeout: timeout[kind][i] as Webhook }));
  const defaults = loadConfig({ ruleIds: RULE_IDS });
  return {
    comment: 'Generated by `node tools/sync-chart.ts` from the rule registry and the reconciler; do not edit.',
    mutating: pair('mutating'),
    validating: pair('validating'),
    rbac: {
      scan: byGroup(scanTargets(VALIDATING_RULES, defaults).map((t) => ({ group: t.group, resource: t.resource }))),
      reconciler: byGroup(MANAGED_KINDS.map((k) => ({ group: k.group, resource: k.plural }))),
      networkPolicies: {
        apiGroups: [NETWORK_POLICY_KIND.group],
        resources: [NETWORK_POLICY_KIND.plural],
        builtinNames: [NAMES.netpolDefaultDeny, NAMES.netpolIngress, NAMES.netpolEgress, NAMES.netpolAmbient],
      },
    },
  };
}

/** Lists the templates read from `config` (a null there removes the key in Helm, and the
 * template would fail with a nil pointer): the schema requires them. */
export const REQUIRED_CONFIG_LISTS = ['exemptNamespaces'] as const;

/**
 * The chart's schema for `config`: the configuration schema, with `rules` keys limited to the
 * registered rule ids (a mistyped id fails `helm install` instead of meshguard's start-up) and
 * the lists the templates read required.
 */
export function chartConfigSchema(): Json {
  const base = toJsonSchema(CONFIG_SCHEMA);
  const props = base['properties'] as Json;
  const rules = props['rules'] as Json;
  return {
    ...base,
    required: [...REQUIRED_CONFIG_LISTS],
    properties: { ...props, rules: { ...rules, propertyNames: { enum: [...RULE_IDS] } } },
  };
}

/** values.schema.json with its `config` property replaced by the configuration schema. */
export function valuesSchema(current: Json): Json {
  const props = (current['properties'] ?? {}) as Json;
  return { ...current, properties: { ...props, config: chartConfigSchema() } };
}

/** The MeshguardException CustomResourceDefinition (docs/exceptions.md). */
export function exceptionCrd(): Json {
  const str = { type: 'string' };
  const strings = { type: 'array', items: str };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${EXCEPTION_PLURAL}.${EXCEPTION_GROUP}`, labels: { 'app.kubernetes.io/part-of': 'meshguard' } },
    spec: {
      group: EXCEPTION_GROUP,
      scope: 'Namespaced',
      names: { kind: EXCEPTION_KIND, listKind: `${EXCEPTION_KIND}List`, plural: EXCEPTION_PLURAL, singular: EXCEPTION_KIND.toLowerCase(), shortNames: ['mgex'], categories: ['meshguard'] },
      versions: [
        {
          name: EXCEPTION_VERSION,
          served: true,
          storage: true,
          additionalPrinterColumns: [
            { name: 'Rules', type: 'string', jsonPath: '.spec.rules[*].id' },
            { name: 'Expires', type: 'string', format: 'date-time', jsonPath: '.spec.expires' },
            { name: 'Reason', type: 'string', jsonPath: '.spec.reason', priority: 1 },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: 'An admin-approved, time-bound exception from meshguard rules for named or selected objects of some kinds in this namespace. Only meshguard administrators may create or change one.',
              required: ['spec'],
              properties: {
                apiVersion: str,
                kind: str,
                metadata: { type: 'object' },
                spec: {
                  type: 'object',
                  required: ['kinds', 'rules', 'reason', 'expires'],
                  'x-kubernetes-validations': [{ rule: '(has(self.names) && size(self.names) > 0) || has(self.selector)', message: 'names or selector must say which objects the exception covers' }],
                  properties: {
                    kinds: { ...strings, minItems: 1, description: 'Kinds covered: Kind for the core group (Pod), group/Kind otherwise (apps/DaemonSet).', items: { type: 'string', pattern: '^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Z][A-Za-z0-9]*$' } },
                    names: { ...strings, description: 'Objects covered by name.' },
                    selector: {
                      type: 'object',
                      description: 'Objects covered by their labels (a label selector).',
                      properties: {
                        matchLabels: { type: 'object', additionalProperties: str },
                        matchExpressions: {
                          type: 'array',
                          items: { type: 'object', required: ['key', 'operator'], properties: { key: str, operator: { type: 'string', enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] }, values: strings } },
                        },
                      },
                    },
                    rules: {
                      type: 'array',
                      minItems: 1,
                      description: 'Rules excepted; with values, only findings whose offending value is one of them.',
                      items: { type: 'object', required: ['id'], properties: { id: { type: 'string', enum: [...RULE_IDS] }, values: { ...strings, minItems: 1 } } },
                    },
                    reason: { type: 'string', minLength: 1, description: 'Why: shown in every admission the exception lets through.' },
                    expires: { type: 'string', format: 'date-time', description: 'RFC 3339; from then on the exception no longer applies.' },
                  },
                },
              },
            },
          },
        },
      ],
    },
  };
}

const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

/** The files as they should be: path to content. */
export function expectedFiles(): Record<string, string> {
  return {
    [GENERATED_FILE]: json(chartGenerated()),
    [SCHEMA_FILE]: json(valuesSchema(JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as Json)),
    [CRD_FILE]: `# Generated by \`node tools/sync-chart.ts\` from the rule registry; do not edit.\n${toYamlText(exceptionCrd(), { lineWidth: 0 })}`,
  };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const [path, content] of Object.entries(expectedFiles())) {
    let now = '';
    try {
      now = readFileSync(path, 'utf8');
    } catch {
      // missing
    }
    if (now === content) continue;
    stale++;
    if (check) process.stderr.write(`stale: ${path} (run node tools/sync-chart.ts)\n`);
    else {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, content);
      process.stderr.write(`wrote ${path}\n`);
    }
  }
  process.exitCode = check && stale > 0 ? 1 : 0;
}
