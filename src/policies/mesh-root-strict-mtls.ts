// mesh-root-strict-mtls: a mesh-wide PeerAuthentication (root namespace, no selector) with mTLS
// STRICT must exist, so that namespaces without their own policy (meshguard's reconciler only
// covers meshed ones) do not fall back to Istio's PERMISSIVE default. Its absence is a
// cluster-level fact, judged by scan. At admission, changing a PeerAuthentication to anything
// weaker than STRICT is what peer-authentication-strict denies; deleting one is not sent to
// meshguard (no DELETE webhooks), so scan is where a deleted mesh-wide policy shows.
import { skip, type ValidatingRule } from '../core/types.ts';
import { kindRef, PEER_AUTHENTICATION, ROOT_NAMESPACE, webhookFor } from './lib/istio-kinds.ts';
import { at } from './lib/json-read.ts';
import { ofKind, selectorLabels } from './lib/inventory.ts';

export const meshRootStrictMtls: ValidatingRule = {
  id: 'mesh-root-strict-mtls',
  type: 'validating',
  title: `A mesh-wide STRICT PeerAuthentication must exist in ${ROOT_NAMESPACE} (scan)`,
  fix: `create PeerAuthentication ${ROOT_NAMESPACE}/default with spec.mtls.mode STRICT and no selector`,
  match: { kinds: [kindRef(PEER_AUTHENTICATION)], operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: [webhookFor(PEER_AUTHENTICATION)],
  validate() {
    return skip('whether a mesh-wide STRICT PeerAuthentication exists is judged by scan; peer-authentication-strict judges this object');
  },
  inventory({ objects, served }) {
    if (!served(PEER_AUTHENTICATION.group, PEER_AUTHENTICATION.resource)) return [];
    const strict = ofKind(objects, PEER_AUTHENTICATION.group, PEER_AUTHENTICATION.kind).some(
      (p) => p.metadata?.namespace === ROOT_NAMESPACE && Object.keys(selectorLabels(p['spec'])).length === 0 && at(p, 'spec', 'mtls', 'mode') === 'STRICT',
    );
    if (strict) return [];
    return [
      {
        subject: { kind: PEER_AUTHENTICATION.kind, apiVersion: `${PEER_AUTHENTICATION.group}/v1`, namespace: ROOT_NAMESPACE, name: 'default' },
        violation: {
          message: `no mesh-wide PeerAuthentication with mTLS STRICT in ${ROOT_NAMESPACE}: workloads without their own policy accept plaintext (Istio's default is PERMISSIVE)`,
          path: 'spec.mtls.mode',
        },
      },
    ];
  },
};
