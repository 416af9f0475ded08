// peer-authentication-strict: mutual TLS may only be inherited (unset, UNSET) or STRICT, for the
// workload and for every port. PERMISSIVE accepts plaintext; DISABLE turns mTLS off. Kyverno's
// enforce-strict-mtls checks only spec.mtls.mode; a port-level DISABLE is as much of a hole.
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { exemptOutsideRoot, kindRef, PEER_AUTHENTICATION, webhookFor } from './lib/istio-kinds.ts';
import { at, isUnset, keyPath, show } from './lib/json-read.ts';
import { isRecord, isTerminating } from '../core/objects.ts';

function modeProblem(mode: unknown, path: string, what: string): Violation | undefined {
  if (isUnset(mode) || mode === 'UNSET' || mode === 'STRICT') return undefined;
  const effect = mode === 'PERMISSIVE' ? 'accepts plaintext' : mode === 'DISABLE' ? 'turns mutual TLS off' : 'is not UNSET or STRICT';
  return { message: `mTLS mode ${show(mode)} ${effect} ${what}`, path, value: show(mode) };
}

export const peerAuthenticationStrict: ValidatingRule = {
  id: 'peer-authentication-strict',
  type: 'validating',
  title: 'PeerAuthentication must keep mutual TLS STRICT (or inherited), also per port',
  fix: 'set mtls.mode and every portLevelMtls mode to STRICT, or remove them to inherit the namespace or mesh policy',
  match: { kinds: [kindRef(PEER_AUTHENTICATION)], operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: [webhookFor(PEER_AUTHENTICATION)],
  validate({ request: req, config }) {
    const exempt = exemptOutsideRoot(req, config);
    if (exempt !== undefined) return skip(exempt);
    if (isTerminating(req.object)) return skip('the PeerAuthentication is being deleted');
    const spec = at(req.object, 'spec');
    const out: Violation[] = [];
    const top = modeProblem(at(spec, 'mtls', 'mode'), 'spec.mtls.mode', 'for the selected workloads');
    if (top !== undefined) out.push(top);
    const ports = at(spec, 'portLevelMtls');
    if (!isRecord(ports)) return out;
    for (const [port, setting] of Object.entries(ports)) {
      const p = modeProblem(at(setting, 'mode'), `${keyPath('spec.portLevelMtls', port)}.mode`, `on port ${port}`);
      if (p !== undefined) out.push(p);
    }
    return out;
  },
};
