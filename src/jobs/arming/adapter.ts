// Webhook arming's adapter to the API server: read and JSON-patch (with `test` guards, see
// plan.ts) the webhook configurations, and list the EndpointSlices of the Service they call.
import { AdmissionregistrationV1Api, DiscoveryV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import type { JsonPatchOp, WebhookKind } from '../../kube/webhook-patch.ts';
import { statusCode } from '../../kube/errors.ts';
import type { ArmableConfiguration, EndpointLike } from './plan.ts';

/** What the loop needs from the API server. */
export interface ArmingCluster {
  read(kind: WebhookKind): Promise<ArmableConfiguration | undefined>;
  patch(kind: WebhookKind, ops: JsonPatchOp[]): Promise<void>;
  /** The endpoints of a Service (all its EndpointSlices). */
  endpoints(namespace: string, service: string): Promise<EndpointLike[]>;
}

/** The cluster through client-node, for the webhook configurations named `name`. */
export function kubeArmingCluster(kc: KubeConfig, name: string): ArmingCluster {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
  return {
    async read(kind) {
      try {
        return kind === 'mutating' ? await api.readMutatingWebhookConfiguration({ name }) : await api.readValidatingWebhookConfiguration({ name });
      } catch (err) {
        if (statusCode(err) === 404) return undefined;
        throw err;
      }
    },
    async patch(kind, body) {
      const req = { name, body, fieldManager: 'meshguard' };
      if (kind === 'mutating') await api.patchMutatingWebhookConfiguration(req, jsonPatch);
      else await api.patchValidatingWebhookConfiguration(req, jsonPatch);
    },
    async endpoints(namespace, service) {
      const list = await discovery.listNamespacedEndpointSlice({ namespace, labelSelector: `kubernetes.io/service-name=${service}` });
      return list.items.flatMap((s) => (s.endpoints ?? []).map((e) => ({ ready: e.conditions?.ready === true, pod: e.targetRef?.kind === 'Pod' ? e.targetRef.name : undefined })));
    },
  };
}
