// GET /healthz (alive), GET /readyz (ready to admit), GET /metrics.
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/types.ts';
import type { Recorder } from '../metrics/recorder.ts';

/** A named check: undefined when fine, else what is wrong. */
export interface ReadinessCheck {
  readonly name: string;
  check(): string | undefined;
  /** A degraded check is reported under `degraded` but keeps /readyz at 200: admission still
   * works (e.g. the reconciler without Istio's CRDs). */
  readonly degraded?: boolean;
}

export interface HealthDeps {
  readonly config: Config;
  readonly recorder: Recorder;
  readonly state: { closing: boolean; draining?: boolean };
  readonly checks: readonly ReadinessCheck[];
}

export function registerHealthRoutes(app: FastifyInstance, deps: HealthDeps): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const failing: Record<string, string> = {};
    const degraded: Record<string, string> = {};
    if (deps.state.closing || deps.state.draining === true) failing['shutdown'] = 'shutting down';
    for (const c of deps.checks) {
      const problem = c.check();
      if (problem !== undefined) (c.degraded === true ? degraded : failing)[c.name] = problem;
    }
    const ok = Object.keys(failing).length === 0;
    const extra = Object.keys(degraded).length > 0 ? { degraded } : {};
    return reply.code(ok ? 200 : 503).send(ok ? { status: 'ready', ...extra } : { status: 'not ready', failing, ...extra });
  });
  if (deps.config.metricsEnabled) {
    app.get('/metrics', async (_req, reply) => reply.type(deps.recorder.contentType).send(await deps.recorder.render()));
  }
}
