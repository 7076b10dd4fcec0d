import React, { useState } from 'react';
import { DataSourceSettings } from '@grafana/data';
import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';

import { ConfigEditor, isCidr, parseCidrRules } from './ConfigEditor';
import { ServiceMapOptions, ServiceMapSecureJsonData } from '../types';

type Settings = DataSourceSettings<ServiceMapOptions, ServiceMapSecureJsonData>;

function baseSettings(overrides: Partial<Settings> = {}): Settings {
  return {
    id: 1,
    uid: 'servicemap',
    orgId: 1,
    name: 'Live Service Map',
    typeLogoUrl: '',
    type: 'livemap-servicemap-datasource',
    typeName: 'Live Service Map',
    access: 'proxy',
    url: '',
    user: '',
    database: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    jsonData: {},
    secureJsonFields: {},
    readOnly: false,
    withCredentials: false,
    ...overrides,
  } as Settings;
}

/** Renders the editor the way Grafana does: every change is fed back as the new options. */
function setup(initial: Settings = baseSettings()) {
  const onOptionsChange = jest.fn();
  function Harness() {
    const [options, setOptions] = useState<Settings>(initial);
    return (
      <ConfigEditor
        options={options}
        onOptionsChange={(next) => {
          onOptionsChange(next);
          setOptions(next as Settings);
        }}
      />
    );
  }
  render(<Harness />);
  const last = (): Settings => onOptionsChange.mock.calls[onOptionsChange.mock.calls.length - 1][0];
  return { onOptionsChange, last, user: userEvent.setup({ delay: null }) };
}

describe('ConfigEditor', () => {
  it('stores connection settings in jsonData under the backend keys', async () => {
    const { last, user } = setup();
    await user.type(screen.getByLabelText(/^Host/), 'db.internal:5432');
    await user.type(screen.getByLabelText(/^Database/), 'traces');
    await user.type(screen.getByLabelText('User'), 'reader');
    await user.type(screen.getByLabelText('Statement timeout (s)'), '45');
    await user.type(screen.getByLabelText('Max connections'), '8');

    expect(last().jsonData).toEqual({
      host: 'db.internal:5432',
      database: 'traces',
      user: 'reader',
      statementTimeoutSeconds: 45,
      maxConnections: 8,
    });
  });

  it('writes the password only into secureJsonData', async () => {
    const { last, user } = setup();
    await user.type(screen.getByLabelText('Password'), 's3cret!');

    const options = last();
    expect(options.secureJsonData).toEqual({ password: 's3cret!' });
    expect(options.jsonData).toEqual({});
    expect(JSON.stringify(options.jsonData)).not.toContain('s3cret');
    expect(options).not.toHaveProperty('password', 's3cret!');
  });

  it('shows a configured password as configured and resets it', async () => {
    const { last, user } = setup(
      baseSettings({ jsonData: { host: 'db:5432' }, secureJsonFields: { password: true, tlsCACert: false } })
    );
    const password = screen.getByLabelText('Password');
    expect(password).toBeDisabled();
    expect(password).toHaveValue('configured');

    await user.click(screen.getByRole('button', { name: 'Reset' }));

    expect(last().secureJsonFields).toEqual({ password: false, tlsCACert: false });
    expect(last().secureJsonData).toEqual({ password: '' });
    expect(last().jsonData).toEqual({ host: 'db:5432' });
    expect(screen.getByLabelText('Password')).toBeEnabled();
  });

  it('stores the SLO error rate as a fraction while showing percent', async () => {
    const { last, user } = setup();
    const errorRate = screen.getByLabelText('Error rate (%)');
    await user.type(errorRate, '2.5');
    // Only what was set is stored; the backend applies its defaults to the rest.
    expect(last().jsonData.slo).toEqual({ errorRate: 0.025, overrides: [] });
    expect(errorRate).toHaveValue(2.5);

    await user.type(screen.getByLabelText('p99 latency (ms)'), '750');
    await user.type(screen.getByLabelText('Warning at (% of objective)'), '90');
    expect(last().jsonData.slo).toEqual({ errorRate: 0.025, p99LatencyMs: 750, warningFraction: 0.9, overrides: [] });

    // Clearing a number removes it so the backend default applies.
    await user.clear(screen.getByLabelText('p99 latency (ms)'));
    expect(last().jsonData.slo?.p99LatencyMs).toBeUndefined();
    expect(JSON.parse(JSON.stringify(last().jsonData.slo))).toEqual({
      errorRate: 0.025,
      warningFraction: 0.9,
      overrides: [],
    });
  });

  it('shows stored SLO fractions as percent', () => {
    setup(
      baseSettings({ jsonData: { slo: { errorRate: 0.011, p99LatencyMs: 300, warningFraction: 0.75, overrides: [] } } })
    );
    expect(screen.getByLabelText('Error rate (%)')).toHaveValue(1.1);
    expect(screen.getByLabelText('p99 latency (ms)')).toHaveValue(300);
    expect(screen.getByLabelText('Warning at (% of objective)')).toHaveValue(75);
  });

  it('edits per-service SLO overrides', async () => {
    const { last, user } = setup();
    await user.click(screen.getByRole('button', { name: /Add override/ }));
    await user.type(
      screen.getByTestId('slo-override-0').querySelector('input#servicemap-slo-override-0-service')!,
      'checkout'
    );
    await user.type(
      screen.getByTestId('slo-override-0').querySelector('input#servicemap-slo-override-0-error-rate')!,
      '5'
    );
    await user.type(screen.getByTestId('slo-override-0').querySelector('input#servicemap-slo-override-0-p99')!, '200');
    await user.click(screen.getByRole('button', { name: /Add override/ }));
    await user.type(
      screen.getByTestId('slo-override-1').querySelector('input#servicemap-slo-override-1-service')!,
      'search'
    );

    expect(last().jsonData.slo?.overrides).toEqual([
      { service: 'checkout', errorRate: 0.05, p99LatencyMs: 200 },
      { service: 'search' },
    ]);

    await user.click(screen.getByRole('button', { name: 'Remove override 1' }));
    expect(last().jsonData.slo?.overrides).toEqual([{ service: 'search' }]);
  });

  it('shows the TLS secrets only for verify modes and keeps them secret', async () => {
    const { last, user } = setup(baseSettings({ jsonData: { sslMode: 'verify-full' } }));
    const ca = screen.getByLabelText('CA certificate');
    await user.type(ca, 'PEM-CA');
    expect(last().secureJsonData).toEqual({ tlsCACert: 'PEM-CA' });
    expect(last().jsonData).toEqual({ sslMode: 'verify-full' });
    expect(screen.getByLabelText('Client certificate')).toBeInTheDocument();
    expect(screen.getByLabelText('Client key')).toBeInTheDocument();
  });

  it('stores the SSL mode chosen in the select', async () => {
    const { last, user } = setup();
    await user.click(document.getElementById('servicemap-ssl-mode')!);
    await user.click(await screen.findByRole('option', { name: /^verify-ca/ }));
    expect(last().jsonData).toEqual({ sslMode: 'verify-ca' });
    expect(screen.getByLabelText('CA certificate')).toBeInTheDocument();
  });

  it('hides the TLS secrets for the default require mode', () => {
    setup();
    expect(screen.queryByLabelText('CA certificate')).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Client key')).not.toBeInTheDocument();
  });

  it('shows the custom SQL box only for the custom table shape', async () => {
    const { last, user } = setup();
    expect(screen.getByLabelText('Table')).toBeInTheDocument();
    expect(screen.queryByLabelText('Custom SQL')).not.toBeInTheDocument();

    await user.click(screen.getByLabelText('Custom'));
    expect(last().jsonData.tableShape).toBe('custom');
    expect(screen.queryByLabelText('Table')).not.toBeInTheDocument();
    await user.type(screen.getByLabelText('Custom SQL'), 'SELECT 1');
    expect(last().jsonData.customSql).toBe('SELECT 1');
  });

  it('stores Kubernetes settings, lists and secrets', async () => {
    const { last, user } = setup();
    expect(screen.queryByLabelText('Namespaces')).not.toBeInTheDocument();
    await user.click(screen.getByLabelText('Enabled', { selector: '#servicemap-kube-enabled' }));
    expect(last().jsonData.kubernetes).toEqual({ enabled: true, mode: 'inCluster' });

    await user.type(screen.getByLabelText('Namespaces'), 'shop, payments ,,data');
    await user.tab();
    expect(last().jsonData.kubernetes?.namespaces).toEqual(['shop', 'payments', 'data']);

    await user.type(screen.getByLabelText('Agent port'), '9465');
    expect(last().jsonData.kubernetes?.agentPort).toBe(9465);

    await user.type(screen.getByLabelText('Static agents'), '10.0.0.5:9465{enter}gw-1:9465');
    await user.tab();
    expect(last().jsonData.kubernetes?.staticAgents).toEqual(['10.0.0.5:9465', 'gw-1:9465']);

    await user.type(screen.getByLabelText('External CIDRs'), 'psp=203.0.113.0/24{enter}broken');
    await user.tab();
    expect(last().jsonData.kubernetes?.externalCidrs).toEqual([{ name: 'psp', cidr: '203.0.113.0/24' }]);
    expect(screen.getByText(/Not name=cidr: broken/)).toBeInTheDocument();

    await user.type(screen.getByLabelText('Agent token'), 'agent-secret');
    expect(last().secureJsonData).toEqual({ agentToken: 'agent-secret' });

    await user.click(screen.getByLabelText('API server URL', { selector: 'input[type="radio"]' }));
    await user.type(
      screen.getByLabelText('API server URL', { selector: 'input#servicemap-kube-api-server' }),
      'https://k8s:6443'
    );
    await user.type(screen.getByLabelText('Token'), 'kube-secret');
    expect(last().jsonData.kubernetes).toMatchObject({ enabled: true, mode: 'url', apiServerUrl: 'https://k8s:6443' });
    expect(last().secureJsonData).toEqual({ agentToken: 'agent-secret', kubeToken: 'kube-secret' });
    expect(JSON.stringify(last().jsonData)).not.toContain('secret');
  });

  it('stores trace link, gateway and declared architecture settings', async () => {
    const { last, user } = setup();
    await user.click(screen.getByLabelText('Tempo'));
    await user.type(screen.getByLabelText('Data source UID'), 'tempo-uid');
    expect(last().jsonData.traceLink).toEqual({ type: 'tempo', datasourceUid: 'tempo-uid' });

    await user.click(screen.getByLabelText('Enabled', { selector: '#servicemap-gateway-enabled' }));
    await user.type(screen.getByLabelText('Access log table'), 'nginx_log');
    expect(last().jsonData.gateway).toEqual({ enabled: true, table: 'nginx_log' });

    await user.type(screen.getByLabelText('Declared architecture'), 'services: {{}');
    expect(last().jsonData.declaredArchitecture).toBe('services: {}');
  });

  it('stores the gateway table, agent list and agent CA, the CA only in secureJsonData', async () => {
    const { last, user } = setup();
    expect(screen.queryByLabelText('Gateway agents')).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Agent CA certificate')).not.toBeInTheDocument();

    await user.click(screen.getByLabelText('Enabled', { selector: '#servicemap-gateway-enabled' }));
    expect(last().jsonData.gateway).toEqual({ enabled: true });
    // the backend's default table is shown, not stored
    expect(screen.getByLabelText('Access log table')).toHaveAttribute('placeholder', 'gateway_logs');

    await user.type(screen.getByLabelText('Gateway agents'), 'http://10.0.0.7:9464{enter}https://gw-1:9464, ');
    await user.tab();
    expect(last().jsonData.gateway).toEqual({ enabled: true, agents: ['http://10.0.0.7:9464', 'https://gw-1:9464'] });

    // agent secrets serve the gateway agents too, without Kubernetes
    await user.type(screen.getByLabelText('Agent CA certificate'), 'PEM-AGENT-CA');
    await user.type(screen.getByLabelText('Agent token'), 'agent-secret');
    expect(last().secureJsonData).toEqual({ agentCACert: 'PEM-AGENT-CA', agentToken: 'agent-secret' });
    expect(JSON.stringify(last().jsonData)).not.toContain('PEM-AGENT-CA');

    // clearing the list drops it
    await user.clear(screen.getByLabelText('Gateway agents'));
    await user.tab();
    expect(last().jsonData.gateway).toEqual({ enabled: true });

    // agents only, and named callers for table rows
    expect(screen.getByLabelText('Read the table')).toBeChecked();
    await user.click(screen.getByLabelText('Read the table'));
    expect(last().jsonData.gateway).toEqual({ enabled: true, readTable: false });
    await user.type(screen.getByLabelText('Caller CIDRs'), 'partner=198.51.100.0/24');
    await user.tab();
    expect(last().jsonData.gateway?.callerCidrs).toEqual([{ name: 'partner', cidr: '198.51.100.0/24' }]);

    // the name agents' certificates are checked against
    await user.type(screen.getByLabelText('Agent TLS server name'), 'servicemap-agent');
    expect(last().jsonData.kubernetes?.agentTLSServerName).toBe('servicemap-agent');
  });

  it('shows saved gateway agents one per line and a saved agent CA as configured', async () => {
    const { last, user } = setup(
      baseSettings({
        jsonData: { gateway: { enabled: true, table: 'nginx_log', agents: ['http://a:9464', 'http://b:9464'] } },
        secureJsonFields: { agentCACert: true },
      })
    );
    expect(screen.getByLabelText('Gateway agents')).toHaveValue('http://a:9464\nhttp://b:9464');
    expect(screen.getByLabelText('Access log table')).toHaveValue('nginx_log');
    const ca = screen.getByLabelText('Agent CA certificate');
    expect(ca).toBeDisabled();
    expect(ca).toHaveValue('configured');
    await user.click(screen.getByRole('button', { name: 'Reset' }));
    expect(last().secureJsonFields).toEqual({ agentCACert: false });
    expect(last().secureJsonData).toEqual({ agentCACert: '' });
    expect(screen.getByLabelText('Agent CA certificate')).toBeEnabled();
  });

  it('stores cache settings as whole numbers', async () => {
    const { last, user } = setup();
    await user.type(screen.getByLabelText('Refresh interval (s)'), '30');
    await user.type(screen.getByLabelText('Retention (hours)'), '48');
    await user.type(screen.getByLabelText('Grace period (s)'), '90');
    expect(last().jsonData).toEqual({ refreshIntervalSeconds: 30, retentionHours: 48, gracePeriodSeconds: 90 });
  });
});

describe('parseCidrRules', () => {
  it('parses name=cidr items and reports the rest', () => {
    expect(parseCidrRules('a=10.0.0.0/8\n b = 2001:db8::/32 , bad=300.1.1.1/8, =1.2.3.4/32, c=1.2.3.4')).toEqual({
      rules: [
        { name: 'a', cidr: '10.0.0.0/8' },
        { name: 'b', cidr: '2001:db8::/32' },
      ],
      invalid: ['bad=300.1.1.1/8', '=1.2.3.4/32', 'c=1.2.3.4'],
    });
    expect(isCidr('192.168.1.0/33')).toBe(false);
    expect(isCidr('::/0')).toBe(true);
  });
});
