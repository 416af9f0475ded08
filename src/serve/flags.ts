// meshguard serve's flags: the help text, the flag -> environment variable -> config key table
// (shared with check, scan and mark-legacy), and argv + environment into a loaded, frozen Config.
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.ts';
import type { Config } from '../config/types.ts';
import { RULE_IDS } from '../policies/registry.ts';
import { UsageError, type Io } from '../cli/args.ts';

export const SERVE_HELP = `Usage: meshguard serve [flags]

Runs the admission webhook: POST /validate, POST /mutate, GET /healthz, /readyz, /metrics.

Flags (environment variable in brackets; flags win over environment, both over the file):
  --config FILE       YAML or JSON configuration file           [MESHGUARD_CONFIG]
  --mode MODE         enforce | audit (default enforce)          [MESHGUARD_MODE]
  --host ADDR         listen address (default 127.0.0.1)         [MESHGUARD_HOST]
  --port N            listen port (default 8443; 0 = any free)   [MESHGUARD_PORT]
  --cert-file FILE    serving certificate (PEM), reloaded on change [MESHGUARD_CERT_FILE]
  --key-file FILE     private key (PEM) for --cert-file          [MESHGUARD_KEY_FILE]
  --ca-file FILE      CA bundle of --cert-file (expiry metric)   [MESHGUARD_CA_FILE]
  --client-ca-file FILE  require client certificates signed by this CA on
                      /validate and /mutate (the apiserver's)    [MESHGUARD_CLIENT_CA_FILE]
  --cert-dir DIR      where to generate a CA and certificate when no --cert-file
                      is given (default ./certs)                 [MESHGUARD_CERT_DIR]
  --log-level LEVEL   fatal|error|warn|info|debug|trace|silent   [MESHGUARD_LOG_LEVEL]
  --audit-log FILE    audit records (JSON lines); default stdout [MESHGUARD_AUDIT_LOG]
  --kubeconfig FILE   watch namespaces and Istio revisions through this cluster
                                                                 [MESHGUARD_KUBECONFIG]
  --in-cluster        the same with the pod's service account    [MESHGUARD_IN_CLUSTER]
                      (neither: no cluster; namespaces are unknown, see unknownNamespace)
  --reconcile         keep the hardening resources (REGISTRY_ONLY Sidecar, STRICT
                      PeerAuthentication, default-deny AuthorizationPolicy, configured
                      ServiceEntries) in every meshed namespace; one replica leads
                      through a Lease (needs a cluster)          [MESHGUARD_RECONCILE]
  --no-reconcile      turn the reconciler off (wins over the file and the environment)
  --reconcile-dry-run run the reconciler (implies --reconcile) but only log what it
                      would create, change or delete; change nothing
                                                                 [MESHGUARD_RECONCILE_DRY_RUN]
  --scan-interval S   scan existing objects every S seconds and expose the violations
                      as metrics (0: off, the default; needs a cluster); with
                      scan.policyReports / scan.openReports also as PolicyReports
                                                                 [MESHGUARD_SCAN_INTERVAL]
  --metrics-port N    also serve GET /metrics on plain HTTP on this port (-1: off,
                      the default; 0: any free port)             [MESHGUARD_METRICS_PORT]
  --metrics-host ADDR address of that listener (default 127.0.0.1) [MESHGUARD_METRICS_HOST]
  -h, --help          this help
`;

const FLAGS = {
  config: ['MESHGUARD_CONFIG', ''],
  mode: ['MESHGUARD_MODE', 'mode'],
  host: ['MESHGUARD_HOST', 'server.host'],
  port: ['MESHGUARD_PORT', 'server.port'],
  'cert-file': ['MESHGUARD_CERT_FILE', 'server.certFile'],
  'key-file': ['MESHGUARD_KEY_FILE', 'server.keyFile'],
  'ca-file': ['MESHGUARD_CA_FILE', 'server.caFile'],
  'client-ca-file': ['MESHGUARD_CLIENT_CA_FILE', 'server.clientCaFile'],
  'cert-dir': ['MESHGUARD_CERT_DIR', 'server.certDir'],
  'log-level': ['MESHGUARD_LOG_LEVEL', 'logLevel'],
  'audit-log': ['MESHGUARD_AUDIT_LOG', 'auditLogFile'],
  kubeconfig: ['MESHGUARD_KUBECONFIG', 'cluster.kubeconfig'],
  'in-cluster': ['MESHGUARD_IN_CLUSTER', 'cluster.inCluster'],
  reconcile: ['MESHGUARD_RECONCILE', 'reconciler.enabled'],
  'reconcile-dry-run': ['MESHGUARD_RECONCILE_DRY_RUN', 'reconciler.dryRun'],
  'scan-interval': ['MESHGUARD_SCAN_INTERVAL', 'scan.intervalSeconds'],
  'metrics-port': ['MESHGUARD_METRICS_PORT', 'metrics.port'],
  'metrics-host': ['MESHGUARD_METRICS_HOST', 'metrics.host'],
} as const;

const BOOLEAN_FLAGS: ReadonlySet<string> = new Set(['in-cluster', 'reconcile', 'reconcile-dry-run']);

type FlagName = keyof typeof FLAGS;

/** Flags and environment into config overrides (dotted keys). Shared by serve and check. */
export function configFromFlags(values: Partial<Record<string, string | boolean | string[] | undefined>>, env: Io['env'], names: readonly FlagName[]): Config {
  const overrides: Record<string, unknown> = {};
  let file: string | undefined;
  for (const name of names) {
    const [envName, key] = FLAGS[name];
    const raw = values[name] ?? env[envName];
    const v = raw === true ? 'true' : raw;
    if (typeof v !== 'string') continue;
    if (key === '') file = v;
    else overrides[key] = v;
  }
  return loadConfig({ file, overrides, ruleIds: RULE_IDS });
}

/** serve's argv and environment: the configuration to serve, or 'help' when -h/--help was given. */
export function serveConfig(argv: readonly string[], io: Io): Config | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      ...Object.fromEntries(Object.keys(FLAGS).map((k) => [k, { type: BOOLEAN_FLAGS.has(k) ? ('boolean' as const) : ('string' as const) }])),
      'no-reconcile': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) return 'help';
  const flags: Record<string, string | boolean | undefined> = { ...values };
  let env = io.env;
  if (flags['no-reconcile'] === true) {
    if (flags['reconcile'] === true || flags['reconcile-dry-run'] === true) throw new UsageError('--no-reconcile contradicts --reconcile and --reconcile-dry-run');
    env = { ...io.env, MESHGUARD_RECONCILE: 'false' };
  }
  // --reconcile-dry-run runs the reconciler, in dry-run: the flag alone must not be a silent no-op.
  if (flags['reconcile-dry-run'] === true || (flags['reconcile-dry-run'] === undefined && env['MESHGUARD_RECONCILE_DRY_RUN'] === 'true' && env['MESHGUARD_RECONCILE'] === undefined)) {
    flags['reconcile'] = true;
  }
  return configFromFlags(flags, env, Object.keys(FLAGS) as FlagName[]);
}
