// Named skip predicates: whether a rule applies to a request, and if not, why.
import type { AdmissionRequest } from '../admission/types.ts';
import type { Config } from '../config/types.ts';
import type { Rule } from './types.ts';

/** The namespace a request is about: the Namespace's own name, or the object's namespace. */
export function subjectNamespace(req: AdmissionRequest): string {
  if (req.kind.group === '' && req.kind.kind === 'Namespace') {
    const name = req.object?.metadata?.name ?? req.oldObject?.metadata?.name;
    return typeof name === 'string' && name !== '' ? name : req.name;
  }
  return req.namespace;
}

const exemptCache = new WeakMap<Config, ReadonlySet<string>>();

export function exemptNamespaces(config: Config): ReadonlySet<string> {
  let set = exemptCache.get(config);
  if (set === undefined) {
    set = new Set([...config.exemptNamespaces, ...config.gatewayNamespaces, config.meshguardNamespace]);
    exemptCache.set(config, set);
  }
  return set;
}

export function isExempt(config: Config, namespace: string): boolean {
  return namespace !== '' && exemptNamespaces(config).has(namespace);
}

/** undefined when the rule applies; otherwise the reason it is skipped. */
export function skipReason(rule: Rule, req: AdmissionRequest, config: Config): string | undefined {
  if (config.rules[rule.id]?.enabled === false) return 'rule disabled in configuration';
  const m = rule.match;
  if (!m.kinds.some((k) => k.group === req.kind.group && k.kind === req.kind.kind)) return 'kind not matched';
  if (!m.operations.includes(req.operation)) return 'operation not matched';
  if (!(m.subResources ?? ['']).includes(req.subResource)) return 'subresource not matched';
  if (req.object === null) return 'no object in the request';
  if ((m.exemptions ?? 'namespaces') === 'namespaces' && isExempt(config, subjectNamespace(req))) {
    return `namespace ${subjectNamespace(req)} is exempt`;
  }
  return undefined;
}
