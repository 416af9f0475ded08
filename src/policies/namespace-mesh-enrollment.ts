// namespace-mesh-enrollment: a namespace must be in the mesh, on CREATE and on every UPDATE
// (including the status and finalize subresources, which can also carry label edits).
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { MESH_LABELS, meshStatus } from './lib/mesh-enrollment.ts';
import { isTerminating, labelsOf } from '../core/objects.ts';

export const namespaceMeshEnrollment: ValidatingRule = {
  id: 'namespace-mesh-enrollment',
  type: 'validating',
  title: 'Namespaces must be enrolled in the mesh',
  fix: 'label the namespace istio-injection=enabled (or istio.io/rev=<installed revision>, or istio.io/dataplane-mode=ambient)',
  match: {
    kinds: [{ group: '', kind: 'Namespace' }],
    operations: ['CREATE', 'UPDATE'],
    subResources: ['', 'status', 'finalize'],
  },
  webhook: [{ apiGroup: '', apiVersions: ['v1'], resources: ['namespaces', 'namespaces/status', 'namespaces/finalize'] }],
  validate(ctx) {
    const { request: req, config, cluster } = ctx;
    if (isTerminating(req.object)) return skip('the namespace is being deleted');
    const now = meshStatus(labelsOf(req.object), config, cluster.knownRevisions());
    if (req.operation === 'CREATE') return now.problems;

    const newLabels = labelsOf(req.object);
    const oldLabels = labelsOf(req.oldObject);
    const meshLabelsChanged = MESH_LABELS.some((k) => newLabels[k] !== oldLabels[k]);
    // Subresource writes (status, finalize) are judged only on what they change: the namespace
    // controller must be able to finalize a namespace that was never compliant.
    if (req.subResource !== '' && !meshLabelsChanged) return [];
    if (now.problems.length === 0) return [];
    const before = meshStatus(oldLabels, config, cluster.knownRevisions());
    if (!before.meshed || !meshLabelsChanged) return now.problems;
    return now.problems.map(
      (p): Violation => ({
        ...p,
        message: `this update takes the namespace out of the mesh (it was ${before.enrollment}): ${p.message}`,
        fix: `keep ${before.enrollment}`,
      }),
    );
  },
};
