import React, { ChangeEvent, FormEvent, useEffect, useState } from 'react';
import { DataSourcePluginOptionsEditorProps, SelectableValue } from '@grafana/data';
import {
  Button,
  FieldSet,
  InlineField,
  InlineFieldRow,
  InlineSwitch,
  Input,
  RadioButtonGroup,
  SecretInput,
  SecretTextArea,
  Select,
  TextArea,
} from '@grafana/ui';

import {
  DEFAULTS,
  ExternalCidr,
  GatewaySettings,
  KubernetesMode,
  KubernetesSettings,
  SecureKey,
  ServiceMapOptions,
  ServiceMapSecureJsonData,
  SloOverride,
  SloSettings,
  SslMode,
  TableShape,
  TraceLinkSettings,
  TraceLinkType,
} from '../types';
import { ListInput, NumberInput } from './fields';

type Props = DataSourcePluginOptionsEditorProps<ServiceMapOptions, ServiceMapSecureJsonData>;

const LABEL_WIDTH = 28;
const INPUT_WIDTH = 40;

export const SSL_MODE_OPTIONS: Array<SelectableValue<SslMode>> = [
  { label: 'disable', value: 'disable', description: 'No TLS' },
  { label: 'require', value: 'require', description: 'TLS, no certificate check' },
  { label: 'verify-ca', value: 'verify-ca', description: 'TLS, server certificate signed by the CA' },
  { label: 'verify-full', value: 'verify-full', description: 'TLS, CA and host name checked' },
];

const TABLE_SHAPE_OPTIONS: Array<SelectableValue<TableShape>> = [
  { label: 'Calls', value: 'calls', description: 'One row per call: source, target, status, duration' },
  { label: 'Spans', value: 'spans', description: 'OpenTelemetry-like spans; client and server spans are paired' },
  { label: 'Custom', value: 'custom', description: 'Your own query returning call rows' },
];

const TRACE_LINK_OPTIONS: Array<SelectableValue<TraceLinkType>> = [
  { label: 'None', value: 'none' },
  { label: 'Tempo', value: 'tempo' },
  { label: 'Jaeger', value: 'jaeger' },
  { label: 'URL', value: 'url' },
];

const KUBE_MODE_OPTIONS: Array<SelectableValue<KubernetesMode>> = [
  { label: 'In cluster', value: 'inCluster', description: 'Grafana runs in the cluster; use its service account' },
  { label: 'API server URL', value: 'url', description: 'Connect to an API server with a token' },
];

const DECLARED_PLACEHOLDER = `services:
  checkout:
    calls: [payments, inventory]
  payments:
    calls: [postgres]`;

/**
 * Parses "name=cidr" items (one per line or comma separated).
 * Returns the rules that parse and the items that do not.
 */
export function parseCidrRules(text: string): { rules: ExternalCidr[]; invalid: string[] } {
  const rules: ExternalCidr[] = [];
  const invalid: string[] = [];
  for (const raw of text.split(/[,\n]/)) {
    const item = raw.trim();
    if (item === '') {
      continue;
    }
    const eq = item.indexOf('=');
    const name = eq > 0 ? item.slice(0, eq).trim() : '';
    const cidr = eq > 0 ? item.slice(eq + 1).trim() : '';
    if (name === '' || !isCidr(cidr)) {
      invalid.push(item);
      continue;
    }
    rules.push({ name, cidr });
  }
  return { rules, invalid };
}

const IPV4_CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const IPV6_CIDR = /^[0-9a-fA-F:]*:[0-9a-fA-F:.]*\/(\d{1,3})$/;

export function isCidr(s: string): boolean {
  const v4 = IPV4_CIDR.exec(s);
  if (v4) {
    const octets = v4.slice(1, 5).map(Number);
    return octets.every((o) => o <= 255) && Number(v4[5]) <= 32;
  }
  const v6 = IPV6_CIDR.exec(s);
  return Boolean(v6) && Number(v6![1]) <= 128;
}

function formatCidrRules(rules?: ExternalCidr[]): string {
  return (rules ?? []).map((r) => `${r.name}=${r.cidr}`).join('\n');
}

export function ConfigEditor({ options, onOptionsChange }: Props) {
  const jsonData: ServiceMapOptions = options.jsonData ?? {};
  const secureJsonFields = options.secureJsonFields ?? {};
  const secureJsonData: ServiceMapSecureJsonData = options.secureJsonData ?? {};

  const setJson = (patch: Partial<ServiceMapOptions>) => {
    onOptionsChange({ ...options, jsonData: { ...options.jsonData, ...patch } });
  };

  const setSecret = (key: SecureKey, value: string) => {
    onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, [key]: value } });
  };

  const resetSecret = (key: SecureKey) => {
    onOptionsChange({
      ...options,
      secureJsonFields: { ...options.secureJsonFields, [key]: false },
      secureJsonData: { ...options.secureJsonData, [key]: '' },
    });
  };

  /** A secureJsonData field: shown as configured once saved, never read back. */
  const secretField = (props: Omit<SecretFieldProps, 'configured' | 'value' | 'onChange' | 'onReset'>) => (
    <SecretField
      {...props}
      configured={Boolean(secureJsonFields[props.secretKey])}
      value={secureJsonData[props.secretKey] ?? ''}
      onChange={(value) => setSecret(props.secretKey, value)}
      onReset={() => resetSecret(props.secretKey)}
    />
  );

  // Nested objects store only what the user set (an absent number means the backend's default),
  // plus the fields that select a mode or switch a feature.
  const slo: Partial<SloSettings> = jsonData.slo ?? {};
  const setSlo = (patch: Partial<SloSettings>) => {
    setJson({ slo: { overrides: [], ...jsonData.slo, ...patch } as SloSettings });
  };
  const overrides: SloOverride[] = slo.overrides ?? [];
  const setOverride = (index: number, patch: Partial<SloOverride>) => {
    setSlo({ overrides: overrides.map((o, i) => (i === index ? { ...o, ...patch } : o)) });
  };

  const traceLink: Partial<TraceLinkSettings> = jsonData.traceLink ?? {};
  const setTraceLink = (patch: Partial<TraceLinkSettings>) =>
    setJson({ traceLink: { type: DEFAULTS.traceLinkType, ...jsonData.traceLink, ...patch } });

  const kube: Partial<KubernetesSettings> = jsonData.kubernetes ?? {};
  const setKube = (patch: Partial<KubernetesSettings>) =>
    setJson({
      kubernetes: { enabled: false, mode: DEFAULTS.kubernetesMode, ...jsonData.kubernetes, ...patch },
    });

  const gateway: Partial<GatewaySettings> = jsonData.gateway ?? {};
  const setGateway = (patch: Partial<GatewaySettings>) =>
    setJson({ gateway: { enabled: false, ...jsonData.gateway, ...patch } });

  const sslMode = jsonData.sslMode ?? DEFAULTS.sslMode;
  const verifying = sslMode === 'verify-ca' || sslMode === 'verify-full';
  const tableShape = jsonData.tableShape ?? DEFAULTS.tableShape;
  const traceLinkType = traceLink.type ?? DEFAULTS.traceLinkType;
  const kubeMode = kube.mode ?? DEFAULTS.kubernetesMode;

  return (
    <div data-testid="servicemap-config-editor">
      <FieldSet label="Connection">
        <p>The PostgreSQL database that holds the trace spans (and the gateway table, if any).</p>
        <TextField
          label="Host"
          tooltip="host:port of the PostgreSQL server"
          required
          id="servicemap-host"
          value={jsonData.host}
          placeholder="localhost:5432"
          onChange={(host) => setJson({ host })}
        />
        <TextField
          label="Database"
          required
          id="servicemap-database"
          value={jsonData.database}
          placeholder="traces"
          onChange={(database) => setJson({ database })}
        />
        <TextField
          label="User"
          tooltip="Give it read-only rights on the span tables"
          id="servicemap-user"
          value={jsonData.user}
          placeholder="grafana_reader"
          onChange={(user) => setJson({ user })}
        />
        {secretField({ label: 'Password', secretKey: 'password', id: 'servicemap-password', placeholder: 'password' })}
        <Row label="SSL mode" tooltip="How the connection uses TLS">
          <Select<SslMode>
            inputId="servicemap-ssl-mode"
            width={INPUT_WIDTH}
            options={SSL_MODE_OPTIONS}
            value={sslMode}
            onChange={(option) => option.value && setJson({ sslMode: option.value })}
          />
        </Row>
        {verifying && (
          <>
            {secretField({
              label: 'CA certificate',
              tooltip: 'PEM of the CA that signed the server',
              secretKey: 'tlsCACert',
              id: 'servicemap-tls-ca-cert',
              placeholder: PEM_CERTIFICATE,
              multiline: true,
            })}
            {secretField({
              label: 'Client certificate',
              tooltip: 'PEM, for client authentication',
              secretKey: 'tlsClientCert',
              id: 'servicemap-tls-client-cert',
              placeholder: PEM_CERTIFICATE,
              multiline: true,
            })}
            {secretField({
              label: 'Client key',
              tooltip: 'PEM, for client authentication',
              secretKey: 'tlsClientKey',
              id: 'servicemap-tls-client-key',
              placeholder: '-----BEGIN PRIVATE KEY-----',
              multiline: true,
            })}
          </>
        )}
        <NumberField
          label="Statement timeout (s)"
          tooltip="Longest a SQL read may run"
          id="servicemap-statement-timeout"
          integer
          min={1}
          value={jsonData.statementTimeoutSeconds}
          placeholder={String(DEFAULTS.statementTimeoutSeconds)}
          onChange={(statementTimeoutSeconds) => setJson({ statementTimeoutSeconds })}
        />
        <NumberField
          label="Max connections"
          tooltip="Size of the connection pool"
          id="servicemap-max-connections"
          integer
          min={1}
          value={jsonData.maxConnections}
          placeholder={String(DEFAULTS.maxConnections)}
          onChange={(maxConnections) => setJson({ maxConnections })}
        />
      </FieldSet>

      <FieldSet label="Trace table">
        <Row label="Table shape" tooltip="How calls are stored">
          <RadioButtonGroup<TableShape>
            options={TABLE_SHAPE_OPTIONS}
            value={tableShape}
            onChange={(value) => setJson({ tableShape: value })}
          />
        </Row>
        {tableShape !== 'custom' && (
          <TextField
            label="Table"
            tooltip="schema.table is allowed"
            id="servicemap-table"
            value={jsonData.table}
            placeholder={tableShape === 'calls' ? 'calls' : 'spans'}
            onChange={(table) => setJson({ table })}
          />
        )}
        {tableShape === 'custom' && (
          <Row
            label="Custom SQL"
            tooltip="Must return the columns of the calls shape; $__from and $__to bound the time"
          >
            <TextArea
              id="servicemap-custom-sql"
              rows={8}
              cols={60}
              value={jsonData.customSql ?? ''}
              placeholder="SELECT ts, source, target, status_code, duration_ms FROM calls WHERE ts >= $__from AND ts < $__to"
              onChange={(e) => setJson({ customSql: e.currentTarget.value || undefined })}
            />
          </Row>
        )}
      </FieldSet>

      <FieldSet label="Cache">
        <NumberField
          label="Refresh interval (s)"
          tooltip="How often sources are read"
          id="servicemap-refresh-interval"
          integer
          min={1}
          value={jsonData.refreshIntervalSeconds}
          placeholder={String(DEFAULTS.refreshIntervalSeconds)}
          onChange={(refreshIntervalSeconds) => setJson({ refreshIntervalSeconds })}
        />
        <NumberField
          label="Retention (hours)"
          tooltip="How far back the cache answers"
          id="servicemap-retention"
          integer
          min={1}
          value={jsonData.retentionHours}
          placeholder={String(DEFAULTS.retentionHours)}
          onChange={(retentionHours) => setJson({ retentionHours })}
        />
        <NumberField
          label="Grace period (s)"
          tooltip="How long late spans are awaited before a bucket is final"
          id="servicemap-grace-period"
          integer
          min={0}
          value={jsonData.gracePeriodSeconds}
          placeholder={String(DEFAULTS.gracePeriodSeconds)}
          onChange={(gracePeriodSeconds) => setJson({ gracePeriodSeconds })}
        />
      </FieldSet>

      <FieldSet label="SLO">
        <p>Edges over an objective turn red; over the warning share of it, yellow.</p>
        <NumberField
          label="Error rate (%)"
          tooltip="Default objective; 1 means 1 %"
          id="servicemap-slo-error-rate"
          scale={100}
          min={0}
          max={100}
          value={slo.errorRate}
          placeholder={String(DEFAULTS.slo.errorRate * 100)}
          onChange={(errorRate) => setSlo({ errorRate })}
        />
        <NumberField
          label="p99 latency (ms)"
          tooltip="Default objective"
          id="servicemap-slo-p99"
          min={0}
          value={slo.p99LatencyMs}
          placeholder={String(DEFAULTS.slo.p99LatencyMs)}
          onChange={(p99LatencyMs) => setSlo({ p99LatencyMs })}
        />
        <NumberField
          label="Warning at (% of objective)"
          tooltip="80 warns when an edge reaches 80 % of its objective"
          id="servicemap-slo-warning"
          scale={100}
          min={0}
          max={100}
          value={slo.warningFraction}
          placeholder={String(DEFAULTS.slo.warningFraction * 100)}
          onChange={(warningFraction) => setSlo({ warningFraction })}
        />
        <div>
          <h6>Per-service objectives</h6>
          {overrides.map((o, i) => (
            <InlineFieldRow key={i} data-testid={`slo-override-${i}`}>
              <InlineField label="Service" labelWidth={12}>
                <Input
                  id={`servicemap-slo-override-${i}-service`}
                  width={22}
                  value={o.service}
                  placeholder="checkout"
                  onChange={(e) => setOverride(i, { service: e.currentTarget.value })}
                />
              </InlineField>
              <InlineField label="Error rate (%)" labelWidth={16}>
                <NumberInput
                  id={`servicemap-slo-override-${i}-error-rate`}
                  width={12}
                  scale={100}
                  min={0}
                  max={100}
                  value={o.errorRate}
                  placeholder="default"
                  onChange={(errorRate) => setOverride(i, { errorRate })}
                />
              </InlineField>
              <InlineField label="p99 (ms)" labelWidth={10}>
                <NumberInput
                  id={`servicemap-slo-override-${i}-p99`}
                  width={12}
                  min={0}
                  value={o.p99LatencyMs}
                  placeholder="default"
                  onChange={(p99LatencyMs) => setOverride(i, { p99LatencyMs })}
                />
              </InlineField>
              <Button
                variant="secondary"
                icon="trash-alt"
                aria-label={`Remove override ${i + 1}`}
                onClick={() => setSlo({ overrides: overrides.filter((_, j) => j !== i) })}
              />
            </InlineFieldRow>
          ))}
          <Button
            variant="secondary"
            icon="plus"
            size="sm"
            onClick={() => setSlo({ overrides: [...overrides, { service: '' }] })}
          >
            Add override
          </Button>
        </div>
      </FieldSet>

      <FieldSet label="Trace links">
        <Row label="Open traces in" tooltip="Where an edge's example traces open">
          <RadioButtonGroup<TraceLinkType>
            options={TRACE_LINK_OPTIONS}
            value={traceLinkType}
            onChange={(type) => setTraceLink({ type })}
          />
        </Row>
        {(traceLinkType === 'tempo' || traceLinkType === 'jaeger') && (
          <TextField
            label="Data source UID"
            tooltip="UID of the Tempo or Jaeger data source"
            id="servicemap-trace-datasource-uid"
            value={traceLink.datasourceUid}
            placeholder="tempo"
            onChange={(datasourceUid) => setTraceLink({ datasourceUid })}
          />
        )}
        {traceLinkType === 'url' && (
          <TextField
            label="URL template"
            tooltip="${traceId} is replaced by the trace id"
            id="servicemap-trace-url-template"
            width={60}
            value={traceLink.urlTemplate}
            placeholder="https://tracing.example.com/trace/${traceId}"
            onChange={(urlTemplate) => setTraceLink({ urlTemplate })}
          />
        )}
      </FieldSet>

      <FieldSet label="Kubernetes">
        <Row label="Enabled" tooltip="Network evidence from the cluster and its agents">
          <InlineSwitch
            id="servicemap-kube-enabled"
            value={Boolean(kube.enabled)}
            onChange={(e) => setKube({ enabled: e.currentTarget.checked })}
          />
        </Row>
        {kube.enabled && (
          <>
            <Row label="Connection">
              <RadioButtonGroup<KubernetesMode>
                options={KUBE_MODE_OPTIONS}
                value={kubeMode}
                onChange={(mode) => setKube({ mode })}
              />
            </Row>
            {kubeMode === 'url' && (
              <>
                <TextField
                  label="API server URL"
                  id="servicemap-kube-api-server"
                  value={kube.apiServerUrl}
                  placeholder="https://kubernetes.example.com:6443"
                  onChange={(apiServerUrl) => setKube({ apiServerUrl })}
                />
                {secretField({
                  label: 'Token',
                  tooltip: 'Bearer token of a service account',
                  secretKey: 'kubeToken',
                  id: 'servicemap-kube-token',
                  placeholder: 'service account token',
                })}
                {secretField({
                  label: 'CA certificate',
                  tooltip: "PEM of the API server's CA",
                  secretKey: 'kubeCACert',
                  id: 'servicemap-kube-ca-cert',
                  placeholder: PEM_CERTIFICATE,
                  multiline: true,
                })}
              </>
            )}
            <Row label="Namespaces" tooltip="Comma separated; empty watches all">
              <ListInput
                id="servicemap-kube-namespaces"
                value={kube.namespaces}
                placeholder="all namespaces"
                onChange={(namespaces) => setKube({ namespaces })}
              />
            </Row>
            <NumberField
              label="Agent port"
              tooltip="HTTP port of the node agents"
              id="servicemap-agent-port"
              integer
              min={1}
              max={65535}
              value={kube.agentPort}
              placeholder="9477"
              onChange={(agentPort) => setKube({ agentPort })}
            />
            <TextField
              label="Agent namespace"
              tooltip="Namespace of the agent DaemonSet"
              id="servicemap-agent-namespace"
              value={kube.agentNamespace}
              placeholder="servicemap"
              onChange={(agentNamespace) => setKube({ agentNamespace })}
            />
            <TextField
              label="Agent label selector"
              tooltip="Finds the agent pods"
              id="servicemap-agent-label-selector"
              value={kube.agentLabelSelector}
              placeholder="app.kubernetes.io/name=servicemap-agent"
              onChange={(agentLabelSelector) => setKube({ agentLabelSelector })}
            />
            <Row label="Static agents" tooltip="host:port of agents outside the cluster, one per line">
              <ListInput
                id="servicemap-static-agents"
                multiline
                value={kube.staticAgents}
                placeholder={'10.0.0.5:9477\nvm-gateway:9477'}
                onChange={(staticAgents) => setKube({ staticAgents })}
              />
            </Row>
            <CidrRulesField
              label="External CIDRs"
              tooltip="Names for addresses outside the cluster, one name=cidr per line"
              id="servicemap-external-cidrs"
              value={kube.externalCidrs}
              onChange={(externalCidrs) => setKube({ externalCidrs })}
            />
          </>
        )}
      </FieldSet>

      <FieldSet label="Gateway">
        <Row label="Enabled" tooltip="Edges and client counts from API gateway access logs">
          <InlineSwitch
            id="servicemap-gateway-enabled"
            value={Boolean(gateway.enabled)}
            onChange={(e) => setGateway({ enabled: e.currentTarget.checked })}
          />
        </Row>
        {gateway.enabled && (
          <>
            <TextField
              label="Access log table"
              tooltip="Table of parsed access-log rows in the PostgreSQL database above"
              id="servicemap-gateway-table"
              value={gateway.table}
              placeholder={DEFAULTS.gatewayTable}
              onChange={(table) => setGateway({ table })}
            />
            <Row
              label="Gateway agents"
              tooltip="Base URLs of the agents next to the gateways, one per line; empty uses the agents Kubernetes finds"
            >
              <ListInput
                id="servicemap-gateway-agents"
                multiline
                value={gateway.agents}
                placeholder={'http://10.0.0.7:9477\nhttps://gw-1.example:9477'}
                onChange={(agents) => setGateway({ agents })}
              />
            </Row>
            <Row label="Read the table" tooltip="Off: read only the gateway agents, even with a PostgreSQL host set">
              <InlineSwitch
                id="servicemap-gateway-read-table"
                value={gateway.readTable ?? true}
                onChange={(e) => setGateway({ readTable: e.currentTarget.checked })}
              />
            </Row>
            <CidrRulesField
              label="Caller CIDRs"
              tooltip="Names for client addresses in the access-log table, one name=cidr per line; unnamed clients are 'user'. Empty: the external CIDRs"
              id="servicemap-gateway-caller-cidrs"
              value={gateway.callerCidrs}
              onChange={(callerCidrs) => setGateway({ callerCidrs })}
            />
          </>
        )}
      </FieldSet>

      {(kube.enabled || gateway.enabled) && (
        <FieldSet label="Node agents">
          {secretField({
            label: 'Agent token',
            tooltip: 'Shared secret the agents expect',
            secretKey: 'agentToken',
            id: 'servicemap-agent-token',
            placeholder: 'agent token',
          })}
          {secretField({
            label: 'Agent CA certificate',
            tooltip: "PEM of the CA that signed the agents' TLS certificates (for https agent URLs)",
            secretKey: 'agentCACert',
            id: 'servicemap-agent-ca-cert',
            placeholder: PEM_CERTIFICATE,
            multiline: true,
          })}
          <TextField
            label="Agent TLS server name"
            tooltip="Name the agents' certificates are checked against (default: the address dialled)"
            id="servicemap-agent-tls-server-name"
            value={kube.agentTLSServerName}
            placeholder="servicemap-agent"
            onChange={(agentTLSServerName) => setKube({ agentTLSServerName })}
          />
        </FieldSet>
      )}

      <FieldSet label="Declared architecture">
        <p>The architecture as documented, in YAML. The drift query compares it with what is observed.</p>
        <TextArea
          id="servicemap-declared-architecture"
          aria-label="Declared architecture"
          rows={12}
          value={jsonData.declaredArchitecture ?? ''}
          placeholder={DECLARED_PLACEHOLDER}
          onChange={(e) => setJson({ declaredArchitecture: e.currentTarget.value || undefined })}
        />
      </FieldSet>
    </div>
  );
}

const PEM_CERTIFICATE = '-----BEGIN CERTIFICATE-----';

interface RowProps {
  label: string;
  tooltip?: string;
  required?: boolean;
  children: React.ReactElement;
}

/** One labelled setting, all labels the same width. */
function Row({ label, tooltip, required, children }: RowProps) {
  return (
    <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} required={required}>
      {children}
    </InlineField>
  );
}

interface TextFieldProps extends Omit<RowProps, 'children'> {
  id: string;
  value?: string;
  placeholder?: string;
  width?: number;
  /** Empty text gives undefined: the key is dropped and the backend default applies. */
  onChange: (value: string | undefined) => void;
}

function TextField({ id, value, placeholder, width = INPUT_WIDTH, onChange, ...row }: TextFieldProps) {
  return (
    <Row {...row}>
      <Input
        id={id}
        width={width}
        value={value ?? ''}
        placeholder={placeholder}
        onChange={(e: FormEvent<HTMLInputElement>) => onChange(e.currentTarget.value || undefined)}
      />
    </Row>
  );
}

type NumberFieldProps = Omit<RowProps, 'children'> & React.ComponentProps<typeof NumberInput>;

function NumberField({ label, tooltip, required, ...input }: NumberFieldProps) {
  return (
    <Row label={label} tooltip={tooltip} required={required}>
      <NumberInput {...input} />
    </Row>
  );
}

interface SecretFieldProps extends Omit<RowProps, 'children'> {
  secretKey: SecureKey;
  id: string;
  placeholder: string;
  /** A text area (PEM) instead of one line. */
  multiline?: boolean;
  configured: boolean;
  value: string;
  onChange: (value: string) => void;
  onReset: () => void;
}

function SecretField({
  secretKey,
  id,
  placeholder,
  multiline,
  configured,
  value,
  onChange,
  onReset,
  ...row
}: SecretFieldProps) {
  return (
    <Row {...row}>
      {multiline ? (
        <SecretTextArea
          id={id}
          rows={5}
          cols={45}
          isConfigured={configured}
          value={value}
          placeholder={placeholder}
          onChange={(e: ChangeEvent<HTMLTextAreaElement>) => onChange(e.currentTarget.value)}
          onReset={onReset}
        />
      ) : (
        <SecretInput
          id={id}
          width={INPUT_WIDTH}
          isConfigured={configured}
          value={value}
          placeholder={placeholder}
          onChange={(e: ChangeEvent<HTMLInputElement>) => onChange(e.currentTarget.value)}
          onReset={onReset}
        />
      )}
    </Row>
  );
}

interface CidrRulesFieldProps {
  label: string;
  tooltip: string;
  id: string;
  value?: ExternalCidr[];
  onChange: (value: ExternalCidr[] | undefined) => void;
}

/** CIDR naming rules edited as "name=cidr" lines, stored when the field loses focus. */
function CidrRulesField({ label, tooltip, id, value, onChange }: CidrRulesFieldProps) {
  const formatted = formatCidrRules(value);
  const [text, setText] = useState(formatted);
  const [invalid, setInvalid] = useState<string[]>([]);
  useEffect(() => setText(formatted), [formatted]);

  return (
    <InlineField
      label={label}
      labelWidth={LABEL_WIDTH}
      tooltip={tooltip}
      invalid={invalid.length > 0}
      error={invalid.length > 0 ? `Not name=cidr: ${invalid.join(', ')}` : undefined}
    >
      <TextArea
        id={id}
        rows={4}
        cols={40}
        value={text}
        placeholder={'payments-provider=203.0.113.0/24\ncorp-vpn=10.8.0.0/16'}
        onChange={(e) => setText(e.currentTarget.value)}
        onBlur={() => {
          const parsed = parseCidrRules(text);
          setInvalid(parsed.invalid);
          onChange(parsed.rules.length > 0 ? parsed.rules : undefined);
        }}
      />
    </InlineField>
  );
}
