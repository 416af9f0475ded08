// The report writer's adapter to the API server: list meshguard's reports of a kind, create,
// replace and delete one. Raw JSON requests through client-node's HTTP stack (auth, TLS, proxy;
// errors are ApiException with .code), like the scan's reads.
import { HttpMethod, type KubeConfig } from '@kubernetes/client-node';
import { nextContinue } from '../../kube/client.ts';
import { rawPageQuery, RawJsonApi } from '../../kube/raw-json.ts';
import { MANAGED_BY, REPORT_SELECTOR, type ExistingReport, type ReportKind } from './plan.ts';

export interface ReportClient {
  /** meshguard's reports of the kind, in every namespace; throws (code 404) when the CRD is not served. */
  list(kind: ReportKind): Promise<ExistingReport[]>;
  create(kind: ReportKind, namespace: string, body: Record<string, unknown>): Promise<void>;
  replace(kind: ReportKind, namespace: string, name: string, body: Record<string, unknown>): Promise<void>;
  delete(kind: ReportKind, namespace: string, name: string): Promise<void>;
}

export function reportPath(kind: ReportKind, namespace: string, name?: string): string {
  const ns = kind.namespaced && namespace !== '' ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `/apis/${kind.group}/${kind.version}${ns}/${kind.plural}${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;
}

interface ListedReport {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> };
}

/** 429 (e.g. "storage is (re)initializing" just after a CRD is created) is retried a few times. */
async function withRetry<T>(call: () => Promise<T>, attempts = 5, delayMs = 1000): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await call();
    } catch (err) {
      if ((err as { code?: unknown } | null)?.code !== 429 || i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

export function kubeReportClient(kc: KubeConfig): ReportClient {
  const raw = kc.makeApiClient(RawJsonApi);
  const api = { send: (...args: Parameters<RawJsonApi['send']>) => withRetry(() => raw.send(...args)) };
  return {
    async list(kind) {
      const out: ExistingReport[] = [];
      let cont: string | undefined;
      do {
        const page = (await api.send(HttpMethod.GET, reportPath(kind, ''), { labelSelector: REPORT_SELECTOR, ...rawPageQuery(500, cont) })) as {
          items?: ListedReport[];
          metadata?: { continue?: string };
        };
        for (const item of page.items ?? []) {
          const m = item.metadata ?? {};
          out.push({ kind, namespace: m.namespace ?? '', name: m.name ?? '', resourceVersion: m.resourceVersion ?? '', managed: m.labels?.[MANAGED_BY] === 'meshguard' });
        }
        cont = nextContinue(page.metadata?.continue);
      } while (cont !== undefined);
      return out;
    },
    async create(kind, namespace, body) {
      await api.send(HttpMethod.POST, reportPath(kind, namespace), {}, body);
    },
    async replace(kind, namespace, name, body) {
      await api.send(HttpMethod.PUT, reportPath(kind, namespace, name), {}, body);
    },
    async delete(kind, namespace, name) {
      await api.send(HttpMethod.DELETE, reportPath(kind, namespace, name));
    },
  };
}
