// mesh-config-outbound-policy: the mesh config must keep egress closed (REGISTRY_ONLY; Istio's
// default is ALLOW_ANY) and keep traffic capture on. It reads the mesh ConfigMaps `istio` and
// `istio-<revision>` in istio-system (webhook placement 'mesh-config': istio-system only, names
// starting with istio, fail open, because ConfigMaps there also serve as istiod's leader-election
// locks), and IstioOperator spec.meshConfig (offline check, and in any namespace).
import type { AdmissionRequest, KObject } from '../admission/types.ts';
import { skip, type ValidatingRule, type Violation } from '../engine/types.ts';
import { meshConfigProblems, parseMeshData } from './lib/istio-mesh-config.ts';
import { at, ISTIO_OPERATOR, kindRef, ROOT_NAMESPACE, webhookFor } from './lib/istio.ts';
import { isRecord, isTerminating } from './lib/objects.ts';

/**
 * Why a ConfigMap is not a mesh config (undefined when it is). `istio-<suffix>` is ambiguous:
 * istiod also owns istio-ca-root-cert, istio-sidecar-injector and leader-election locks such as
 * istio-leader. Such a name counts when the suffix is a known revision or the ConfigMap has a
 * `mesh` key, so that istiod's own ConfigMaps are never denied for lacking one.
 */
function notMeshConfig(req: AdmissionRequest, object: KObject, revisions: ReadonlySet<string>): string | undefined {
  if (req.namespace !== ROOT_NAMESPACE) return `not in ${ROOT_NAMESPACE}`;
  const name = typeof object.metadata?.name === 'string' ? object.metadata.name : req.name;
  if (name === 'istio') return undefined;
  if (!name.startsWith('istio-')) return 'not a mesh config ConfigMap';
  if (revisions.has(name.slice('istio-'.length)) || at(object, 'data', 'mesh') !== undefined) return undefined;
  return 'not a mesh config ConfigMap (no mesh key, and not named after a known revision)';
}

function configMapProblems(object: KObject): Violation[] {
  const parsed = parseMeshData(at(object, 'data', 'mesh'));
  if ('problem' in parsed) return [parsed.problem];
  return meshConfigProblems(parsed.mesh, (field) => `data.mesh > ${field}`);
}

/** An IstioOperator's mesh config: spec.meshConfig, or the Helm-style spec.values.meshConfig. */
function operatorProblems(object: KObject): Violation[] {
  const top = at(object, 'spec', 'meshConfig');
  const values = at(object, 'spec', 'values', 'meshConfig');
  const [mesh, base] = isRecord(top) ? [top, 'spec.meshConfig'] : isRecord(values) ? [values, 'spec.values.meshConfig'] : [{}, 'spec.meshConfig'];
  return meshConfigProblems(mesh, (field) => `${base}.${field}`);
}

export const meshConfigOutboundPolicy: ValidatingRule = {
  id: 'mesh-config-outbound-policy',
  type: 'validating',
  title: 'The mesh config must set outboundTrafficPolicy REGISTRY_ONLY and keep traffic capture on',
  fix: 'set meshConfig outboundTrafficPolicy.mode: REGISTRY_ONLY and do not set defaultConfig.interceptionMode: NONE',
  match: {
    kinds: [{ group: '', kind: 'ConfigMap' }, kindRef(ISTIO_OPERATOR)],
    operations: ['CREATE', 'UPDATE'],
    exemptions: 'none',
  },
  webhook: [{ placement: 'mesh-config', apiGroup: '', apiVersions: ['v1'], resources: ['configmaps'] }, webhookFor(ISTIO_OPERATOR)],
  validate({ request: req, cluster }) {
    const object = req.object;
    if (object === null) return skip('no object');
    if (req.kind.kind === ISTIO_OPERATOR.kind) return isTerminating(req.object) ? skip('the IstioOperator is being deleted') : operatorProblems(object);
    const reason = notMeshConfig(req, object, cluster.knownRevisions());
    if (reason !== undefined) return skip(reason);
    if (isTerminating(req.object)) return skip('the ConfigMap is being deleted');
    return configMapProblems(object);
  },
};
