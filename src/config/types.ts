// The validated, frozen configuration every module receives. Mirrors CONFIG_SCHEMA.
export type Mode = 'enforce' | 'audit';

export interface RuleSettings {
  readonly enabled: boolean;
  readonly mode: 'inherit' | Mode;
}

export interface GeneratedResource {
  readonly namespaces: readonly string[];
  readonly spec: Readonly<Record<string, unknown>>;
}

export interface Config {
  readonly mode: Mode;
  readonly mutation: 'apply' | 'report';
  readonly onError: 'deny' | 'allow';
  readonly server: {
    readonly host: string;
    readonly port: number;
    readonly certFile: string | null;
    readonly keyFile: string | null;
    readonly caFile: string | null;
    readonly certDir: string;
    readonly certSans: readonly string[];
    readonly tlsMinVersion: 'TLSv1.2' | 'TLSv1.3';
    readonly clientCaFile: string | null;
    readonly bodyLimitBytes: number;
    readonly requestTimeoutMs: number;
    readonly headersTimeoutMs: number;
    readonly keepAliveTimeoutMs: number;
    readonly drainSeconds: number;
    readonly maxInFlight: number;
    readonly maxInFlightBytes: number;
    readonly maxEventLoopDelayMs: number;
    readonly minBodyBytesPerSecond: number;
    readonly bodyRateGraceMs: number;
    readonly deadlineMarginPercent: number;
  };
  readonly cluster: {
    readonly kubeconfig: string | null;
    readonly inCluster: boolean;
    readonly resyncSeconds: number;
    readonly staleAfterSeconds: number;
    readonly discoverRevisions: boolean;
  };
  readonly selfManagedCerts: {
    readonly enabled: boolean;
    readonly secretName: string;
    readonly webhookConfigurationName: string;
    readonly serviceName: string;
    readonly caDays: number;
    readonly leafDays: number;
    readonly renewBeforeDays: number;
    readonly checkIntervalSeconds: number;
  };
  readonly webhookArming: {
    readonly enabled: boolean;
    readonly failurePolicy: 'Fail' | 'Ignore';
    readonly webhookConfigurationName: string;
    readonly intervalSeconds: number;
  };
  readonly exceptions: { readonly watch: boolean };
  readonly reconciler: {
    readonly enabled: boolean;
    readonly dryRun: boolean;
    readonly resyncSeconds: number;
    readonly leaseName: string;
    readonly leaseDurationSeconds: number;
    readonly renewSeconds: number;
    readonly allowSameNamespace: boolean;
    readonly serviceEntries: Readonly<Record<string, GeneratedResource>>;
    readonly authorizationPolicies: Readonly<Record<string, GeneratedResource>>;
    readonly networkPolicies: {
      readonly enabled: boolean;
      readonly monitoringNamespaces: readonly string[];
      readonly extra: Readonly<Record<string, GeneratedResource>>;
    };
  };
  readonly scan: { readonly intervalSeconds: number; readonly policyReports: boolean; readonly openReports: boolean };
  readonly metricsEnabled: boolean;
  readonly metrics: { readonly port: number; readonly host: string };
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly auditLogFile: string | null;
  readonly meshguardNamespace: string;
  readonly exemptNamespaces: readonly string[];
  readonly gatewayNamespaces: readonly string[];
  readonly adminGroups: readonly string[];
  readonly adminUsers: readonly string[];
  readonly injection: { readonly mode: 'sidecar' | 'revision' | 'ambient'; readonly revision: string };
  readonly ambient: { readonly allowed: boolean };
  readonly revisions: readonly string[];
  readonly hardening: {
    readonly labels: Readonly<Record<string, string>>;
    readonly annotations: Readonly<Record<string, string>>;
  };
  readonly captureBypass: { readonly allow: Readonly<Record<string, readonly string[]>> };
  readonly proxyConfig: { readonly allow: Readonly<Record<string, readonly string[]>>; readonly unknownFields: 'deny' | 'allow' };
  readonly istioInstall: {
    readonly injectorValues: Readonly<Record<string, unknown>>;
    readonly allow: Readonly<Record<string, readonly string[]>>;
  };
  readonly istioProxyImages: readonly string[];
  readonly istioAdminNamespaces: readonly string[];
  readonly istiodUsers: readonly string[];
  readonly controllerUsers: readonly string[];
  readonly serviceEntries: {
    readonly allowedWildcardHosts: readonly string[];
    readonly addressLimit: { readonly ipv4: number; readonly ipv6: number };
  };
  readonly meshHardening: { readonly requireCni: boolean; readonly requireDistrolessProxy: boolean };
  readonly unknownNamespace: 'deny' | 'allow';
  readonly rules: Readonly<Record<string, RuleSettings>>;
}
