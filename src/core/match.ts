// Named skip predicates: whether a rule applies to a request, and if not, why.
import type { AdmissionRequest } from './request.ts';
import { EXEMPT_LABEL, EXEMPT_VALUE, type ClusterView } from './cluster-view.ts';
import type { Config } from '../config/types.ts';
import { PLAN_LIMIT, type MatchPlan, type RuleSet } from './rule-set.ts';
import { results, type Rule } from './types.ts';
import { isAdmin } from './users.ts';

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

/** The part of skipReason that depends only on the configuration and the request's kind,
 * operation and subresource. */
function staticSkipReason(rule: Rule, req: AdmissionRequest, config: Config): string | undefined {
  if (config.rules[rule.id]?.enabled === false) return 'rule disabled in configuration';
  const m = rule.match;
  if (!m.kinds.some((k) => k.group === req.kind.group && k.kind === req.kind.kind)) return 'kind not matched';
  if (!m.operations.includes(req.operation)) return 'operation not matched';
  if (!(m.subResources ?? ['']).includes(req.subResource)) return 'subresource not matched';
  return undefined;
}

/** What the request-dependent skips need, worked out once per request. */
export interface RequestSubject {
  readonly hasObject: boolean;
  readonly namespace: string;
  readonly exempt: boolean;
}

export function requestSubject(req: AdmissionRequest, config: Config, cluster?: ClusterView): RequestSubject {
  const namespace = subjectNamespace(req);
  return { hasObject: req.object !== null, namespace, exempt: isExempt(config, namespace) || exemptByLabel(req, config, namespace, cluster) };
}

/** Labelled meshguard.dev/exempt=infrastructure. A Namespace by the label an administrator writes,
 * else by the stored one (as the mode label: a tenant's label is not trusted, and
 * control-labels-admin-only, which ignores exemptions, denies it); anything in a namespace by
 * the namespace's label in the cluster state. */
function exemptByLabel(req: AdmissionRequest, config: Config, namespace: string, cluster: ClusterView | undefined): boolean {
  if (req.kind.group === '' && req.kind.kind === 'Namespace') {
    const trusted = isAdmin(config, req) ? req.object : req.oldObject;
    return trusted?.metadata?.labels?.[EXEMPT_LABEL] === EXEMPT_VALUE;
  }
  return namespace !== '' && cluster?.namespace(namespace)?.labels[EXEMPT_LABEL] === EXEMPT_VALUE;
}

/** The part that depends on the request's object and namespace: what is left of skipReason for a
 * rule that matchPlan did not skip. */
export function requestSkipReason(rule: Rule, subject: RequestSubject): string | undefined {
  if (!subject.hasObject) return 'no object in the request';
  if (subject.exempt && (rule.match.exemptions ?? 'namespaces') === 'namespaces') return `namespace ${subject.namespace} is exempt`;
  return undefined;
}

/** undefined when the rule applies; otherwise the reason it is skipped. */
export function skipReason(rule: Rule, req: AdmissionRequest, config: Config, cluster?: ClusterView): string | undefined {
  return staticSkipReason(rule, req, config) ?? requestSkipReason(rule, requestSubject(req, config, cluster));
}

/**
 * The static half of skipReason for every validating rule of the set at once, memoized by the set
 * per configuration and (group, kind, operation, subresource): a request then only pays the
 * object and exemption checks for the rules that match its kind. At most PLAN_LIMIT shapes are
 * kept per configuration.
 */
export function matchPlan(set: RuleSet, req: AdmissionRequest, config: Config): MatchPlan {
  const known = set.plans(config);
  const { group, kind } = req.kind;
  const { operation, subResource } = req;
  const shapes = known.byKind.get(kind);
  if (shapes !== undefined) {
    for (let i = 0; i < shapes.length; i++) {
      const s = shapes[i] as NonNullable<typeof shapes>[number];
      if (s.group === group && s.operation === operation && s.subResource === subResource) return s.plan;
    }
  }
  const plan: MatchPlan = Object.freeze(
    set.validating.map((rule) => {
      const reason = staticSkipReason(rule, req, config);
      return reason === undefined ? undefined : Object.freeze(results.skip(rule.id, reason));
    }),
  );
  if (known.size < PLAN_LIMIT) {
    known.size++;
    if (shapes === undefined) known.byKind.set(kind, [{ group, operation, subResource, plan }]);
    else shapes.push({ group, operation, subResource, plan });
  }
  return plan;
}
