// mesh-istio-cni: where the platform asks for the Istio CNI (meshHardening.requireCni), no pod
// may get Istio's istio-init container: it runs with NET_ADMIN and NET_RAW to write the pod's
// iptables, which the CNI node agent does instead (the injected pod then has istio-validation,
// without those capabilities). Judged on the Pod after injection.
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { at, mapItems } from './lib/json-read.ts';
import { annotationsOf } from '../core/objects.ts';
import { INIT, STATUS } from './lib/injector.ts';

export const meshIstioCni: ValidatingRule = {
  id: 'mesh-istio-cni',
  type: 'validating',
  title: 'Where the Istio CNI is required, injected pods must not carry istio-init (NET_ADMIN)',
  fix: 'install Istio with the CNI node agent (istio-cni; pilot.cni.enabled), so that pods get istio-validation instead of istio-init',
  match: { kinds: [{ group: '', kind: 'Pod' }], operations: ['CREATE'] },
  webhook: [{ apiGroup: '', apiVersions: ['v1'], resources: ['pods'] }],
  validate({ request: req, config }) {
    if (!config.meshHardening.requireCni) return skip('meshHardening.requireCni is off');
    const status = annotationsOf(req.object)[STATUS];
    if (typeof status !== 'string' || status === '') return skip('the pod was not injected by Istio');
    const out: Violation[] = [];
    for (const [i, c] of mapItems(at(req.object, 'spec', 'initContainers'))) {
      if (c['name'] !== INIT) continue;
      out.push({
        message: 'istio-init programs iptables with NET_ADMIN and NET_RAW; this platform requires the Istio CNI, which gives pods istio-validation instead',
        path: `spec.initContainers[${i}]`,
        value: INIT,
      });
    }
    return out;
  },
};
