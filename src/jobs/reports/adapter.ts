// The report writer's adapter to the API server: list meshguard's reports of a kind, create,
// replace and delete one. Raw JSON requests through client-node's HTTP stack (auth, TLS, proxy;
// errors are ApiException with .code), like the scan's reads.
import { ApiException, HttpMethod, KubernetesObjectApi, type KubeConfig, type KubernetesObject, type ResponseContext } from '@kubernetes/client-node';
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

class JsonApi extends KubernetesObjectApi {
  async send(method: HttpMethod, path: string, query: Readonly<Record<string, string>> = {}, body?: unknown): Promise<unknown> {
    const ctx = this.configuration.baseServer.makeRequestContext(path, method);
    ctx.setHeaderParam('Accept', 'application/json');
    for (const [k, v] of Object.entries(query)) ctx.setQueryParam(k, v);
    if (body !== undefined) {
      ctx.setHeaderParam('Content-Type', 'application/json');
      ctx.setBody(JSON.stringify(body));
    }
    return (await this.requestPromise(ctx)) as unknown;
  }

  protected override async processResponse<T extends KubernetesObject>(response: ResponseContext): Promise<T> {
    const text = await response.body.text();
    let parsed: unknown = text;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    if (response.httpStatusCode >= 200 && response.httpStatusCode <= 299) return parsed as T;
    throw new ApiException(response.httpStatusCode, 'Unsuccessful HTTP Request', parsed, response.headers);
  }
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
  const raw = kc.makeApiClient(JsonApi);
  const api = { send: (...args: Parameters<JsonApi['send']>) => withRetry(() => raw.send(...args)) };
  return {
    async list(kind) {
      const out: ExistingReport[] = [];
      let cont: string | undefined;
      do {
        const page = (await api.send(HttpMethod.GET, reportPath(kind, ''), { labelSelector: REPORT_SELECTOR, limit: '500', ...(cont !== undefined ? { continue: cont } : {}) })) as {
          items?: ListedReport[];
          metadata?: { continue?: string };
        };
        for (const item of page.items ?? []) {
          const m = item.metadata ?? {};
          out.push({ kind, namespace: m.namespace ?? '', name: m.name ?? '', resourceVersion: m.resourceVersion ?? '', managed: m.labels?.[MANAGED_BY] === 'meshguard' });
        }
        cont = page.metadata?.continue === '' ? undefined : page.metadata?.continue;
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
