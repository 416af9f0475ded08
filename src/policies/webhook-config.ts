// The MutatingWebhookConfiguration and ValidatingWebhookConfiguration meshguard needs, generated
// from the rule registry so that they list exactly the resources the rules read. Used by the docs,
// the Helm chart check and the real-apiserver suite.
import type { Rule, WebhookResource } from '../core/types.ts';
import { EXEMPT_LABEL, EXEMPT_VALUE } from '../core/cluster-view.ts';

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

function clientConfig(options: WebhookConfigOptions, path: string): Record<string, unknown> {
  const cc: Record<string, unknown> = {};
  if (options.client.url !== undefined) cc['url'] = `${options.client.url.replace(/\/$/, '')}${path}`;
  else if (options.client.service !== undefined) cc['service'] = { ...options.client.service, path };
  if (options.caBundle !== undefined) cc['caBundle'] = options.caBundle;
  return cc;
}

function notIn(names: readonly string[], settings: { exemptLabel?: boolean } = {}): Record<string, unknown> {
  const byName = { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: [...new Set(names)].sort() };
  // NotIn also matches namespaces without the label: only the labelled ones are left out.
  const byLabel = { key: EXEMPT_LABEL, operator: 'NotIn', values: [EXEMPT_VALUE] };
  return { matchExpressions: settings.exemptLabel === true ? [byName, byLabel] : [byName] };
}

const LABELS_OR_ANNOTATIONS_CHANGED =
  'object.metadata.?labels.orValue({}) != oldObject.metadata.?labels.orValue({}) || object.metadata.?annotations.orValue({}) != oldObject.metadata.?annotations.orValue({})';

/**
 * matchConditions (CEL; the webhook is called only when every one holds) that keep meshguard off
 * the deletion path, so that deleting works while meshguard is down, whatever the failure policy.
 * Neither skips anything a rule could object to: rules read labels, annotations and spec.
 */
export const DELETION_PATH_CONDITIONS = Object.freeze([
  // An update of an object that is already being deleted (the stored object has a
  // deletionTimestamp) that leaves its labels, annotations and spec as they were: a controller
  // removing its finalizer. Such objects start nothing new.
  {
    name: 'not-deletion-bookkeeping',
    expression: `request.operation != 'UPDATE' || !has(oldObject.metadata.deletionTimestamp) || object.?spec.orValue({}) != oldObject.?spec.orValue({}) || ${LABELS_OR_ANNOTATIONS_CHANGED}`,
  },
]);

/**
 * The namespace webhook's further conditions. namespaces/status and namespaces/finalize are
 * intercepted because a write through them may also change labels (their strategies keep the
 * submitted metadata): only such writes are sent, so the namespace controller's status updates
 * and its final finalize call never wait for meshguard. A namespace labelled
 * meshguard.dev/exempt=infrastructure that stays so is sent only when its labels or annotations
 * change (the label is guarded there), so its operator's other writes never wait either.
 */
export const NAMESPACE_CONDITIONS = Object.freeze([
  {
    name: 'subresource-label-edits-only',
    expression: `!has(request.subResource) || request.subResource == '' || ${LABELS_OR_ANNOTATIONS_CHANGED}`,
  },
  {
    name: 'exempt-namespace-label-edits-only',
    expression: `request.operation != 'UPDATE' || object.metadata.?labels[?'${EXEMPT_LABEL}'].orValue('') != '${EXEMPT_VALUE}' || oldObject.metadata.?labels[?'${EXEMPT_LABEL}'].orValue('') != '${EXEMPT_VALUE}' || ${LABELS_OR_ANNOTATIONS_CHANGED}`,
  },
]);

const isNamespaceResource = (r: string): boolean => r === 'namespaces' || r.startsWith('namespaces/');

/** Entries split by whether they are core namespaces (the namespace webhook) or anything else. */
function splitNamespaces(entries: RuleEntry[]): { namespaces: RuleEntry[]; rest: RuleEntry[] } {
  const namespaces: RuleEntry[] = [];
  const rest: RuleEntry[] = [];
  for (const e of entries) {
    const core = e.apiGroups.length === 1 && e.apiGroups[0] === '';
    const ns = core ? e.resources.filter(isNamespaceResource) : [];
    const other = core ? e.resources.filter((r) => !isNamespaceResource(r)) : e.resources;
    if (ns.length > 0) namespaces.push({ ...e, resources: ns });
    if (other.length > 0) rest.push({ ...e, resources: other });
  }
  return { namespaces, rest };
}

function webhook(options: WebhookConfigOptions, name: string, path: string, rules: RuleEntry[], extra: Record<string, unknown>): Record<string, unknown> {
  return {
    name,
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    matchPolicy: 'Equivalent',
    timeoutSeconds: options.timeoutSeconds ?? 5,
    failurePolicy: options.failurePolicy,
    clientConfig: clientConfig(options, path),
    rules,
    ...extra,
  };
}

function metadata(options: WebhookConfigOptions): Record<string, unknown> {
  const m: Record<string, unknown> = { name: options.name ?? 'meshguard', labels: { 'app.kubernetes.io/name': 'meshguard', ...options.labels } };
  if (options.annotations !== undefined && Object.keys(options.annotations).length > 0) m['annotations'] = { ...options.annotations };
  return m;
}

export function webhookConfigurations(options: WebhookConfigOptions): { mutating: Record<string, unknown>; validating: Record<string, unknown> } {
  const mutatingRules = options.rules.filter((r) => r.type === 'mutating');
  const validatingRules = options.rules.filter((r) => r.type === 'validating');
  const defaultNames = [...ALWAYS_EXCLUDED, ...options.exemptNamespaces, options.meshguardNamespace];
  // Workloads: not in infrastructure namespaces labelled exempt either, so that their Pods (a
  // CNI's, after a node replacement) start while meshguard is down.
  const workloadExcluded = notIn(defaultNames, { exemptLabel: true });
  const minimalExcluded = notIn([...ALWAYS_EXCLUDED, options.meshguardNamespace]);
  const { namespaces, rest } = splitNamespaces(ruleEntries(validatingRules, 'default'));
  const validating: Record<string, unknown>[] = [];
  // Namespaces have their own webhook, excluded by name only: a selector on the exempt label would
  // also hide a tenant's attempt to set it from the rule that guards it.
  if (namespaces.length > 0) {
    validating.push(
      webhook(options, 'validate.meshguard.dev', '/validate', namespaces, {
        namespaceSelector: notIn(defaultNames),
        matchConditions: [...DELETION_PATH_CONDITIONS, ...NAMESPACE_CONDITIONS],
      }),
    );
  }
  if (rest.length > 0) {
    validating.push(webhook(options, 'validate-workloads.meshguard.dev', '/validate', rest, { namespaceSelector: workloadExcluded, matchConditions: [...DELETION_PATH_CONDITIONS] }));
  }
  const all = ruleEntries(validatingRules, 'all-namespaces');
  if (all.length > 0) validating.push(webhook(options, 'validate-all-namespaces.meshguard.dev', '/validate', all, { namespaceSelector: minimalExcluded, matchConditions: [...DELETION_PATH_CONDITIONS] }));
  const meshConfig = ruleEntries(validatingRules, 'mesh-config');
  if (meshConfig.length > 0) {
    // ConfigMaps double as leader-election locks: only the mesh config in istio-system is sent,
    // and the call fails open so that meshguard being down never blocks istiod's own locks.
    validating.push(
      webhook(options, 'validate-mesh-config.meshguard.dev', '/validate', meshConfig, {
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
      metadata: metadata(options),
      webhooks: [
        webhook(options, 'mutate.meshguard.dev', '/mutate', ruleEntries(mutatingRules, 'default'), {
          // Never enrol an infrastructure namespace in the mesh (its creation is still validated).
          namespaceSelector: workloadExcluded,
          // The mutation only adds labels when none is present; another mutator running after it
          // cannot make it add anything new, so a second call would be wasted.
          reinvocationPolicy: 'Never',
        }),
      ],
    },
    validating: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: metadata(options),
      webhooks: validating,
    },
  };
}
