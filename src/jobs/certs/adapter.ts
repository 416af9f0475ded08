// The certificate manager's side effects, behind small interfaces (the loop is tested with fakes):
// the Secret (read; create, or replace with the resourceVersion that was read, so two replicas
// racing cannot both win: the loser gets SecretConflict), the caBundle of meshguard's own webhook
// configurations (kube/webhook-patch.ts), and the files serve polls in the certificate directory.
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { statusCode } from '../../kube/errors.ts';
import { kubeWebhookPatcher, type PatchOutcome, type WebhookKind, type WebhookPatcher } from '../../kube/webhook-patch.ts';
import type { Config } from '../../config/types.ts';
import { b64 } from './secret.ts';
import { writeAtomic, type FilePaths } from './source.ts';

export interface SecretStore {
  /** The Secret, or undefined when it does not exist. */
  read(): Promise<V1Secret | undefined>;
  /** Create, or replace when `body.metadata.resourceVersion` is set; SecretConflict when someone else wrote first. */
  write(body: V1Secret): Promise<V1Secret>;
  readonly where: string;
}

/** Another replica wrote the Secret between our read and our write (409). */
export class SecretConflict extends Error {
  override name = 'SecretConflict';
}

export function kubeSecretStore(kc: KubeConfig, namespace: string, name: string): SecretStore {
  const api = kc.makeApiClient(CoreV1Api);
  return {
    where: `${namespace}/${name}`,
    async read() {
      try {
        return await api.readNamespacedSecret({ name, namespace });
      } catch (err) {
        if (statusCode(err) === 404) return undefined;
        throw err;
      }
    },
    async write(body) {
      try {
        if (body.metadata?.resourceVersion === undefined) return await api.createNamespacedSecret({ namespace, body, fieldManager: 'meshguard' });
        return await api.replaceNamespacedSecret({ name, namespace, body, fieldManager: 'meshguard' });
      } catch (err) {
        if (statusCode(err) === 409) throw new SecretConflict(`Secret ${namespace}/${name} was written by another replica`);
        throw err;
      }
    },
  };
}

export interface CertsAdapter {
  readonly store: SecretStore;
  readonly patcher: WebhookPatcher;
}

/** The Kubernetes Secret store and webhook patcher, except those replaced (tests). Cluster access
 * is needed only for what is not replaced. */
export function certsAdapter(config: Config, kc: KubeConfig | undefined, replace: Partial<CertsAdapter>): CertsAdapter {
  const cluster = (): KubeConfig => {
    if (kc === undefined) throw new Error('self-managed certificates need cluster access');
    return kc;
  };
  const c = config.selfManagedCerts;
  return {
    store: replace.store ?? kubeSecretStore(cluster(), config.meshguardNamespace, c.secretName),
    patcher: replace.patcher ?? kubeWebhookPatcher(cluster(), c.webhookConfigurationName),
  };
}

/** Every existing webhook carries this caBundle (PEM). */
export function webhooksCarry(adapter: CertsAdapter, bundle: string): Promise<boolean> {
  return adapter.patcher.inSync(b64(bundle));
}

/**
 * Patch the stored caBundle (PEM) into the webhooks. Vetoed when the Secret changed since it was
 * read at `resourceVersion`: a replica holding an older Secret must never put an older bundle back
 * over a newer one.
 */
export function patchCaBundle(adapter: CertsAdapter, bundle: string, resourceVersion: string): Promise<Record<WebhookKind, PatchOutcome> | 'vetoed'> {
  return adapter.patcher.patch(b64(bundle), async () => (await adapter.store.read())?.metadata?.resourceVersion === resourceVersion);
}

function writeIfChanged(path: string, data: string, mode: number): boolean {
  try {
    if (readFileSync(path, 'utf8') === data) return false;
  } catch {
    // missing: write it
  }
  writeAtomic(path, data, mode);
  return true;
}

/** Write the serving pair and the CA where serve polls them; true when any file changed. */
export function writeCertFiles(paths: FilePaths & { readonly caFile: string }, files: { readonly cert: string; readonly key: string; readonly caCert: string }): boolean {
  mkdirSync(dirname(paths.certFile), { recursive: true, mode: 0o700 });
  // Key, then certificate, then CA: serve's poller (same process, synchronous reads) sees a
  // consistent pair; a poller in another process may see one mismatched pair and retries.
  let changed = writeIfChanged(paths.keyFile, files.key, 0o600);
  changed = writeIfChanged(paths.certFile, files.cert, 0o644) || changed;
  changed = writeIfChanged(paths.caFile, files.caCert, 0o644) || changed;
  return changed;
}
