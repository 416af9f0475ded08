// Raw JSON requests through client-node's HTTP stack (auth, TLS, proxy, middleware; errors are
// ApiException with .code), for the adapters that read lists the typed clients would reshape: the
// generic object API turns a list into a KubernetesObject and drops metadata.continue.
import { ApiException, KubernetesObjectApi, type HttpMethod, type KubernetesObject, type ResponseContext } from '@kubernetes/client-node';

export class RawJsonApi extends KubernetesObjectApi {
  /** One request; the response body parsed as JSON (an empty body is {}). */
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

/** The paging query of a raw list request: the limit, and the continue token from the second
 * page on (the typed clients' pageParams, spelled as the API server's query parameters). */
export function rawPageQuery(limit: number, cont: string | undefined): Record<string, string> {
  return { limit: String(limit), ...(cont !== undefined ? { continue: cont } : {}) };
}
