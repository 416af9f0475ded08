// mesh-config-outbound-policy: the mesh config must keep egress closed (REGISTRY_ONLY; Istio's
// default is ALLOW_ANY) and keep traffic capture on. It reads the mesh ConfigMaps `istio` and
// `istio-<revision>` in istio-system (webhook placement 'mesh-config': istio-system only, names
// starting with istio, fail open, because ConfigMaps there also serve as istiod's leader-election
// locks), and IstioOperator spec.meshConfig (offline check, and in any namespace).
// Install values that narrow capture for every pod (values.global.proxy.*, lib/install-values.ts)
// are denied too, in an IstioOperator's spec.values and in the `values` key of the injector's
// ConfigMap istio-sidecar-injector[-<revision>] (same placement: its name starts with istio-).
import type { AdmissionRequest, KObject } from '../core/request.ts';
import type { Config } from '../config/types.ts';
import { skip, type ValidatingRule, type Violation } from '../core/types.ts';
import { narrowingProblems } from './lib/install-values.ts';
import { meshConfigProblems, parseMeshData } from './lib/mesh-config.ts';
import { ISTIO_OPERATOR, kindRef, ROOT_NAMESPACE, webhookFor } from './lib/istio-kinds.ts';
import { at, show } from './lib/json-read.ts';
import { isRecord, isTerminating } from '../core/objects.ts';
import { parseGoYamlMapping } from './lib/go-yaml.ts';

export const INJECTOR_CONFIGMAP = 'istio-sidecar-injector';

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

function configMapProblems(object: KObject, config: Config): Violation[] {
  const parsed = parseMeshData(at(object, 'data', 'mesh'));
  if ('problem' in parsed) return [parsed.problem];
  return meshConfigProblems(parsed.mesh, (field) => `data.mesh > ${field}`, config.istioInstall.allow);
}

/** istio-sidecar-injector, or istio-sidecar-injector-<revision>, in the root namespace. */
function isInjectorConfigMap(req: AdmissionRequest, object: KObject): boolean {
  const name = typeof object.metadata?.name === 'string' ? object.metadata.name : req.name;
  return req.namespace === ROOT_NAMESPACE && (name === INJECTOR_CONFIGMAP || name.startsWith(`${INJECTOR_CONFIGMAP}-`));
}

/** The injector's values (JSON written by the chart; istiod reads it as YAML). Absent: nothing to judge. */
function injectorProblems(object: KObject, config: Config): Violation[] {
  const text = at(object, 'data', 'values');
  if (text === undefined) return [];
  const fix = 'make data.values the JSON the istiod chart writes (a map of Helm values)';
  if (typeof text !== 'string') return [{ message: `data.values is not a string but ${show(text)}`, path: 'data.values', fix }];
  const parsed = parseGoYamlMapping(text);
  if ('error' in parsed) return [{ message: `data.values does not parse: ${parsed.error}`, path: 'data.values', fix }];
  return narrowingProblems(parsed.value, config.istioInstall.allow, (key) => `data.values > ${key}`);
}

/** Go's values.Map MergeFrom: maps merge key by key, anything else is replaced. */
function mergeFrom(base: Readonly<Record<string, unknown>>, over: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isRecord(v) && isRecord(b) ? mergeFrom(b, v) : v;
  }
  return out;
}

/**
 * An IstioOperator's mesh config as istioctl renders it (operator/pkg/render/manifest.go
 * translateIstioOperatorToHelm): spec.meshConfig is merged over spec.values.meshConfig, map by
 * map, so a field set in both places takes spec.meshConfig's value (checked against
 * `istioctl manifest generate`). A finding names the place its field came from.
 */
function operatorProblems(object: KObject, config: Config): Violation[] {
  const top = at(object, 'spec', 'meshConfig');
  const values = at(object, 'spec', 'values', 'meshConfig');
  const mesh = mergeFrom(isRecord(values) ? values : {}, isRecord(top) ? top : {});
  const fromValues = (field: string): boolean => at(top, ...field.split('.')) === undefined && (at(values, ...field.split('.')) !== undefined || (!isRecord(top) && isRecord(values)));
  const path = (field: string): string => `${fromValues(field) ? 'spec.values.meshConfig' : 'spec.meshConfig'}.${field}`;
  return [
    ...meshConfigProblems(mesh, path, config.istioInstall.allow),
    ...narrowingProblems(at(object, 'spec', 'values'), config.istioInstall.allow, (key) => `spec.values.${key}`),
  ];
}

export const meshConfigOutboundPolicy: ValidatingRule = {
  id: 'mesh-config-outbound-policy',
  type: 'validating',
  title: 'The mesh config must set outboundTrafficPolicy REGISTRY_ONLY and keep traffic capture on; install values must not narrow capture mesh-wide',
  fix: 'set meshConfig outboundTrafficPolicy.mode: REGISTRY_ONLY, do not set defaultConfig.interceptionMode: NONE, and keep values.global.proxy capture settings at their defaults (or allow them: istioInstall.allow)',
  match: {
    kinds: [{ group: '', kind: 'ConfigMap' }, kindRef(ISTIO_OPERATOR)],
    operations: ['CREATE', 'UPDATE'],
    exemptions: 'none',
  },
  webhook: [{ placement: 'mesh-config', apiGroup: '', apiVersions: ['v1'], resources: ['configmaps'] }, webhookFor(ISTIO_OPERATOR)],
  validate({ request: req, cluster, config }) {
    const object = req.object;
    if (object === null) return skip('no object');
    if (req.kind.kind === ISTIO_OPERATOR.kind) return isTerminating(req.object) ? skip('the IstioOperator is being deleted') : operatorProblems(object, config);
    if (isInjectorConfigMap(req, object)) return isTerminating(req.object) ? skip('the ConfigMap is being deleted') : injectorProblems(object, config);
    const reason = notMeshConfig(req, object, cluster.knownRevisions());
    if (reason !== undefined) return skip(reason);
    if (isTerminating(req.object)) return skip('the ConfigMap is being deleted');
    return configMapProblems(object, config);
  },
};
