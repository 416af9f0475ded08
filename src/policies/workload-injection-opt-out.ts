// workload-injection-opt-out: a workload may not leave the mesh. Three ways out are closed:
// sidecar.istio.io/inject with any value other than exactly "true" (as a label, which Istio
// prefers, or as an annotation; Istio releases differ in how they parse other spellings, so any
// other value is either an opt-out or meaningless), the pod label istio.io/dataplane-mode with a
// value other than "ambient" (none takes an ambient pod out of the mesh), and a namespace that is
// not meshed. A label "true" with a conflicting annotation is reported too: Istio honours the
// label, but the annotation is a latent opt-out once the label goes.
import { isSkip, type RuleContext, type ValidatingRule, type Violation } from '../core/types.ts';
import { quote, show } from './lib/json-read.ts';
import { LABEL_DATAPLANE, meshStatus } from './lib/mesh-enrollment.ts';
import { fieldPath, WORKLOAD_KIND_REFS, workloadWebhook, type PodTemplate } from './lib/pod-template.ts';
import { INJECT } from './lib/injector.ts';
import { reviewedGateway, reviewedWorkload, type Workload } from './lib/workload-review.ts';

const ID = 'workload-injection-opt-out';

function metaPath(t: PodTemplate, map: 'labels' | 'annotations', key: string): string {
  return fieldPath(t, `metadata.${map}[${JSON.stringify(key)}]`);
}

function namespaceProblems(ctx: RuleContext, w: Workload): Violation[] {
  if (w.scope !== 'all') return [];
  const ns = ctx.request.namespace;
  const info = ctx.cluster.namespace(ns);
  if (info === undefined) {
    if (ctx.config.unknownNamespace === 'allow') return [];
    return [{
      message: `namespace ${ns} is unknown to meshguard (not in its namespace cache), so it is treated as not meshed`,
      path: 'metadata.namespace',
      value: ns,
      fix: 'create the namespace first, labelled istio-injection=enabled, and retry once meshguard has seen it',
    }];
  }
  const status = meshStatus(info.labels, ctx.config, ctx.cluster.knownRevisions());
  if (status.meshed) return [];
  const why = status.problems[0];
  const reason = (why?.message ?? 'it has no mesh label').replace(/^the namespace is not in the mesh: /, '');
  return [{
    message: `namespace ${ns} is not in the mesh: ${reason}`,
    path: 'metadata.namespace',
    value: ns,
    fix: `run the workload in a meshed namespace, or enrol namespace ${ns}: ${why?.fix ?? 'label it istio-injection=enabled'}`,
  }];
}

function injectProblems(w: Workload): Violation[] {
  const t = w.template;
  const out: Violation[] = [];
  const label = w.labels[INJECT];
  if (label !== undefined && label !== 'true') {
    out.push({
      message: `label ${INJECT} is ${quote(label)}: only exactly "true" keeps the sidecar; any other value opts out of injection or is ignored`,
      path: metaPath(t, 'labels', INJECT),
      value: show(label),
      fix: `remove the label ${INJECT} or set it to "true"`,
    });
  }
  const annotation = w.annotations[INJECT];
  if (annotation === undefined || annotation === 'true') return out;
  const labelWins = t.labels[INJECT] === 'true';
  out.push({
    message: labelWins
      ? `annotation ${INJECT} is ${quote(annotation)} and conflicts with the label "true"; Istio honours the label, but the annotation opts out once the label goes`
      : `annotation ${INJECT} is ${quote(annotation)}: only exactly "true" keeps the sidecar; any other value opts out of injection or is ignored`,
    path: metaPath(t, 'annotations', INJECT),
    value: show(annotation),
    fix: `remove the annotation ${INJECT} (the label ${INJECT}: "true" is the supported form)`,
  });
  return out;
}

function dataplaneProblems(w: Workload): Violation[] {
  const mode = w.labels[LABEL_DATAPLANE];
  if (mode === undefined || mode === 'ambient') return [];
  return [{
    message: mode === 'none'
      ? `label ${LABEL_DATAPLANE}=none takes the pod out of the ambient mesh`
      : `label ${LABEL_DATAPLANE} is ${quote(mode)}, which is not a mesh mode (only "ambient" is)`,
    path: metaPath(w.template, 'labels', LABEL_DATAPLANE),
    value: show(mode),
    fix: `remove the label ${LABEL_DATAPLANE} (the namespace decides), or set it to ambient`,
  }];
}

export const workloadInjectionOptOut: ValidatingRule = {
  id: ID,
  type: 'validating',
  title: 'Workloads may not opt out of sidecar injection or ambient capture, and must run in a meshed namespace',
  fix: `remove the ${INJECT} opt-out (or set it to "true") and run the workload in a meshed namespace`,
  match: { kinds: WORKLOAD_KIND_REFS, operations: ['CREATE', 'UPDATE'] },
  webhook: workloadWebhook({ ephemeral: false }),
  validate(ctx) {
    const w = reviewedWorkload(ctx);
    if (isSkip(w)) return w;
    const out = namespaceProblems(ctx, w);
    // Istio's gateways and waypoints are their own proxy: Istio itself labels them
    // sidecar.istio.io/inject=false and istio.io/dataplane-mode=none.
    if (reviewedGateway(ctx) !== undefined) return out;
    out.push(...injectProblems(w), ...dataplaneProblems(w));
    return out;
  },
};
