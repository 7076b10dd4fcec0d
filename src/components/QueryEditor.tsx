import React, { ChangeEvent } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, InlineFieldRow, Input, MultiSelect, RadioButtonGroup, Select } from '@grafana/ui';

import type { DataSource } from '../datasource';
import {
  BaselineMode,
  DEFAULT_BASELINE,
  DEFAULT_DEPTH,
  DEFAULT_FORMAT,
  DEFAULT_METRIC,
  EdgeMetric,
  EdgeMetricsFormat,
  EvidenceSource,
  FRAMES_BY_TYPE,
  MAX_DEPTH,
  MIN_DEPTH,
  QueryType,
  ServiceMapOptions,
  ServiceMapQuery,
} from '../types';
import { ServiceSelect, useServices } from './ServiceSelect';

type Props = QueryEditorProps<DataSource, ServiceMapQuery, ServiceMapOptions>;

export const QUERY_TYPE_OPTIONS: Array<SelectableValue<QueryType>> = [
  { label: 'Service map', value: 'serviceMap', description: 'Nodes and edges for the Node Graph panel' },
  { label: 'Edge metrics', value: 'edgeMetrics', description: 'One series per edge, for alerting and graphs' },
  { label: 'Impact', value: 'impact', description: 'Who depends on a service, blast radius, recovery order' },
  { label: 'Changes', value: 'changes', description: 'Edges and services added or gone since a baseline' },
  { label: 'Drift', value: 'drift', description: 'Declared architecture compared with observed calls' },
  { label: 'Deploy annotations', value: 'deployAnnotations', description: 'Deployments as annotations' },
];

export const SOURCE_OPTIONS: Array<SelectableValue<EvidenceSource>> = [
  { label: 'Traces', value: 'traces', description: 'Client/server span pairs from PostgreSQL' },
  { label: 'Network', value: 'network', description: 'TCP connections seen by the node agents' },
  { label: 'Gateway', value: 'gateway', description: 'API gateway / load balancer access logs' },
];

export const METRIC_OPTIONS: Array<SelectableValue<EdgeMetric>> = [
  { label: 'Requests per second', value: 'requests_per_second' },
  { label: 'Error rate', value: 'error_rate' },
  { label: 'p99 latency (ms)', value: 'p99_latency_ms' },
];

const FORMAT_OPTIONS: Array<SelectableValue<EdgeMetricsFormat>> = [
  { label: 'Time series', value: 'timeseries' },
  { label: 'Numeric', value: 'numeric' },
];

const BASELINE_OPTIONS: Array<SelectableValue<BaselineMode>> = [
  { label: 'Previous range', value: 'previousRange', description: 'The range of the same length just before' },
  { label: 'Since date', value: 'since', description: 'The range of the same length ending at a date' },
  {
    label: 'Since last deploy',
    value: 'lastDeploy',
    description: "The range of the same length ending at the service's last deploy",
  },
];

const LABEL_WIDTH = 16;

/** Fills the defaults a query type needs when the user switches to it. */
export function withQueryType(query: ServiceMapQuery, queryType: QueryType): ServiceMapQuery {
  const next: ServiceMapQuery = { ...query, queryType };
  // frame names differ between query types
  delete next.frame;
  switch (queryType) {
    case 'serviceMap':
      next.depthUp = query.depthUp ?? DEFAULT_DEPTH;
      next.depthDown = query.depthDown ?? DEFAULT_DEPTH;
      break;
    case 'edgeMetrics':
      next.metric = query.metric ?? DEFAULT_METRIC;
      next.format = query.format ?? DEFAULT_FORMAT;
      break;
    case 'changes':
      next.baseline = query.baseline ?? DEFAULT_BASELINE;
      break;
  }
  return next;
}

/** Parses a depth field; empty gives undefined (the default), otherwise clamps to 0..10. */
export function parseDepth(text: string): number | undefined {
  if (text.trim() === '') {
    return undefined;
  }
  const n = Math.floor(Number(text));
  if (!Number.isFinite(n)) {
    return undefined;
  }
  return Math.min(MAX_DEPTH, Math.max(MIN_DEPTH, n));
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

/**
 * What the backend accepts as since: an RFC 3339 time or a plain date (midnight UTC),
 * or a template variable that will become one.
 */
export function isValidSince(since: string | undefined): boolean {
  if (!since) {
    return true;
  }
  const text = since.trim();
  if (text.includes('$')) {
    return true;
  }
  if (!(DATE.test(text) || RFC3339.test(text)) || Number.isNaN(Date.parse(text))) {
    return false;
  }
  // Date.parse rolls 2024-02-30 over to March; the backend refuses it
  const [y, m, d] = text.slice(0, 10).split('-').map(Number);
  const day = new Date(Date.UTC(y, m - 1, d));
  return day.getUTCMonth() === m - 1 && day.getUTCDate() === d;
}

/** Splits the frame field into names; empty gives []. */
export function parseFrames(frame: string | undefined): string[] {
  return (frame ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export function QueryEditor({ query, onChange, onRunQuery, datasource }: Props) {
  const { services, loading } = useServices(datasource);
  const queryType: QueryType = query.queryType ?? 'serviceMap';

  const update = (patch: Partial<ServiceMapQuery>, run = true) => {
    onChange({ ...query, ...patch });
    if (run) {
      onRunQuery();
    }
  };

  const onText = (key: 'namespace' | 'since') => (e: ChangeEvent<HTMLInputElement>) => {
    const value = e.currentTarget.value;
    onChange({ ...query, [key]: value === '' ? undefined : value });
  };

  const serviceField = (label: string, tooltip: string, placeholder?: string, error?: string) => (
    <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} invalid={Boolean(error)} error={error}>
      <ServiceSelect
        inputId={`servicemap-${query.refId}-service`}
        value={query.service}
        services={services}
        loading={loading}
        placeholder={placeholder}
        onChange={(service) => update({ service })}
      />
    </InlineField>
  );

  const depthFields = (
    <InlineFieldRow>
      <InlineField label="Depth up" labelWidth={LABEL_WIDTH} tooltip="Levels of callers shown (0 to 10).">
        <Input
          id={`servicemap-${query.refId}-depth-up`}
          type="number"
          min={MIN_DEPTH}
          max={MAX_DEPTH}
          width={12}
          value={query.depthUp ?? ''}
          placeholder={String(DEFAULT_DEPTH)}
          onChange={(e) => onChange({ ...query, depthUp: parseDepth(e.currentTarget.value) })}
          onBlur={onRunQuery}
        />
      </InlineField>
      <InlineField label="Depth down" labelWidth={LABEL_WIDTH} tooltip="Levels of callees shown (0 to 10).">
        <Input
          id={`servicemap-${query.refId}-depth-down`}
          type="number"
          min={MIN_DEPTH}
          max={MAX_DEPTH}
          width={12}
          value={query.depthDown ?? ''}
          placeholder={String(DEFAULT_DEPTH)}
          onChange={(e) => onChange({ ...query, depthDown: parseDepth(e.currentTarget.value) })}
          onBlur={onRunQuery}
        />
      </InlineField>
    </InlineFieldRow>
  );

  const frameOptions = (FRAMES_BY_TYPE[queryType] ?? []).map((name) => ({ label: name, value: name }));
  const frameField = frameOptions.length > 0 && (
    <InlineFieldRow>
      <InlineField
        label="Frames"
        labelWidth={LABEL_WIDTH}
        tooltip="Only these frames of the answer, e.g. one table for a table panel. None chosen returns all."
      >
        <MultiSelect<string>
          inputId={`servicemap-${query.refId}-frame`}
          width={50}
          options={frameOptions}
          value={parseFrames(query.frame)}
          placeholder="all frames"
          onChange={(options) => {
            const names = options.map((o) => o.value).filter((v): v is string => Boolean(v));
            update({ frame: names.length > 0 ? names.join(',') : undefined });
          }}
        />
      </InlineField>
    </InlineFieldRow>
  );

  return (
    <div data-testid="servicemap-query-editor">
      <InlineFieldRow>
        <InlineField label="Query type" labelWidth={LABEL_WIDTH}>
          <Select<QueryType>
            inputId={`servicemap-${query.refId}-query-type`}
            width={30}
            options={QUERY_TYPE_OPTIONS}
            value={queryType}
            onChange={(option) => {
              if (option.value) {
                onChange(withQueryType(query, option.value));
                onRunQuery();
              }
            }}
          />
        </InlineField>
      </InlineFieldRow>

      {queryType === 'serviceMap' && (
        <>
          <InlineFieldRow>
            {serviceField('Focus service', 'Show the map around this service. Empty shows the whole map.', 'whole map')}
            <InlineField label="Namespace" labelWidth={LABEL_WIDTH} tooltip="Focus on a namespace (Kubernetes).">
              <Input
                id={`servicemap-${query.refId}-namespace`}
                width={24}
                value={query.namespace ?? ''}
                placeholder="all namespaces"
                onChange={onText('namespace')}
                onBlur={onRunQuery}
              />
            </InlineField>
          </InlineFieldRow>
          {depthFields}
          <InlineFieldRow>
            <InlineField label="Sources" labelWidth={LABEL_WIDTH} tooltip="Evidence to join. None chosen uses all.">
              <MultiSelect<EvidenceSource>
                inputId={`servicemap-${query.refId}-sources`}
                width={50}
                options={SOURCE_OPTIONS}
                value={query.sources ?? []}
                placeholder="all sources"
                onChange={(options) => {
                  const sources = options.map((o) => o.value).filter((v): v is EvidenceSource => Boolean(v));
                  update({ sources: sources.length > 0 ? sources : undefined });
                }}
              />
            </InlineField>
          </InlineFieldRow>
        </>
      )}

      {queryType === 'edgeMetrics' && (
        <>
          <InlineFieldRow>
            <InlineField label="Metric" labelWidth={LABEL_WIDTH}>
              <Select<EdgeMetric>
                inputId={`servicemap-${query.refId}-metric`}
                width={30}
                options={METRIC_OPTIONS}
                value={query.metric ?? DEFAULT_METRIC}
                onChange={(option) => option.value && update({ metric: option.value })}
              />
            </InlineField>
            <InlineField
              label="Format"
              labelWidth={LABEL_WIDTH}
              tooltip="Numeric frames need no reduce step in an alert rule."
            >
              <RadioButtonGroup<EdgeMetricsFormat>
                options={FORMAT_OPTIONS}
                value={query.format ?? DEFAULT_FORMAT}
                onChange={(format) => update({ format })}
              />
            </InlineField>
          </InlineFieldRow>
          <InlineFieldRow>
            <InlineField label="Source" labelWidth={LABEL_WIDTH} tooltip="Only edges whose caller is this service.">
              <ServiceSelect
                inputId={`servicemap-${query.refId}-source-filter`}
                value={query.sourceFilter}
                services={services}
                loading={loading}
                placeholder="any source"
                onChange={(sourceFilter) => update({ sourceFilter })}
              />
            </InlineField>
            <InlineField label="Target" labelWidth={LABEL_WIDTH} tooltip="Only edges whose callee is this service.">
              <ServiceSelect
                inputId={`servicemap-${query.refId}-target-filter`}
                value={query.targetFilter}
                services={services}
                loading={loading}
                placeholder="any target"
                onChange={(targetFilter) => update({ targetFilter })}
              />
            </InlineField>
          </InlineFieldRow>
        </>
      )}

      {queryType === 'impact' && (
        <InlineFieldRow>{serviceField('Service', 'The service whose failure is analysed.')}</InlineFieldRow>
      )}

      {queryType === 'changes' && (
        <>
          <InlineFieldRow>
            {serviceField(
              'Service',
              'Only changes around this service (depth up and down as on the service map). Empty compares the whole map.',
              'whole map',
              query.baseline === 'lastDeploy' && !query.service ? 'Since last deploy needs a service' : undefined
            )}
          </InlineFieldRow>
          {query.service && depthFields}
          <InlineFieldRow>
            <InlineField
              label="Baseline"
              labelWidth={LABEL_WIDTH}
              tooltip="What the current map is compared with: a range as long as the query range, ending here."
            >
              <RadioButtonGroup<BaselineMode>
                options={BASELINE_OPTIONS}
                value={query.baseline ?? DEFAULT_BASELINE}
                onChange={(baseline) => update({ baseline })}
              />
            </InlineField>
            {query.baseline === 'since' && (
              <InlineField
                label="Since"
                labelWidth={LABEL_WIDTH}
                tooltip="RFC 3339 time or a date (midnight UTC), e.g. 2024-05-01 or 2024-05-01T12:00:00Z."
                invalid={!isValidSince(query.since)}
                error="Use 2024-05-01 or 2024-05-01T12:00:00Z"
              >
                <Input
                  id={`servicemap-${query.refId}-since`}
                  width={28}
                  value={query.since ?? ''}
                  placeholder="2024-05-01T00:00:00Z"
                  onChange={onText('since')}
                  onBlur={onRunQuery}
                />
              </InlineField>
            )}
          </InlineFieldRow>
        </>
      )}

      {queryType === 'drift' && (
        <p>Compares the declared architecture from the data source settings with the calls observed in the range.</p>
      )}

      {frameField}

      {queryType === 'deployAnnotations' && (
        <InlineFieldRow>
          {serviceField('Service', 'Only deployments of this service. Empty shows all.', 'all services')}
        </InlineFieldRow>
      )}
    </div>
  );
}
