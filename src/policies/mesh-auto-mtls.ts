// mesh-auto-mtls: with auto mTLS turned off (meshConfig enableAutoMtls: false), a client sidecar
// only originates mTLS where a DestinationRule says ISTIO_MUTUAL; everything else leaves in
// plaintext, which STRICT servers then refuse or PERMISSIVE ones accept. The hardening guides
// pair the two: auto mTLS off only together with a root DestinationRule (root namespace, host
// *.local or similar, tls.mode ISTIO_MUTUAL). Admission of the mesh config cannot see the
// DestinationRules, so it only warns (advisory); scan judges the pair.
import { skip, type ValidatingRule } from '../core/types.ts';
import { DESTINATION_RULE, ISTIO_OPERATOR, kindRef, ROOT_NAMESPACE, webhookFor } from './lib/istio-kinds.ts';
import { at, show } from './lib/json-read.ts';
import { finding, ofKind, requestObject } from './lib/inventory.ts';
import { meshConfigOf } from './lib/mesh-config.ts';

/** Hosts that cover every in-mesh service. */
export const ROOT_DR_HOSTS: readonly string[] = ['*', '*.local', '*.cluster.local', '*.svc.cluster.local'];

const MESSAGE = 'auto mTLS is off (enableAutoMtls: false): sidecars send plaintext unless a DestinationRule sets tls.mode ISTIO_MUTUAL';
const FIX = `keep enableAutoMtls on, or create a DestinationRule in ${ROOT_NAMESPACE} for host "*.local" with trafficPolicy.tls.mode ISTIO_MUTUAL`;

export const meshAutoMtls: ValidatingRule = {
  id: 'mesh-auto-mtls',
  type: 'validating',
  title: `Auto mTLS may be off only with a root DestinationRule using ISTIO_MUTUAL (${ROOT_NAMESPACE}, host *.local)`,
  fix: FIX,
  defaultMode: 'audit',
  match: { kinds: [{ group: '', kind: 'ConfigMap' }, kindRef(ISTIO_OPERATOR)], operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: [{ placement: 'mesh-config', apiGroup: '', apiVersions: ['v1'], resources: ['configmaps'] }, webhookFor(ISTIO_OPERATOR), webhookFor(DESTINATION_RULE)],
  validate({ request: req }) {
    const source = meshConfigOf(requestObject(req));
    if (source === undefined) return skip('not a mesh config');
    if (source.mesh['enableAutoMtls'] !== false) return [];
    return [{ message: `${MESSAGE}; meshguard cannot see DestinationRules here, scan checks the root one`, path: source.path('enableAutoMtls'), value: 'false', fix: FIX, advisory: true }];
  },
  inventory({ objects, served }) {
    if (!served(DESTINATION_RULE.group, DESTINATION_RULE.resource)) return [];
    const rootRule = ofKind(objects, DESTINATION_RULE.group, DESTINATION_RULE.kind).some((d) => {
      const exportTo = at(d, 'spec', 'exportTo');
      const exported = !Array.isArray(exportTo) || exportTo.length === 0 || exportTo.includes('*');
      return d.metadata?.namespace === ROOT_NAMESPACE && exported && ROOT_DR_HOSTS.includes(show(at(d, 'spec', 'host'))) && at(d, 'spec', 'trafficPolicy', 'tls', 'mode') === 'ISTIO_MUTUAL';
    });
    if (rootRule) return [];
    return objects.flatMap((obj) => {
      const source = meshConfigOf(obj);
      if (source === undefined || source.mesh['enableAutoMtls'] !== false) return [];
      return [finding(obj, { message: `${MESSAGE}, and there is no such DestinationRule in ${ROOT_NAMESPACE}`, path: source.path('enableAutoMtls'), value: 'false' })];
    });
  },
};
