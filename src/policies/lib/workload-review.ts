// What a workload rule judges in a request. CREATE, and an UPDATE that changes a controller's pod
// template, are judged whole. A Pod UPDATE is judged only on what it changes: pod-level fields
// are immutable, so only metadata and container changes (an image swap, or a container added
// through the ephemeralcontainers subresource) can introduce a violation, and a pod admitted
// before meshguard stays updatable. A controller UPDATE that leaves the template as it was
// (scaling, adoption, metadata) is not judged: the deployment controller must be able to scale
// down an old ReplicaSet while a fixed template rolls out.
import { memoKey } from '../../core/rule-set.ts';
import { isSkip, skip, type RuleContext, type Skip } from '../../core/types.ts';
import { proxyOnlyWorkload, type ProxyOnly } from './gateway-pods.ts';
import { isTerminating } from '../../core/objects.ts';
import { podTemplate, rawTemplate, sameJson, workloadKind, type ContainerRef, type PodTemplate } from './pod-template.ts';

type Json = Readonly<Record<string, unknown>>;

export interface Workload {
  readonly template: PodTemplate;
  /** 'all': CREATE or a changed template. 'changes': a Pod UPDATE, judged only on what it changes. */
  readonly scope: 'all' | 'changes';
  /** The containers to judge: all of them, or those the Pod UPDATE adds or changes. */
  readonly containers: readonly ContainerRef[];
  /** The labels to judge: all of them, or those the Pod UPDATE adds or changes. */
  readonly labels: Json;
  /** The annotations to judge: all of them, or those the Pod UPDATE adds or changes. */
  readonly annotations: Json;
}

function changedEntries(now: Json, before: Json): Json {
  return Object.fromEntries(Object.entries(now).filter(([k, v]) => !sameJson(v, before[k])));
}

function changedContainers(now: PodTemplate, before: PodTemplate): ContainerRef[] {
  return now.containers.filter((c) => {
    const old = before.containers.find((o) => o.list === c.list && o.name === c.name);
    return old === undefined || !sameJson(c.container, old.container);
  });
}

function whole(template: PodTemplate): Workload {
  return { template, scope: 'all', containers: template.containers, labels: template.labels, annotations: template.annotations };
}

const WORKLOAD = memoKey<Workload | Skip>('reviewed workload');
const GATEWAY = memoKey<ProxyOnly | undefined>('reviewed gateway');

/** The workload under review, or why there is nothing to judge. Six workload rules ask for the
 * same request, and a controller UPDATE compares two whole pod templates: the rule set's memo
 * keeps the answer for the request (it depends on the request alone; rules never edit it). */
export function reviewedWorkload(ctx: RuleContext): Workload | Skip {
  return ctx.memo.get(WORKLOAD, ctx, judgedWorkload);
}

function judgedWorkload(ctx: RuleContext): Workload | Skip {
  const req = ctx.request;
  const kind = workloadKind(req.kind.group, req.kind.kind);
  if (kind === undefined) return skip(`${req.kind.kind} is not a workload kind`);
  if (isTerminating(req.object)) return skip(`the ${kind.kind} is being deleted`);
  const template = podTemplate(req.object, kind);
  if (req.operation !== 'UPDATE' || req.oldObject === null) return whole(template);
  if (!template.isPod) {
    if (sameJson(rawTemplate(req.object, kind), rawTemplate(req.oldObject, kind))) {
      return skip('the pod template did not change (scaling, adoption or metadata update)');
    }
    return whole(template);
  }
  const before = podTemplate(req.oldObject, kind);
  return {
    template,
    scope: 'changes',
    containers: changedContainers(template, before),
    labels: changedEntries(template.labels, before.labels),
    annotations: changedEntries(template.annotations, before.annotations),
  };
}

/**
 * The reviewed workload when it is one of Istio's own gateways or waypoints (a proxy-only pod,
 * see gateway-pods.ts), else undefined. Kept per request like reviewedWorkload: several rules ask.
 */
export function reviewedGateway(ctx: RuleContext): ProxyOnly | undefined {
  return ctx.memo.get(GATEWAY, ctx, judgedGateway);
}

function judgedGateway(ctx: RuleContext): ProxyOnly | undefined {
  const w = reviewedWorkload(ctx);
  return isSkip(w) ? undefined : proxyOnlyWorkload(w.template, ctx.request, ctx.config);
}
