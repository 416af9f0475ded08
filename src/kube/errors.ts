// What the API server said when a client-node call failed: the HTTP status, and a one-line text
// for logs, reports and scan notes (the Status message when the body carries one).

/** The HTTP status of a failed client-node call (ApiException.code), or undefined. */
export function statusCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** "HTTP 403: <Status message>", the status alone, or the error's own message. */
export function apiErrorText(err: unknown): string {
  const body = (err as { body?: unknown } | null)?.body;
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = undefined;
    }
  }
  const message = (parsed as { message?: unknown } | null | undefined)?.message;
  const code = statusCode(err);
  if (typeof message === 'string' && message !== '') return code === undefined ? message : `HTTP ${code}: ${message}`;
  if (code !== undefined) return `HTTP ${code}`;
  return err instanceof Error ? err.message : String(err);
}
