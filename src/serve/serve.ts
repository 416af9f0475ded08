// meshguard serve: load configuration (flags.ts), build everything (compose.ts), listen on HTTPS,
// reload certificates, drain and close on SIGTERM (shutdown.ts).
import { EXIT, type Io } from '../cli/args.ts';
import { startMetricsServer, type MetricsServer } from '../metrics/server.ts';
import { compose, startArming } from './compose.ts';
import { SERVE_HELP, serveConfig } from './flags.ts';
import { shutDown } from './shutdown.ts';

export async function runServe(argv: readonly string[], io: Io): Promise<number> {
  const config = serveConfig(argv, io);
  if (config === 'help') {
    io.out(SERVE_HELP);
    return EXIT.OK;
  }
  const served = await compose(config, io);
  const { app, certs, recorder, log } = served;
  const exposeExpiry = (): void => {
    recorder.certExpiry('leaf', certs.info.leafNotAfter.getTime() / 1000);
    if (certs.info.caNotAfter !== null) recorder.certExpiry('ca', certs.info.caNotAfter.getTime() / 1000);
  };
  exposeExpiry();
  const address = await app.listen({ host: config.server.host, port: config.server.port });
  let metricsServer: MetricsServer | undefined;
  if (config.metrics.port >= 0) {
    metricsServer = await startMetricsServer({ host: config.metrics.host, port: config.metrics.port, recorder });
    io.err(`meshguard: metrics on ${metricsServer.url}/metrics\n`);
  }
  const extras = [
    served.reconciler !== undefined ? `reconciler on${config.reconciler.dryRun ? ' (dry-run)' : ''}` : undefined,
    served.scan !== undefined ? `scan every ${config.scan.intervalSeconds} s` : undefined,
    served.managed !== undefined ? 'self-managed certificates' : undefined,
    config.webhookArming.enabled ? `webhook arming (${config.webhookArming.failurePolicy} once ready)` : undefined,
  ].filter((x) => x !== undefined);
  const arming = startArming(served);
  io.err(`meshguard: serving on ${address} in ${config.mode} mode (certificate ${served.paths.certFile}${extras.length > 0 ? `; ${extras.join(', ')}` : ''})\n`);

  certs.watch(
    {
      onReload(material, info) {
        const server = app.server as unknown as { setSecureContext(options: object): void };
        // The client CA (server.clientCaFile) is part of the context: re-read it with the pair.
        server.setSecureContext(served.tlsFor(material));
        recorder.certReload(true);
        exposeExpiry();
        log.info({ fingerprint: info.fingerprint256, notAfter: info.leafNotAfter }, 'serving certificate reloaded');
      },
      onError(err) {
        recorder.certReload(false);
        log.error({ err: err.message, code: (err as { code?: string }).code }, 'new certificate files are not usable; keeping the current certificate');
      },
    },
    1000,
  );

  return await new Promise<number>((done) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal, drainSeconds: config.server.drainSeconds }, 'shutting down: readiness is now false');
      void shutDown(served, { arming, metricsServer }).then(() => done(EXIT.OK));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
