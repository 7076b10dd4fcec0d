import React, { useState } from 'react';
import { act, render, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';

import type { DataSource } from '../datasource';
import { DEFAULT_QUERY, ServiceMapQuery } from '../types';
import { isValidSince, parseDepth, parseFrames, QueryEditor, withQueryType } from './QueryEditor';

jest.mock('@grafana/runtime', () => ({
  ...jest.requireActual('@grafana/runtime'),
  getTemplateSrv: () => ({
    replace: (s: string) => s,
    getVariables: () => [{ name: 'service' }],
  }),
}));

const services = [
  { name: 'checkout', kind: 'service', namespace: 'shop' },
  { name: 'payments', kind: 'service', namespace: 'shop' },
];

function setup(initial: Partial<ServiceMapQuery> = {}) {
  const datasource = { getServices: jest.fn().mockResolvedValue(services) } as unknown as DataSource;
  const onChange = jest.fn();
  const onRunQuery = jest.fn();
  function Harness() {
    const [query, setQuery] = useState<ServiceMapQuery>({ refId: 'A', queryType: 'serviceMap', ...initial });
    return (
      <QueryEditor
        query={query}
        datasource={datasource}
        onRunQuery={onRunQuery}
        onChange={(q) => {
          onChange(q);
          setQuery(q);
        }}
      />
    );
  }
  render(<Harness />);
  const last = (): ServiceMapQuery => onChange.mock.calls[onChange.mock.calls.length - 1][0];
  return { datasource, onChange, onRunQuery, last, user: userEvent.setup({ delay: null }) };
}

/** Opens a @grafana/ui Select by its input id and picks the option with this label. */
async function choose(user: ReturnType<typeof userEvent.setup>, inputId: string, label: string | RegExp) {
  const input = document.getElementById(inputId);
  if (!input) {
    throw new Error(`no input ${inputId}`);
  }
  await user.click(input);
  const option = await screen.findByRole('option', { name: label });
  await user.click(option);
}

describe('QueryEditor', () => {
  it('shows the service map fields by default with depth 2 up and down', async () => {
    const { datasource } = setup(DEFAULT_QUERY);
    expect(screen.getByLabelText('Depth up')).toHaveValue(2);
    expect(screen.getByLabelText('Depth down')).toHaveValue(2);
    expect(screen.getByLabelText('Namespace')).toBeInTheDocument();
    expect(screen.getByLabelText('Sources')).toBeInTheDocument();
    expect(screen.queryByLabelText('Metric')).not.toBeInTheDocument();
    await waitFor(() => expect(datasource.getServices).toHaveBeenCalledTimes(1));
  });

  it('switching to edge metrics sets the query type and its defaults, and shows its fields', async () => {
    const { last, onRunQuery, user } = setup({ service: 'checkout' });
    await choose(user, 'servicemap-A-query-type', /Edge metrics/);

    expect(last()).toEqual({
      refId: 'A',
      queryType: 'edgeMetrics',
      service: 'checkout',
      metric: 'error_rate',
      format: 'timeseries',
    });
    expect(onRunQuery).toHaveBeenCalled();
    expect(screen.getByLabelText('Metric')).toBeInTheDocument();
    expect(screen.getByLabelText('Source')).toBeInTheDocument();
    expect(screen.getByLabelText('Target')).toBeInTheDocument();
    expect(screen.queryByLabelText('Depth up')).not.toBeInTheDocument();

    await choose(user, 'servicemap-A-metric', 'p99 latency (ms)');
    expect(last().metric).toBe('p99_latency_ms');

    await user.click(screen.getByLabelText('Numeric'));
    expect(last().format).toBe('numeric');
  });

  it('switching to changes shows the baseline and, for since, a date input checked as the backend does', async () => {
    const { last, user } = setup();
    await choose(user, 'servicemap-A-query-type', /Changes/);
    expect(last().queryType).toBe('changes');
    expect(last().baseline).toBe('previousRange');
    expect(screen.queryByLabelText('Since')).not.toBeInTheDocument();

    await user.click(screen.getByLabelText('Since date'));
    expect(last().baseline).toBe('since');
    await user.type(screen.getByLabelText('Since'), '2024-05-01T00:00:00Z');
    expect(last().since).toBe('2024-05-01T00:00:00Z');
    expect(screen.queryByText('Use 2024-05-01 or 2024-05-01T12:00:00Z')).not.toBeInTheDocument();

    await user.clear(screen.getByLabelText('Since'));
    await user.type(screen.getByLabelText('Since'), 'yesterday-ish');
    expect(last().since).toBe('yesterday-ish');
    expect(screen.getByText('Use 2024-05-01 or 2024-05-01T12:00:00Z')).toBeInTheDocument();

    await user.click(screen.getByLabelText('Previous range'));
    expect(last().baseline).toBe('previousRange');
    expect(screen.queryByLabelText('Since')).not.toBeInTheDocument();
  });

  it('changes since the last deploy asks for a service, and a service brings the depth fields', async () => {
    const { last, onRunQuery, user } = setup({ queryType: 'changes', baseline: 'previousRange' });
    expect(screen.queryByLabelText('Depth up')).not.toBeInTheDocument();

    await user.click(screen.getByLabelText('Since last deploy'));
    expect(last().baseline).toBe('lastDeploy');
    expect(onRunQuery).toHaveBeenCalled();
    expect(screen.getByText('Since last deploy needs a service')).toBeInTheDocument();

    await choose(user, 'servicemap-A-service', /^checkout/);
    expect(last()).toMatchObject({ queryType: 'changes', baseline: 'lastDeploy', service: 'checkout' });
    expect(screen.queryByText('Since last deploy needs a service')).not.toBeInTheDocument();

    // the neighbourhood compared around the service
    const up = screen.getByLabelText('Depth up');
    await user.clear(up);
    await user.type(up, '1');
    expect(last().depthUp).toBe(1);
  });

  it('offers the frames of the query type and stores the chosen ones comma-separated', async () => {
    const { last, user } = setup({ queryType: 'impact', service: 'checkout' });
    await choose(user, 'servicemap-A-frame', 'recovery_order');
    expect(last().frame).toBe('recovery_order');
    await choose(user, 'servicemap-A-frame', 'summary');
    expect(last().frame).toBe('recovery_order,summary');
    // frames of other query types are not offered
    await user.click(document.getElementById('servicemap-A-frame')!);
    expect(screen.queryByRole('option', { name: 'drift_edges' })).not.toBeInTheDocument();
    expect(screen.getByRole('option', { name: 'root_cause' })).toBeInTheDocument();
    await user.keyboard('{Escape}');

    // another query type starts again with all frames
    await choose(user, 'servicemap-A-query-type', /Drift/);
    expect(last().frame).toBeUndefined();
    await choose(user, 'servicemap-A-frame', 'drift_edges');
    expect(last()).toMatchObject({ queryType: 'drift', frame: 'drift_edges' });

    // the service map and edge metrics answer with all their frames
    await choose(user, 'servicemap-A-query-type', /Service map/);
    expect(document.getElementById('servicemap-A-frame')).toBeNull();
  });

  it('shows the saved frames of a dashboard query', () => {
    setup({ queryType: 'changes', service: '$service', baseline: 'lastDeploy', frame: 'nodes, edges' });
    expect(screen.getByText('nodes')).toBeInTheDocument();
    expect(screen.getByText('edges')).toBeInTheDocument();
    expect(screen.queryByText('changes')).not.toBeInTheDocument();
  });

  it('impact asks for a service; drift for nothing; annotations for an optional service', async () => {
    const { last, user } = setup();
    await choose(user, 'servicemap-A-query-type', /Impact/);
    expect(last().queryType).toBe('impact');
    expect(screen.getByLabelText('Service')).toBeInTheDocument();
    expect(screen.queryByLabelText('Namespace')).not.toBeInTheDocument();

    await choose(user, 'servicemap-A-query-type', /Drift/);
    expect(last().queryType).toBe('drift');
    expect(screen.queryByLabelText('Service')).not.toBeInTheDocument();
    expect(screen.getByText(/declared architecture/)).toBeInTheDocument();

    await choose(user, 'servicemap-A-query-type', /Deploy annotations/);
    expect(last().queryType).toBe('deployAnnotations');
    expect(screen.getByLabelText('Service')).toBeInTheDocument();
  });

  it('offers the services from the backend and template variables as focus service', async () => {
    const { last, user } = setup();
    await choose(user, 'servicemap-A-service', /^payments/);
    expect(last().service).toBe('payments');

    await choose(user, 'servicemap-A-service', /^\$service/);
    expect(last().service).toBe('$service');
  });

  it('accepts a service name that the backend does not list', async () => {
    const { last, user } = setup();
    const input = document.getElementById('servicemap-A-service')!;
    await user.click(input);
    await user.type(input, 'legacy-billing');
    const custom = await screen.findByRole('option', { name: /legacy-billing/ });
    await user.click(custom);
    expect(last().service).toBe('legacy-billing');
  });

  it('stores the depth clamped to 0..10 and the chosen sources', async () => {
    const { last, user } = setup();
    const up = screen.getByLabelText('Depth up');
    expect(up).toHaveAttribute('placeholder', '2');
    await user.clear(up);
    await user.type(up, '15');
    expect(last().depthUp).toBe(10);

    const down = screen.getByLabelText('Depth down');
    await user.clear(down);
    expect(last().depthDown).toBeUndefined();
    await user.type(down, '0');
    expect(last().depthDown).toBe(0);

    await choose(user, 'servicemap-A-sources', /Traces/);
    await choose(user, 'servicemap-A-sources', /Gateway/);
    expect(last().sources).toEqual(['traces', 'gateway']);

    await user.type(screen.getByLabelText('Namespace'), 'shop');
    expect(last().namespace).toBe('shop');
  });

  it('keeps working when the services resource fails', async () => {
    const datasource = { getServices: jest.fn().mockRejectedValue(new Error('boom')) } as unknown as DataSource;
    await act(async () => {
      render(
        <QueryEditor
          query={{ refId: 'A', queryType: 'impact', service: 'checkout' }}
          datasource={datasource}
          onRunQuery={jest.fn()}
          onChange={jest.fn()}
        />
      );
    });
    expect(datasource.getServices).toHaveBeenCalledTimes(1);
    // The saved service is still shown and the editor stays usable.
    expect(screen.getByText('checkout')).toBeInTheDocument();
    expect(screen.getByLabelText('Service')).toBeEnabled();
  });
});

describe('query helpers', () => {
  it('withQueryType keeps the query and fills the defaults of the new type', () => {
    expect(
      withQueryType({ refId: 'A', queryType: 'edgeMetrics', metric: 'requests_per_second' }, 'serviceMap')
    ).toEqual({
      refId: 'A',
      queryType: 'serviceMap',
      metric: 'requests_per_second',
      depthUp: 2,
      depthDown: 2,
    });
    expect(
      withQueryType({ refId: 'A', queryType: 'serviceMap', metric: 'requests_per_second' }, 'edgeMetrics')
    ).toEqual({ refId: 'A', queryType: 'edgeMetrics', metric: 'requests_per_second', format: 'timeseries' });
  });

  it('parseDepth clamps and treats empty as default', () => {
    expect(parseDepth('')).toBeUndefined();
    expect(parseDepth('-3')).toBe(0);
    expect(parseDepth('4.7')).toBe(4);
    expect(parseDepth('99')).toBe(10);
  });

  it('isValidSince accepts what the backend parses: RFC 3339 times, dates and variables', () => {
    expect(isValidSince('2024-05-01')).toBe(true);
    expect(isValidSince('2024-05-01T12:00:00Z')).toBe(true);
    expect(isValidSince('2024-05-01T12:00:00.250+02:00')).toBe(true);
    expect(isValidSince('$deployDate')).toBe(true);
    expect(isValidSince(undefined)).toBe(true);
    expect(isValidSince('next tuesday')).toBe(false);
    // Date.parse takes these, the backend does not
    expect(isValidSince('2024-05-01 12:00')).toBe(false);
    expect(isValidSince('May 1, 2024')).toBe(false);
    expect(isValidSince('2024-05-01T12:00')).toBe(false);
    expect(isValidSince('2024-13-45')).toBe(false);
    expect(isValidSince('2024-02-30')).toBe(false);
    expect(isValidSince('2024-02-29T23:00:00Z')).toBe(true);
  });

  it('parseFrames splits the comma list and drops blanks', () => {
    expect(parseFrames(undefined)).toEqual([]);
    expect(parseFrames(' nodes, edges ,')).toEqual(['nodes', 'edges']);
  });

  it('withQueryType drops the frame choice of the old type', () => {
    expect(withQueryType({ refId: 'A', queryType: 'impact', frame: 'summary' }, 'changes')).toEqual({
      refId: 'A',
      queryType: 'changes',
      baseline: 'previousRange',
    });
  });
});
