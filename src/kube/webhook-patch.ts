// Put a caBundle into every webhook of meshguard's own Mutating- and ValidatingWebhookConfiguration
// (same name for both), through client-node, only where it differs. The patch is a JSON patch that
// first tests each webhook's name and its clientConfig exactly as read, so a concurrent writer
// (another replica, a Helm upgrade that reorders or adds webhooks) makes it fail instead of
// landing on the wrong element; the caller re-reads and tries again.
import { AdmissionregistrationV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { statusCode } from './errors.ts';

export type WebhookKind = 'mutating' | 'validating';

export interface JsonPatchOp {
  readonly op: 'test' | 'add';
  readonly path: string;
  readonly value: unknown;
}

interface WebhookLike {
  readonly name?: string | undefined;
  readonly clientConfig?: object | undefined;
}

/** The subset of a webhook configuration the patch reads. */
export interface WebhookConfigurationLike {
  readonly webhooks?: readonly WebhookLike[] | undefined;
}

/**
 * JSON patch operations setting `caBundle` (base64 PEM) on every webhook whose caBundle differs;
 * empty when every webhook already has it (or there are none).
 */
export function caBundlePatch(config: WebhookConfigurationLike, caBundle: string): JsonPatchOp[] {
  const ops: JsonPatchOp[] = [];
  (config.webhooks ?? []).forEach((w, i) => {
    const cc = (w.clientConfig ?? {}) as { readonly caBundle?: unknown };
    if (cc.caBundle === caBundle) return;
    ops.push({ op: 'test', path: `/webhooks/${i}/name`, value: w.name ?? '' });
    // The clientConfig exactly as read (JSON round trip drops client-node's undefined fields).
    ops.push({ op: 'test', path: `/webhooks/${i}/clientConfig`, value: JSON.parse(JSON.stringify(cc)) as unknown });
    // `add` on an existing member replaces it, and creates it when absent.
    ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: caBundle });
  });
  return ops;
}

/** True when every webhook of the configuration carries exactly this caBundle. */
export function hasCaBundle(config: WebhookConfigurationLike, caBundle: string): boolean {
  return caBundlePatch(config, caBundle).length === 0;
}

export type PatchOutcome = 'patched' | 'unchanged' | 'missing';

export interface WebhookPatcher {
  /** The configuration as stored, or undefined when it does not exist. */
  read(kind: WebhookKind): Promise<WebhookConfigurationLike | undefined>;
  /** Whether both configurations (those that exist) carry this caBundle on every webhook. */
  inSync(caBundle: string): Promise<boolean>;
  /**
   * Patch both configurations where they differ. `beforeWrite` runs once before the first write and
   * may veto it (return false), e.g. when the Secret the bundle came from has changed meanwhile.
   */
  patch(caBundle: string, beforeWrite?: () => Promise<boolean>): Promise<Record<WebhookKind, PatchOutcome> | 'vetoed'>;
}


const KINDS: readonly WebhookKind[] = ['mutating', 'validating'];

/** Reads and patches the configurations named `name` through the API server. */
export function kubeWebhookPatcher(kc: KubeConfig, name: string, attempts = 4): WebhookPatcher {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
  const read = async (kind: WebhookKind): Promise<WebhookConfigurationLike | undefined> => {
    try {
      return kind === 'mutating' ? await api.readMutatingWebhookConfiguration({ name }) : await api.readValidatingWebhookConfiguration({ name });
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw err;
    }
  };
  const write = async (kind: WebhookKind, body: JsonPatchOp[]): Promise<void> => {
    const req = { name, body, fieldManager: 'meshguard' };
    if (kind === 'mutating') await api.patchMutatingWebhookConfiguration(req, jsonPatch);
    else await api.patchValidatingWebhookConfiguration(req, jsonPatch);
  };
  return {
    read,
    async inSync(caBundle) {
      for (const kind of KINDS) {
        const c = await read(kind);
        if (c !== undefined && !hasCaBundle(c, caBundle)) return false;
      }
      return true;
    },
    async patch(caBundle, beforeWrite) {
      const out: Record<WebhookKind, PatchOutcome> = { mutating: 'unchanged', validating: 'unchanged' };
      let checked = beforeWrite === undefined;
      for (const kind of KINDS) {
        for (let attempt = 1; ; attempt++) {
          const c = await read(kind);
          if (c === undefined) {
            out[kind] = 'missing';
            break;
          }
          const ops = caBundlePatch(c, caBundle);
          if (ops.length === 0) break;
          if (!checked) {
            if (!(await (beforeWrite as () => Promise<boolean>)())) return 'vetoed';
            checked = true;
          }
          try {
            await write(kind, ops);
            out[kind] = 'patched';
            break;
          } catch (err) {
            // A failed `test` (the object changed since it was read) is 422; 409 on a conflict.
            const code = statusCode(err);
            if ((code !== 422 && code !== 409) || attempt >= attempts) throw err;
          }
        }
      }
      return out;
    },
  };
}
