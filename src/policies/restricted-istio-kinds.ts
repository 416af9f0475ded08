// restricted-istio-kinds: EnvoyFilter, WasmPlugin, TrafficExtension and ProxyConfig reprogram the
// proxy itself (an EnvoyFilter can add a passthrough listener: unlimited egress; a
// TrafficExtension runs inline Lua on the traffic), so only the configured Istio admin namespaces
// may hold them. No namespace is exempt from this rule.
import { skip, type ValidatingRule } from '../core/types.ts';
import { ENVOY_FILTER, kindRef, PROXY_CONFIG, TRAFFIC_EXTENSION, WASM_PLUGIN, webhookFor } from './lib/istio-kinds.ts';
import { isTerminating } from '../core/objects.ts';

const KINDS = [ENVOY_FILTER, WASM_PLUGIN, TRAFFIC_EXTENSION, PROXY_CONFIG];

export const restrictedIstioKinds: ValidatingRule = {
  id: 'restricted-istio-kinds',
  type: 'validating',
  title: 'EnvoyFilter, WasmPlugin, TrafficExtension and ProxyConfig only in the Istio admin namespaces',
  fix: 'ask the platform team to create it in an Istio admin namespace (istioAdminNamespaces)',
  match: { kinds: KINDS.map(kindRef), operations: ['CREATE', 'UPDATE'], exemptions: 'none' },
  webhook: KINDS.map(webhookFor),
  validate({ request: req, config }) {
    if (isTerminating(req.object)) return skip(`the ${req.kind.kind} is being deleted`);
    const admin = config.istioAdminNamespaces;
    if (admin.includes(req.namespace)) return [];
    return [
      {
        message: `${req.kind.kind} reprograms the proxy and is allowed only in ${admin.length === 0 ? 'no namespace' : admin.join(', ')}`,
        path: 'metadata.namespace',
        value: req.namespace,
      },
    ];
  },
};
