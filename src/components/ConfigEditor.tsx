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

  const onString =
    (key: 'host' | 'database' | 'user' | 'table' | 'customSql' | 'declaredArchitecture') =>
    (e: FormEvent<HTMLInputElement | HTMLTextAreaElement>) => {
      const value = e.currentTarget.value;
      setJson({ [key]: value === '' ? undefined : value });
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

  const secretInput = (key: SecureKey, id: string, placeholder: string) => (
    <SecretInput
      id={id}
      width={INPUT_WIDTH}
      isConfigured={Boolean(secureJsonFields[key])}
      value={secureJsonData[key] ?? ''}
      placeholder={placeholder}
      onChange={(e: ChangeEvent<HTMLInputElement>) => setSecret(key, e.currentTarget.value)}
      onReset={() => resetSecret(key)}
    />
  );

  const secretTextArea = (key: SecureKey, id: string, placeholder: string) => (
    <SecretTextArea
      id={id}
      rows={5}
      cols={45}
      isConfigured={Boolean(secureJsonFields[key])}
      value={secureJsonData[key] ?? ''}
      placeholder={placeholder}
      onChange={(e: ChangeEvent<HTMLTextAreaElement>) => setSecret(key, e.currentTarget.value)}
      onReset={() => resetSecret(key)}
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
        <InlineField label="Host" labelWidth={LABEL_WIDTH} tooltip="host:port of the PostgreSQL server" required>
          <Input
            id="servicemap-host"
            width={INPUT_WIDTH}
            value={jsonData.host ?? ''}
            placeholder="localhost:5432"
            onChange={onString('host')}
          />
        </InlineField>
        <InlineField label="Database" labelWidth={LABEL_WIDTH} required>
          <Input
            id="servicemap-database"
            width={INPUT_WIDTH}
            value={jsonData.database ?? ''}
            placeholder="traces"
            onChange={onString('database')}
          />
        </InlineField>
        <InlineField label="User" labelWidth={LABEL_WIDTH} tooltip="Give it read-only rights on the span tables">
          <Input
            id="servicemap-user"
            width={INPUT_WIDTH}
            value={jsonData.user ?? ''}
            placeholder="grafana_reader"
            onChange={onString('user')}
          />
        </InlineField>
        <InlineField label="Password" labelWidth={LABEL_WIDTH}>
          {secretInput('password', 'servicemap-password', 'password')}
        </InlineField>
        <InlineField label="SSL mode" labelWidth={LABEL_WIDTH} tooltip="How the connection uses TLS">
          <Select<SslMode>
            inputId="servicemap-ssl-mode"
            width={INPUT_WIDTH}
            options={SSL_MODE_OPTIONS}
            value={sslMode}
            onChange={(option) => option.value && setJson({ sslMode: option.value })}
          />
        </InlineField>
        {verifying && (
          <>
            <InlineField label="CA certificate" labelWidth={LABEL_WIDTH} tooltip="PEM of the CA that signed the server">
              {secretTextArea('tlsCACert', 'servicemap-tls-ca-cert', '-----BEGIN CERTIFICATE-----')}
            </InlineField>
            <InlineField label="Client certificate" labelWidth={LABEL_WIDTH} tooltip="PEM, for client authentication">
              {secretTextArea('tlsClientCert', 'servicemap-tls-client-cert', '-----BEGIN CERTIFICATE-----')}
            </InlineField>
            <InlineField label="Client key" labelWidth={LABEL_WIDTH} tooltip="PEM, for client authentication">
              {secretTextArea('tlsClientKey', 'servicemap-tls-client-key', '-----BEGIN PRIVATE KEY-----')}
            </InlineField>
          </>
        )}
        <InlineField label="Statement timeout (s)" labelWidth={LABEL_WIDTH} tooltip="Longest a SQL read may run">
          <NumberInput
            id="servicemap-statement-timeout"
            integer
            min={1}
            value={jsonData.statementTimeoutSeconds}
            placeholder={String(DEFAULTS.statementTimeoutSeconds)}
            onChange={(statementTimeoutSeconds) => setJson({ statementTimeoutSeconds })}
          />
        </InlineField>
        <InlineField label="Max connections" labelWidth={LABEL_WIDTH} tooltip="Size of the connection pool">
          <NumberInput
            id="servicemap-max-connections"
            integer
            min={1}
            value={jsonData.maxConnections}
            placeholder={String(DEFAULTS.maxConnections)}
            onChange={(maxConnections) => setJson({ maxConnections })}
          />
        </InlineField>
      </FieldSet>

      <FieldSet label="Trace table">
        <InlineField label="Table shape" labelWidth={LABEL_WIDTH} tooltip="How calls are stored">
          <RadioButtonGroup<TableShape>
            options={TABLE_SHAPE_OPTIONS}
            value={tableShape}
            onChange={(value) => setJson({ tableShape: value })}
          />
        </InlineField>
        {tableShape !== 'custom' && (
          <InlineField label="Table" labelWidth={LABEL_WIDTH} tooltip="schema.table is allowed">
            <Input
              id="servicemap-table"
              width={INPUT_WIDTH}
              value={jsonData.table ?? ''}
              placeholder={tableShape === 'calls' ? 'calls' : 'spans'}
              onChange={onString('table')}
            />
          </InlineField>
        )}
        {tableShape === 'custom' && (
          <InlineField
            label="Custom SQL"
            labelWidth={LABEL_WIDTH}
            tooltip="Must return the columns of the calls shape; $__from and $__to bound the time"
          >
            <TextArea
              id="servicemap-custom-sql"
              rows={8}
              cols={60}
              value={jsonData.customSql ?? ''}
              placeholder="SELECT ts, source, target, status_code, duration_ms FROM calls WHERE ts >= $__from AND ts < $__to"
              onChange={onString('customSql')}
            />
          </InlineField>
        )}
      </FieldSet>

      <FieldSet label="Cache">
        <InlineField label="Refresh interval (s)" labelWidth={LABEL_WIDTH} tooltip="How often sources are read">
          <NumberInput
            id="servicemap-refresh-interval"
            integer
            min={1}
            value={jsonData.refreshIntervalSeconds}
            placeholder={String(DEFAULTS.refreshIntervalSeconds)}
            onChange={(refreshIntervalSeconds) => setJson({ refreshIntervalSeconds })}
          />
        </InlineField>
        <InlineField label="Retention (hours)" labelWidth={LABEL_WIDTH} tooltip="How far back the cache answers">
          <NumberInput
            id="servicemap-retention"
            integer
            min={1}
            value={jsonData.retentionHours}
            placeholder={String(DEFAULTS.retentionHours)}
            onChange={(retentionHours) => setJson({ retentionHours })}
          />
        </InlineField>
        <InlineField
          label="Grace period (s)"
          labelWidth={LABEL_WIDTH}
          tooltip="How long late spans are awaited before a bucket is final"
        >
          <NumberInput
            id="servicemap-grace-period"
            integer
            min={0}
            value={jsonData.gracePeriodSeconds}
            placeholder={String(DEFAULTS.gracePeriodSeconds)}
            onChange={(gracePeriodSeconds) => setJson({ gracePeriodSeconds })}
          />
        </InlineField>
      </FieldSet>

      <FieldSet label="SLO">
        <p>Edges over an objective turn red; over the warning share of it, yellow.</p>
        <InlineField label="Error rate (%)" labelWidth={LABEL_WIDTH} tooltip="Default objective; 1 means 1 %">
          <NumberInput
            id="servicemap-slo-error-rate"
            scale={100}
            min={0}
            max={100}
            value={slo.errorRate}
            placeholder={String(DEFAULTS.slo.errorRate * 100)}
            onChange={(errorRate) => setSlo({ errorRate })}
          />
        </InlineField>
        <InlineField label="p99 latency (ms)" labelWidth={LABEL_WIDTH} tooltip="Default objective">
          <NumberInput
            id="servicemap-slo-p99"
            min={0}
            value={slo.p99LatencyMs}
            placeholder={String(DEFAULTS.slo.p99LatencyMs)}
            onChange={(p99LatencyMs) => setSlo({ p99LatencyMs })}
          />
        </InlineField>
        <InlineField
          label="Warning at (% of objective)"
          labelWidth={LABEL_WIDTH}
          tooltip="80 warns when an edge reaches 80 % of its objective"
        >
          <NumberInput
            id="servicemap-slo-warning"
            scale={100}
            min={0}
            max={100}
            value={slo.warningFraction}
            placeholder={String(DEFAULTS.slo.warningFraction * 100)}
            onChange={(warningFraction) => setSlo({ warningFraction })}
          />
        </InlineField>
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
        <InlineField label="Open traces in" labelWidth={LABEL_WIDTH} tooltip="Where an edge's example traces open">
          <RadioButtonGroup<TraceLinkType>
            options={TRACE_LINK_OPTIONS}
            value={traceLinkType}
            onChange={(type) => setTraceLink({ type })}
          />
        </InlineField>
        {(traceLinkType === 'tempo' || traceLinkType === 'jaeger') && (
          <InlineField
            label="Data source UID"
            labelWidth={LABEL_WIDTH}
            tooltip="UID of the Tempo or Jaeger data source"
          >
            <Input
              id="servicemap-trace-datasource-uid"
              width={INPUT_WIDTH}
              value={traceLink.datasourceUid ?? ''}
              placeholder="tempo"
              onChange={(e) => setTraceLink({ datasourceUid: e.currentTarget.value || undefined })}
            />
          </InlineField>
        )}
        {traceLinkType === 'url' && (
          <InlineField label="URL template" labelWidth={LABEL_WIDTH} tooltip="${traceId} is replaced by the trace id">
            <Input
              id="servicemap-trace-url-template"
              width={60}
              value={traceLink.urlTemplate ?? ''}
              placeholder="https://tracing.example.com/trace/${traceId}"
              onChange={(e) => setTraceLink({ urlTemplate: e.currentTarget.value || undefined })}
            />
          </InlineField>
        )}
      </FieldSet>

      <FieldSet label="Kubernetes">
        <InlineField
          label="Enabled"
          labelWidth={LABEL_WIDTH}
          tooltip="Network evidence from the cluster and its agents"
        >
          <InlineSwitch
            id="servicemap-kube-enabled"
            value={Boolean(kube.enabled)}
            onChange={(e) => setKube({ enabled: e.currentTarget.checked })}
          />
        </InlineField>
        {kube.enabled && (
          <>
            <InlineField label="Connection" labelWidth={LABEL_WIDTH}>
              <RadioButtonGroup<KubernetesMode>
                options={KUBE_MODE_OPTIONS}
                value={kubeMode}
                onChange={(mode) => setKube({ mode })}
              />
            </InlineField>
            {kubeMode === 'url' && (
              <>
                <InlineField label="API server URL" labelWidth={LABEL_WIDTH}>
                  <Input
                    id="servicemap-kube-api-server"
                    width={INPUT_WIDTH}
                    value={kube.apiServerUrl ?? ''}
                    placeholder="https://kubernetes.example.com:6443"
                    onChange={(e) => setKube({ apiServerUrl: e.currentTarget.value || undefined })}
                  />
                </InlineField>
                <InlineField label="Token" labelWidth={LABEL_WIDTH} tooltip="Bearer token of a service account">
                  {secretInput('kubeToken', 'servicemap-kube-token', 'service account token')}
                </InlineField>
                <InlineField label="CA certificate" labelWidth={LABEL_WIDTH} tooltip="PEM of the API server's CA">
                  {secretTextArea('kubeCACert', 'servicemap-kube-ca-cert', '-----BEGIN CERTIFICATE-----')}
                </InlineField>
              </>
            )}
            <InlineField label="Namespaces" labelWidth={LABEL_WIDTH} tooltip="Comma separated; empty watches all">
              <ListInput
                id="servicemap-kube-namespaces"
                value={kube.namespaces}
                placeholder="all namespaces"
                onChange={(namespaces) => setKube({ namespaces })}
              />
            </InlineField>
            <InlineField label="Agent port" labelWidth={LABEL_WIDTH} tooltip="HTTP port of the node agents">
              <NumberInput
                id="servicemap-agent-port"
                integer
                min={1}
                max={65535}
                value={kube.agentPort}
                placeholder="9465"
                onChange={(agentPort) => setKube({ agentPort })}
              />
            </InlineField>
            <InlineField label="Agent namespace" labelWidth={LABEL_WIDTH} tooltip="Namespace of the agent DaemonSet">
              <Input
                id="servicemap-agent-namespace"
                width={INPUT_WIDTH}
                value={kube.agentNamespace ?? ''}
                placeholder="servicemap"
                onChange={(e) => setKube({ agentNamespace: e.currentTarget.value || undefined })}
              />
            </InlineField>
            <InlineField label="Agent label selector" labelWidth={LABEL_WIDTH} tooltip="Finds the agent pods">
              <Input
                id="servicemap-agent-label-selector"
                width={INPUT_WIDTH}
                value={kube.agentLabelSelector ?? ''}
                placeholder="app.kubernetes.io/name=servicemap-agent"
                onChange={(e) => setKube({ agentLabelSelector: e.currentTarget.value || undefined })}
              />
            </InlineField>
            <InlineField label="Agent token" labelWidth={LABEL_WIDTH} tooltip="Shared secret the agents expect">
              {secretInput('agentToken', 'servicemap-agent-token', 'agent token')}
            </InlineField>
            <InlineField
              label="Static agents"
              labelWidth={LABEL_WIDTH}
              tooltip="host:port of agents outside the cluster, one per line"
            >
              <ListInput
                id="servicemap-static-agents"
                multiline
                value={kube.staticAgents}
                placeholder={'10.0.0.5:9465\nvm-gateway:9465'}
                onChange={(staticAgents) => setKube({ staticAgents })}
              />
            </InlineField>
            <CidrRulesField value={kube.externalCidrs} onChange={(externalCidrs) => setKube({ externalCidrs })} />
          </>
        )}
      </FieldSet>

      <FieldSet label="Gateway">
        <InlineField label="Enabled" labelWidth={LABEL_WIDTH} tooltip="Edges from API gateway access logs">
          <InlineSwitch
            id="servicemap-gateway-enabled"
            value={Boolean(gateway.enabled)}
            onChange={(e) => setGateway({ enabled: e.currentTarget.checked })}
          />
        </InlineField>
        {gateway.enabled && (
          <InlineField
            label="Access log table"
            labelWidth={LABEL_WIDTH}
            tooltip="SQL table of parsed access logs; empty uses the agents next to the gateway"
          >
            <Input
              id="servicemap-gateway-table"
              width={INPUT_WIDTH}
              value={gateway.table ?? ''}
              placeholder="gateway_access_log"
              onChange={(e) => setGateway({ table: e.currentTarget.value || undefined })}
            />
          </InlineField>
        )}
      </FieldSet>

      <FieldSet label="Declared architecture">
        <p>The architecture as documented, in YAML. The drift query compares it with what is observed.</p>
        <TextArea
          id="servicemap-declared-architecture"
          aria-label="Declared architecture"
          rows={12}
          value={jsonData.declaredArchitecture ?? ''}
          placeholder={DECLARED_PLACEHOLDER}
          onChange={onString('declaredArchitecture')}
        />
      </FieldSet>
    </div>
  );
}

interface CidrRulesFieldProps {
  value?: ExternalCidr[];
  onChange: (value: ExternalCidr[] | undefined) => void;
}

/** External CIDR rules edited as "name=cidr" lines, stored when the field loses focus. */
function CidrRulesField({ value, onChange }: CidrRulesFieldProps) {
  const formatted = formatCidrRules(value);
  const [text, setText] = useState(formatted);
  const [invalid, setInvalid] = useState<string[]>([]);
  useEffect(() => setText(formatted), [formatted]);

  return (
    <InlineField
      label="External CIDRs"
      labelWidth={LABEL_WIDTH}
      tooltip="Names for addresses outside the cluster, one name=cidr per line"
      invalid={invalid.length > 0}
      error={invalid.length > 0 ? `Not name=cidr: ${invalid.join(', ')}` : undefined}
    >
      <TextArea
        id="servicemap-external-cidrs"
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
