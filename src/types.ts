import { DataQuery, DataSourceJsonData } from '@grafana/data';

/*
 * The JSON model shared with the Go backend. The backend parses exactly these keys:
 * rename nothing here without changing pkg/ as well.
 */

export type QueryType = 'serviceMap' | 'edgeMetrics' | 'impact' | 'changes' | 'drift' | 'deployAnnotations';

export type EvidenceSource = 'traces' | 'network' | 'gateway';

export type EdgeMetric = 'requests_per_second' | 'error_rate' | 'p99_latency_ms';

export type EdgeMetricsFormat = 'timeseries' | 'numeric';

export type BaselineMode = 'previousRange' | 'since' | 'lastDeploy';

export interface ServiceMapQuery extends DataQuery {
  queryType: QueryType;
  /** Focus service (serviceMap); the service (impact, changes). */
  service?: string;
  /** Focus namespace (serviceMap). */
  namespace?: string;
  /** Levels of callers shown above the focus service. Default 2. */
  depthUp?: number;
  /** Levels of callees shown below the focus service. Default 2. */
  depthDown?: number;
  /** Evidence to use; empty or absent means all. */
  sources?: EvidenceSource[];
  /** edgeMetrics: which metric. Default error_rate. */
  metric?: EdgeMetric;
  /** edgeMetrics: frame shape. Default timeseries. */
  format?: EdgeMetricsFormat;
  /** edgeMetrics: only edges whose source is this service. */
  sourceFilter?: string;
  /** edgeMetrics: only edges whose target is this service. */
  targetFilter?: string;
  /**
   * impact, changes, drift: only these frames, one name or a comma-separated list
   * (see FRAMES_BY_TYPE). Absent returns every frame.
   */
  frame?: string;
  /** changes: what the current map is compared with. Default previousRange. */
  baseline?: BaselineMode;
  /** changes, baseline 'since': an RFC 3339 time (2024-05-01T12:00:00Z) or a date (2024-05-01, midnight UTC). */
  since?: string;
}

/** The frames of the query types that answer with several, in answer order (pkg/plugin framesOf). */
export const FRAMES_BY_TYPE: Partial<Record<QueryType, string[]>> = {
  impact: ['nodes', 'edges', 'summary', 'dependents', 'root_cause', 'recovery_order'],
  changes: ['changes', 'nodes', 'edges'],
  drift: ['drift_summary', 'drift_edges'],
};

export const MIN_DEPTH = 0;
export const MAX_DEPTH = 10;
export const DEFAULT_DEPTH = 2;
export const DEFAULT_METRIC: EdgeMetric = 'error_rate';
export const DEFAULT_FORMAT: EdgeMetricsFormat = 'timeseries';
export const DEFAULT_BASELINE: BaselineMode = 'previousRange';

export const DEFAULT_QUERY: Partial<ServiceMapQuery> = {
  queryType: 'serviceMap',
  depthUp: DEFAULT_DEPTH,
  depthDown: DEFAULT_DEPTH,
};

/** Query of a template variable that lists services. */
export interface ServiceVariableQuery extends DataQuery {
  /** Only services of this namespace (template variables allowed). Empty = all. */
  namespace?: string;
}

export type SslMode = 'disable' | 'require' | 'verify-ca' | 'verify-full';

export type TableShape = 'calls' | 'spans' | 'custom';

export type TraceLinkType = 'none' | 'tempo' | 'jaeger' | 'url';

export type KubernetesMode = 'inCluster' | 'url';

export interface SloOverride {
  service: string;
  /** Fraction: 0.01 = 1 %. */
  errorRate?: number;
  p99LatencyMs?: number;
}

export interface SloSettings {
  /** Fraction: 0.01 = 1 %. */
  errorRate: number;
  p99LatencyMs: number;
  /** Share of the objective at which an edge turns to warning (0.8 = 80 %). */
  warningFraction: number;
  overrides: SloOverride[];
}

export interface TraceLinkSettings {
  type: TraceLinkType;
  datasourceUid?: string;
  urlTemplate?: string;
}

export interface ExternalCidr {
  name: string;
  cidr: string;
}

export interface KubernetesSettings {
  enabled: boolean;
  mode: KubernetesMode;
  apiServerUrl?: string;
  namespaces?: string[];
  agentPort?: number;
  agentNamespace?: string;
  agentLabelSelector?: string;
  staticAgents?: string[];
  externalCidrs?: ExternalCidr[];
  /** Server name the agents' TLS certificates are verified against. */
  agentTLSServerName?: string;
}

export interface GatewaySettings {
  enabled: boolean;
  /** SQL table of access-log rows. Default gateway_logs. */
  table?: string;
  /** Base URLs of the agents next to the gateways (https://gw-1:9477). */
  agents?: string[];
  /** false: read only the agents even with a PostgreSQL host. Default true. */
  readTable?: boolean;
  /** Names for client addresses in the table; default the external CIDRs. */
  callerCidrs?: ExternalCidr[];
}

export interface ServiceMapOptions extends DataSourceJsonData {
  /** host:port of PostgreSQL. */
  host?: string;
  database?: string;
  user?: string;
  sslMode?: SslMode;
  statementTimeoutSeconds?: number;
  maxConnections?: number;
  tableShape?: TableShape;
  table?: string;
  customSql?: string;
  refreshIntervalSeconds?: number;
  retentionHours?: number;
  gracePeriodSeconds?: number;
  slo?: SloSettings;
  traceLink?: TraceLinkSettings;
  kubernetes?: KubernetesSettings;
  gateway?: GatewaySettings;
  /** Declared architecture as YAML text. */
  declaredArchitecture?: string;
}

/** Keys of secureJsonData. */
export interface ServiceMapSecureJsonData {
  password?: string;
  tlsCACert?: string;
  tlsClientCert?: string;
  tlsClientKey?: string;
  kubeToken?: string;
  kubeCACert?: string;
  agentToken?: string;
  /** PEM of the CA that signed the agents' TLS certificates. */
  agentCACert?: string;
}

export type SecureKey = keyof ServiceMapSecureJsonData;

/** Defaults the backend applies when a setting is absent; the editor shows them as placeholders. */
export const DEFAULTS = {
  sslMode: 'require' as SslMode,
  statementTimeoutSeconds: 30,
  maxConnections: 4,
  tableShape: 'spans' as TableShape,
  refreshIntervalSeconds: 15,
  retentionHours: 24,
  gracePeriodSeconds: 60,
  slo: {
    errorRate: 0.01,
    p99LatencyMs: 500,
    warningFraction: 0.8,
  },
  traceLinkType: 'none' as TraceLinkType,
  kubernetesMode: 'inCluster' as KubernetesMode,
  gatewayTable: 'gateway_logs',
};

/** One service as the backend resource `GET services` lists it. */
export interface ServiceInfo {
  name: string;
  kind?: string;
  namespace?: string;
}

export interface ServicesResponse {
  services?: ServiceInfo[];
}
