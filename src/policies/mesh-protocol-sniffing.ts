// mesh-protocol-sniffing: Istio's security best practices ask to declare protocols explicitly,
// because a sniffed protocol can be detected wrongly, by accident or on purpose. Current Istio
// has no switch to turn sniffing off (the pilot.enableProtocolSniffingFor{Outbound,Inbound}
// values and PILOT_ENABLE_PROTOCOL_SNIFFING_* flags were removed), so the check is where sniffing
// happens: a Service port in a meshed namespace whose protocol Istio cannot tell from appProtocol
// or the port name prefix. Mirrors istio pkg/config/kube ConvertProtocol. Opinionated: audit by default.
import type { KObject } from '../core/request.ts';
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { at, mapItems, show } from './lib/json-read.ts';
import { meshStatus } from './lib/mesh-enrollment.ts';
import { isTerminating } from '../core/objects.ts';

const PROTOCOLS = new Set(['tcp', 'udp', 'grpc', 'grpc-web', 'http', 'http_proxy', 'http2', 'https', 'tls', 'mongo', 'redis', 'mysql']);
const K8S_APP_PROTOCOLS = new Set(['kubernetes.io/h2c', 'kubernetes.io/ws', 'kubernetes.io/wss']);
/** Istio treats these as TCP without a declared protocol (sniffing would break them). */
const WELL_KNOWN_PORTS = new Set([25, 53, 3306, 27017]);

/** Is the protocol of this Service port declared (or not sniffed anyway)? */
export function declaredProtocol(port: Readonly<Record<string, unknown>>): boolean {
  const proto = port['protocol'];
  if (proto === 'UDP' || proto === 'SCTP') return true;
  const app = port['appProtocol'];
  const name = typeof app === 'string' ? app : typeof port['name'] === 'string' ? port['name'] : '';
  if (typeof app === 'string' && K8S_APP_PROTOCOLS.has(app)) return true;
  const lower = name.toLowerCase();
  const prefix = lower.startsWith('grpc-web') ? 'grpc-web' : (lower.split('-')[0] ?? '');
  if (PROTOCOLS.has(prefix)) return true;
  return typeof port['port'] === 'number' && WELL_KNOWN_PORTS.has(port['port']);
}

export function sniffedPorts(service: KObject): Violation[] {
  const out: Violation[] = [];
  for (const [i, p] of mapItems(at(service, 'spec', 'ports'))) {
    if (declaredProtocol(p)) continue;
    const label = `port ${show(p['port'])}${typeof p['name'] === 'string' ? ` (${p['name']})` : ''}`;
    out.push({
      message: `${label} declares no protocol: Istio detects it by sniffing the first bytes, which a client can steer`,
      path: `spec.ports[${i}]`,
      ...(typeof p['name'] === 'string' ? { value: p['name'] } : {}),
    });
  }
  return out;
}

export const meshProtocolSniffing: ValidatingRule = {
  id: 'mesh-protocol-sniffing',
  type: 'validating',
  title: 'Service ports in meshed namespaces should declare their protocol (no protocol sniffing)',
  fix: 'name the port <protocol>[-suffix] (http-web, grpc-api, tcp-db, tls-...) or set appProtocol',
  defaultMode: 'audit',
  match: { kinds: [{ group: '', kind: 'Service' }], operations: ['CREATE', 'UPDATE'] },
  webhook: [{ apiGroup: '', apiVersions: ['v1'], resources: ['services'] }],
  validate({ request: req, config, cluster }) {
    if (isTerminating(req.object)) return skip('the Service is being deleted');
    if (at(req.object, 'spec', 'type') === 'ExternalName') return skip('an ExternalName Service has no proxied ports');
    const info = cluster.namespace(req.namespace);
    if (info === undefined ? config.unknownNamespace === 'allow' : meshStatus(info.labels, config, cluster.knownRevisions()).dataplane === 'none') {
      return skip(`namespace ${req.namespace} is not in the mesh`);
    }
    return req.object === null ? [] : sniffedPorts(req.object);
  },
};
