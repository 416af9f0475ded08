// The scan's adapter to Kubernetes: one page of a list as raw JSON through client-node (auth,
// TLS, proxy; kube/raw-json.ts), and every object of a target page by page, trying its versions
// in order. A kind that is not served becomes NotServed; any other API error is thrown for the
// caller to report.
import { HttpMethod, type KubeConfig } from '@kubernetes/client-node';
import type { KObject } from '../../core/request.ts';
import { nextContinue } from '../../kube/client.ts';
import { statusCode } from '../../kube/errors.ts';
import { rawPageQuery, RawJsonApi } from '../../kube/raw-json.ts';
import type { ScanTarget } from './targets.ts';

export interface ListResponse {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly items?: readonly unknown[];
  readonly metadata?: { readonly continue?: string };
}

export interface ListRequest {
  readonly group: string;
  readonly version: string;
  readonly resource: string;
  /** Only this namespace (else all). */
  readonly namespace?: string;
  readonly labelSelector?: string;
  readonly limit: number;
  readonly continue?: string;
}

/** One page of a list, as JSON; errors are thrown (client-node ApiException has .code). */
export interface ScanSource {
  list(req: ListRequest): Promise<ListResponse>;
}

export function listPath(req: Pick<ListRequest, 'group' | 'version' | 'resource' | 'namespace'>): string {
  const base = req.group === '' ? `/api/${req.version}` : `/apis/${req.group}/${req.version}`;
  const ns = req.namespace === undefined ? '' : `/namespaces/${encodeURIComponent(req.namespace)}`;
  return `${base}${ns}/${req.resource}`;
}

export function kubeScanSource(kc: KubeConfig): ScanSource {
  const api = kc.makeApiClient(RawJsonApi);
  return {
    list: async (req) =>
      (await api.send(HttpMethod.GET, listPath(req), {
        ...rawPageQuery(req.limit, req.continue),
        ...(req.labelSelector !== undefined ? { labelSelector: req.labelSelector } : {}),
      })) as ListResponse,
  };
}

/** No version of a target is served (its CRD is not installed). */
export class NotServed extends Error {
  override name = 'NotServed';
}

export interface ListAllOptions {
  readonly pageSize: number;
  /** Only this namespace (else all). */
  readonly namespace?: string;
  readonly labelSelector?: string;
  /** Called after each page with the number of objects read so far. */
  readonly onPage?: (n: number) => void;
}

/**
 * Every object of a target, page by page. Versions are tried in order; a 404 on the first page
 * means this version is not served. Items get the list's apiVersion and kind (built-in lists
 * leave them out of the items).
 */
export async function listAll(
  source: ScanSource,
  target: Pick<ScanTarget, 'group' | 'versions' | 'resource'>,
  paging: ListAllOptions,
): Promise<{ version: string; items: KObject[] }> {
  for (const version of target.versions) {
    const items: KObject[] = [];
    let cont: string | undefined;
    let first = true;
    try {
      do {
        const page = await source.list({
          group: target.group,
          version,
          resource: target.resource,
          limit: paging.pageSize,
          ...(paging.namespace !== undefined ? { namespace: paging.namespace } : {}),
          ...(paging.labelSelector !== undefined ? { labelSelector: paging.labelSelector } : {}),
          ...(cont !== undefined ? { continue: cont } : {}),
        });
        first = false;
        const kind = typeof page.kind === 'string' ? page.kind.replace(/List$/, '') : '';
        for (const raw of page.items ?? []) {
          if (typeof raw !== 'object' || raw === null) continue;
          const item = raw as KObject;
          items.push({ ...item, apiVersion: item.apiVersion ?? page.apiVersion ?? version, kind: item.kind ?? kind });
        }
        paging.onPage?.(items.length);
        cont = nextContinue(page.metadata?.continue);
      } while (cont !== undefined);
      return { version, items };
    } catch (err) {
      if (first && statusCode(err) === 404) continue;
      throw err;
    }
  }
  throw new NotServed(`not served by the API server (tried ${target.versions.join(', ')}): its CRD is not installed`);
}
