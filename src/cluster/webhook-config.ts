// The MutatingWebhookConfiguration and ValidatingWebhookConfiguration meshguard needs, generated
// from the rule registry so that they list exactly the resources the rules read. Used by the docs,
// the Helm chart check and the real-apiserver suite.
import type { Rule, WebhookResource } from '../engine/types.ts';

export type FailurePolicy = 'Fail' | 'Ignore';

export interface ClientConfig {
  readonly url?: string;
  readonly service?: { readonly namespace: string; readonly name: string; readonly port: number };
}

export interface WebhookConfigOptions {
  /** Name of both configuration objects (default meshguard). */
  readonly name?: string;
  /** Base of the client config: a URL (https://host:port) or a service; paths are added here. */
  readonly client: ClientConfig;
  /** base64 PEM CA bundle; omitted when cert-manager injects it. */
  readonly caBundle?: string;
  readonly failurePolicy: FailurePolicy;
  readonly timeoutSeconds?: number;
  /** Excluded from the default webhooks by kubernetes.io/metadata.name. */
  readonly exemptNamespaces: readonly string[];
  /** meshguard's own namespace: excluded from every webhook. */
  readonly meshguardNamespace: string;
  readonly rules: readonly Rule[];
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** Never intercepted, whatever the rule: the control plane must stay writable. */
export const ALWAYS_EXCLUDED = ['kube-system', 'kube-public', 'kube-node-lease'] as const;
export const MESH_CONFIG_NAMESPACE = 'istio-system';

type Placement = NonNullable<WebhookResource['placement']>;

interface RuleEntry {
  apiGroups: string[];
  apiVersions: string[];
  operations: string[];
  resources: string[];
  scope: '*';
}

function ruleEntries(rules: readonly Rule[], placement: Placement): RuleEntry[] {
  const merged = new Map<string, RuleEntry>();
  for (const rule of rules) {
    const ops = [...rule.match.operations].sort();
    for (const w of rule.webhook) {
      if ((w.placement ?? 'default') !== placement) continue;
      const versions = [...w.apiVersions].sort();
      const key = `${w.apiGroup}|${versions.join(',')}|${ops.join(',')}`;
      const entry = merged.get(key) ?? { apiGroups: [w.apiGroup], apiVersions: versions, operations: ops, resources: [], scope: '*' as const };
      for (const r of w.resources) if (!entry.resources.includes(r)) entry.resources.push(r);
      merged.set(key, entry);
    }
  }
  return [...merged.values()]
    .map((e) => ({ ...e, resources: [...e.resources].sort() }))
    .sort((a, b) => `${a.apiGroups[0]}/${a.resources[0]}`.localeCompare(`${b.apiGroups[0]}/${b.resources[0]}`));
}

function clientConfig(o: WebhookConfigOptions, path: string): Record<string, unknown> {
  const cc: Record<string, unknown> = {};
  if (o.client.url !== undefined) cc['url'] = `${o.client.url.replace(/\/$/, '')}${path}`;
  else if (o.client.service !== undefined) cc['service'] = { ...o.client.service, path };
  if (o.caBundle !== undefined) cc['caBundle'] = o.caBundle;
  return cc;
}

function notIn(names: readonly string[]): Record<string, unknown> {
  return { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: [...new Set(names)].sort() }] };
}

function webhook(o: WebhookConfigOptions, name: string, path: string, rules: RuleEntry[], extra: Record<string, unknown>): Record<string, unknown> {
  return {
    name,
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    matchPolicy: 'Equivalent',
    timeoutSeconds: o.timeoutSeconds ?? 5,
    failurePolicy: o.failurePolicy,
    clientConfig: clientConfig(o, path),
    rules,
    ...extra,
  };
}

function metadata(o: WebhookConfigOptions): Record<string, unknown> {
  const m: Record<string, unknown> = { name: o.name ?? 'meshguard', labels: { 'app.kubernetes.io/name': 'meshguard', ...o.labels } };
  if (o.annotations !== undefined && Object.keys(o.annotations).length > 0) m['annotations'] = { ...o.annotations };
  return m;
}

export function webhookConfigurations(o: WebhookConfigOptions): { mutating: Record<string, unknown>; validating: Record<string, unknown> } {
  const mutatingRules = o.rules.filter((r) => r.type === 'mutating');
  const validatingRules = o.rules.filter((r) => r.type === 'validating');
  const defaultExcluded = notIn([...ALWAYS_EXCLUDED, ...o.exemptNamespaces, o.meshguardNamespace]);
  const minimalExcluded = notIn([...ALWAYS_EXCLUDED, o.meshguardNamespace]);
  const validating: Record<string, unknown>[] = [
    webhook(o, 'validate.meshguard.dev', '/validate', ruleEntries(validatingRules, 'default'), { namespaceSelector: defaultExcluded }),
  ];
  const all = ruleEntries(validatingRules, 'all-namespaces');
  if (all.length > 0) validating.push(webhook(o, 'validate-all-namespaces.meshguard.dev', '/validate', all, { namespaceSelector: minimalExcluded }));
  const meshConfig = ruleEntries(validatingRules, 'mesh-config');
  if (meshConfig.length > 0) {
    // ConfigMaps double as leader-election locks: only the mesh config in istio-system is sent,
    // and the call fails open so that meshguard being down never blocks istiod's own locks.
    validating.push(
      webhook(o, 'validate-mesh-config.meshguard.dev', '/validate', meshConfig, {
        failurePolicy: 'Ignore',
        namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [MESH_CONFIG_NAMESPACE] }] },
        matchConditions: [{ name: 'istio-mesh-config', expression: "object.metadata.name == 'istio' || object.metadata.name.startsWith('istio-')" }],
      }),
    );
  }
  return {
    mutating: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: metadata(o),
      webhooks: [
        webhook(o, 'mutate.meshguard.dev', '/mutate', ruleEntries(mutatingRules, 'default'), {
          namespaceSelector: defaultExcluded,
          // The mutation only adds labels when none is present; another mutator running after it
          // cannot make it add anything new, so a second call would be wasted.
          reinvocationPolicy: 'Never',
        }),
      ],
    },
    validating: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: metadata(o),
      webhooks: validating,
    },
  };
}
