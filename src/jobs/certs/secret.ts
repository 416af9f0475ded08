// The certificate Secret's codec: StoredCerts (PEM strings) to and from a kubernetes.io/tls Secret
// (base64 data, the staging time of a next CA as an annotation, meshguard's labels). No API calls.
import type { V1Secret } from '@kubernetes/client-node';
import type { StoredCerts } from './plan.ts';

/** Keys of the Secret. tls.crt/tls.key/ca.crt follow the kubernetes.io/tls and cert-manager layout. */
export const SECRET_KEYS = Object.freeze({
  caCert: 'ca.crt',
  caKey: 'ca.key',
  cert: 'tls.crt',
  key: 'tls.key',
  bundle: 'ca-bundle.crt',
  nextCaCert: 'next-ca.crt',
  nextCaKey: 'next-ca.key',
});
export const STAGED_AT_ANNOTATION = 'meshguard.dev/next-ca-staged-at';
export const SECRET_LABELS: Readonly<Record<string, string>> = Object.freeze({
  'app.kubernetes.io/name': 'meshguard',
  'app.kubernetes.io/component': 'webhook-certificates',
  'app.kubernetes.io/managed-by': 'meshguard',
});

/** Base64 of a UTF-8 string (Secret data; the caBundle as the webhook configurations hold it). */
export const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string | undefined => (s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8'));

/** The Secret to write (resourceVersion: replace only if unchanged since it was read). */
export function secretFor(s: StoredCerts, where: { readonly name: string; readonly namespace: string; readonly resourceVersion?: string | undefined }): V1Secret {
  const data: Record<string, string> = {};
  const put = (k: string, v: string | undefined): void => {
    if (v !== undefined) data[k] = b64(v);
  };
  put(SECRET_KEYS.caCert, s.caCert);
  put(SECRET_KEYS.caKey, s.caKey);
  put(SECRET_KEYS.cert, s.cert);
  put(SECRET_KEYS.key, s.key);
  put(SECRET_KEYS.bundle, s.bundle);
  put(SECRET_KEYS.nextCaCert, s.nextCaCert);
  put(SECRET_KEYS.nextCaKey, s.nextCaKey);
  const annotations: Record<string, string> = {};
  if (s.nextCaStagedAtMs !== undefined) annotations[STAGED_AT_ANNOTATION] = new Date(s.nextCaStagedAtMs).toISOString();
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: {
      name: where.name,
      namespace: where.namespace,
      labels: { ...SECRET_LABELS },
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
      ...(where.resourceVersion !== undefined ? { resourceVersion: where.resourceVersion } : {}),
    },
    data,
  };
}

/** The Secret's content as PEM strings. */
export function storedFrom(secret: V1Secret): StoredCerts {
  const d = secret.data ?? {};
  const at = secret.metadata?.annotations?.[STAGED_AT_ANNOTATION];
  const atMs = at === undefined ? Number.NaN : Date.parse(at);
  const out: Record<string, string | number> = {};
  for (const [field, key] of Object.entries(SECRET_KEYS)) {
    const v = unb64(d[key]);
    if (v !== undefined) out[field] = v;
  }
  if (!Number.isNaN(atMs)) out['nextCaStagedAtMs'] = atMs;
  return out as StoredCerts;
}
