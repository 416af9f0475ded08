// The client-node plumbing every Kubernetes adapter shares: loading the kubeconfig, aborting a
// request on a signal, and the pages a ListWatch asks for (typed lists and custom objects).
import { KubeConfig, Observable, type ConfigurationOptions, type CustomObjectsApi, type RequestContext, type ResponseContext } from '@kubernetes/client-node';
import type { Listed, ListPage } from './list-watch.ts';

export function loadKubeConfig(opts: { kubeconfig: string | null; inCluster: boolean }): KubeConfig {
  const kc = new KubeConfig();
  if (opts.kubeconfig !== null) kc.loadFromFile(opts.kubeconfig);
  else if (opts.inCluster) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

/** Call options that abort a client-node request (and the reading of its body) on `signal`:
 * ListWatch aborts a list page that outlives its timeout. */
export function abortOn(signal: AbortSignal): ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx: RequestContext) => {
          ctx.setSignal(signal);
          return new Observable(Promise.resolve(ctx));
        },
        post: (ctx: ResponseContext) => new Observable(Promise.resolve(ctx)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

/** The paging fields of a typed client-node list call: the limit, and the continue token from
 * the second page on. */
export function pageParams(limit: number, cont: string | undefined): { limit: number; _continue?: string } {
  return { limit, ...(cont !== undefined ? { _continue: cont } : {}) };
}

/** The continue token of the next list page, or undefined after the last one (the API server
 * ends a list with an empty or absent token). */
export function nextContinue(token: string | undefined): string | undefined {
  return token === '' ? undefined : token;
}

export interface CustomResource {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly labelSelector?: string;
}

interface RawList {
  readonly items?: unknown[];
  readonly metadata?: { readonly resourceVersion?: string; readonly continue?: string };
}

/**
 * One page of a custom resource, for ListWatch. Custom objects come back as plain JSON: the
 * continue token is metadata.continue, not the typed lists' metadata._continue that ListWatch
 * pages with.
 */
export function customObjectLister<T>(api: Pick<CustomObjectsApi, 'listClusterCustomObject'>, resource: CustomResource): (page: ListPage) => Promise<Listed<T>> {
  const { group, version, plural, labelSelector } = resource;
  return async (page) => {
    const params = { group, version, plural, ...(labelSelector !== undefined ? { labelSelector } : {}), ...pageParams(page.limit, page._continue) };
    const raw = (await api.listClusterCustomObject(params, abortOn(page.signal))) as RawList;
    return { items: (raw.items ?? []) as T[], metadata: { resourceVersion: raw.metadata?.resourceVersion, _continue: raw.metadata?.continue } };
  };
}
