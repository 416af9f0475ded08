// The definition every rule shares: when is a namespace in the mesh, and how? Answered from the
// labels Istio selects on (pinned istio.io/istio module): istiod's injector webhooks select
// istio-injection=enabled or istio.io/rev=<revision or tag>
// (manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml), the ambient
// CNI selects istio.io/dataplane-mode=ambient (cni/pkg/util/enablement_selector.go), and both
// injection labels together are Istio's analyzer warning IST0123.
import type { Config } from '../../config/types.ts';
import type { Violation } from '../../core/types.ts';

export const LABEL_INJECTION = 'istio-injection';
export const LABEL_REV = 'istio.io/rev';
export const LABEL_DATAPLANE = 'istio.io/dataplane-mode';
export const MESH_LABELS = [LABEL_INJECTION, LABEL_REV, LABEL_DATAPLANE] as const;
/** The labels of istiod's injector webhooks (MutatingWebhookConfigurations) that name the
 * revisions a namespace's istio.io/rev may select: the revision, and a revision tag. */
export const REVISION_WEBHOOK_LABELS = [LABEL_REV, 'istio.io/tag'] as const;

export type Dataplane = 'sidecar' | 'ambient' | 'none';

export interface MeshStatus {
  /** In the mesh, with no conflicting or weakening label. */
  readonly meshed: boolean;
  readonly dataplane: Dataplane;
  /** How it is enrolled, e.g. "istio-injection=enabled" (empty when not). */
  readonly enrollment: string;
  /** Why it is not (or not safely) meshed. */
  readonly problems: readonly Violation[];
}

export function labelPath(key: string): string {
  return `metadata.labels["${key}"]`;
}

const ENROLL_FIX =
  'label the namespace istio-injection=enabled (or istio.io/rev=<installed revision>, or istio.io/dataplane-mode=ambient), or remove the label and let meshguard add the default';

function revisionProblem(rev: string, known: ReadonlySet<string>): Violation {
  const list = known.size === 0 ? 'none configured or discovered' : [...known].sort().join(', ');
  return {
    message: `istio.io/rev "${rev}" names no installed Istio revision or tag (known: ${list}); no injector would inject its pods`,
    path: labelPath(LABEL_REV),
    value: rev,
    fix: 'use an installed revision or tag, or add the revision to the meshguard configuration (revisions)',
  };
}

function dataplaneProblem(value: string, config: Config): Violation | undefined {
  if (value === 'ambient') {
    if (config.ambient.allowed) return undefined;
    return {
      message: 'ambient mode is not allowed by the meshguard configuration',
      path: labelPath(LABEL_DATAPLANE),
      value,
      fix: 'use sidecar injection (istio-injection=enabled) or ask the platform team to allow ambient',
    };
  }
  return {
    message:
      value === 'none'
        ? 'istio.io/dataplane-mode=none takes the namespace out of the mesh'
        : `istio.io/dataplane-mode "${value}" is not a mesh mode (only "ambient" is)`,
    path: labelPath(LABEL_DATAPLANE),
    value,
    fix: `remove the label, or set it to ambient; ${ENROLL_FIX}`,
  };
}

/** Evaluate the mesh labels of a namespace. Labels are read defensively (any shape). */
export function meshStatus(labels: unknown, config: Config, knownRevisions: ReadonlySet<string>): MeshStatus {
  const l = typeof labels === 'object' && labels !== null ? (labels as Record<string, unknown>) : {};
  const inj = l[LABEL_INJECTION];
  const rev = l[LABEL_REV];
  const dp = l[LABEL_DATAPLANE];
  const problems: Violation[] = [];
  let sidecar = false;

  if (inj !== undefined) {
    if (inj === 'enabled') sidecar = true;
    else {
      problems.push({
        message: `istio-injection is ${JSON.stringify(inj)}; only "enabled" puts the namespace in the mesh`,
        path: labelPath(LABEL_INJECTION),
        value: String(inj),
        fix: 'set istio-injection=enabled, or remove the label and let meshguard add the default',
      });
    }
    if (rev !== undefined) {
      problems.push({
        message: 'istio-injection and istio.io/rev are both set; istio-injection wins and silently selects the default revision (IST0123)',
        path: labelPath(LABEL_REV),
        value: String(rev),
        fix: 'keep only one: istio.io/rev=<revision> for revision-based injection, or istio-injection=enabled',
      });
    }
  } else if (rev !== undefined) {
    if (typeof rev === 'string' && knownRevisions.has(rev)) sidecar = true;
    else problems.push(revisionProblem(String(rev), knownRevisions));
  }

  let ambient = false;
  if (dp !== undefined) {
    const p = dataplaneProblem(String(dp), config);
    if (p === undefined) ambient = true;
    else problems.push(p);
  }

  if (!sidecar && !ambient && problems.length === 0) {
    problems.push({
      message: 'the namespace is not in the mesh: it has no istio-injection, istio.io/rev or istio.io/dataplane-mode label',
      path: 'metadata.labels',
      fix: ENROLL_FIX,
    });
  }
  const dataplane: Dataplane = sidecar ? 'sidecar' : ambient ? 'ambient' : 'none';
  const enrollment = sidecar
    ? inj === 'enabled'
      ? 'istio-injection=enabled'
      : `istio.io/rev=${String(rev)}`
    : ambient
      ? 'istio.io/dataplane-mode=ambient'
      : '';
  return { meshed: problems.length === 0 && dataplane !== 'none', dataplane, enrollment, problems };
}

/** The label the mutation adds to a namespace that has no mesh label. */
export function injectionLabel(config: Config): readonly [string, string] {
  switch (config.injection.mode) {
    case 'revision':
      return [LABEL_REV, config.injection.revision];
    case 'ambient':
      return [LABEL_DATAPLANE, 'ambient'];
    case 'sidecar':
      return [LABEL_INJECTION, 'enabled'];
  }
}
