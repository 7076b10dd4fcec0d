import { DataSourceInstanceSettings, ScopedVars } from '@grafana/data';
import { lastValueFrom } from 'rxjs';

import { DataSource, prepareAnnotation } from './datasource';
import { ServiceMapOptions, ServiceMapQuery } from './types';

const variables: Record<string, string> = {
  svc: 'checkout',
  ns: 'shop',
  upstream: 'frontend',
};

// A template service that replaces $name and ${name}, as Grafana's does; scoped vars win.
const replace = jest.fn((target?: string, scopedVars?: ScopedVars) =>
  (target ?? '').replace(/\$\{?(\w+)\}?/g, (match, name: string) => {
    const scoped = scopedVars?.[name]?.value;
    if (scoped !== undefined) {
      return String(scoped);
    }
    return variables[name] ?? match;
  })
);

jest.mock('@grafana/runtime', () => ({
  ...jest.requireActual('@grafana/runtime'),
  getTemplateSrv: () => ({
    replace,
    getVariables: () => [],
  }),
}));

function makeDataSource(): DataSource {
  const settings = {
    id: 1,
    uid: 'servicemap-uid',
    type: 'livemap-servicemap-datasource',
    name: 'Live Service Map',
    access: 'proxy',
    readOnly: false,
    jsonData: {},
    meta: {} as DataSourceInstanceSettings['meta'],
  } as unknown as DataSourceInstanceSettings<ServiceMapOptions>;
  return new DataSource(settings);
}

const servicesResponse = {
  services: [
    { name: 'checkout', kind: 'service', namespace: 'shop' },
    { name: 'payments', kind: 'service', namespace: 'shop' },
    { name: 'postgres', kind: 'database', namespace: 'data' },
    { name: 'checkout', kind: 'service', namespace: 'shop-canary' },
  ],
};

describe('DataSource.applyTemplateVariables', () => {
  beforeEach(() => replace.mockClear());

  it('replaces variables in service, namespace and the edge filters', () => {
    const ds = makeDataSource();
    const query: ServiceMapQuery = {
      refId: 'A',
      queryType: 'serviceMap',
      service: '$svc',
      namespace: '${ns}',
      depthUp: 3,
      depthDown: 1,
      sources: ['traces', 'network'],
    };
    const out = ds.applyTemplateVariables(query, {});
    expect(out).toEqual({
      refId: 'A',
      queryType: 'serviceMap',
      service: 'checkout',
      namespace: 'shop',
      depthUp: 3,
      depthDown: 1,
      sources: ['traces', 'network'],
    });
    // The original query is not changed.
    expect(query.service).toBe('$svc');

    const edges = ds.applyTemplateVariables(
      { refId: 'B', queryType: 'edgeMetrics', sourceFilter: '$upstream', targetFilter: '$svc', metric: 'error_rate' },
      {}
    );
    expect(edges.sourceFilter).toBe('frontend');
    expect(edges.targetFilter).toBe('checkout');
    expect(edges.metric).toBe('error_rate');
  });

  it('uses scoped variables (repeated panels) before dashboard variables', () => {
    const ds = makeDataSource();
    const out = ds.applyTemplateVariables(
      { refId: 'A', queryType: 'impact', service: '$svc' },
      { svc: { text: 'payments', value: 'payments' } }
    );
    expect(out.service).toBe('payments');
  });

  it('leaves absent fields absent', () => {
    const ds = makeDataSource();
    const out = ds.applyTemplateVariables({ refId: 'A', queryType: 'drift' }, {});
    expect(out).toEqual({ refId: 'A', queryType: 'drift' });
    expect('service' in out).toBe(false);
    expect(replace).not.toHaveBeenCalled();
  });
});

describe('DataSource.metricFindQuery', () => {
  it('calls the services resource and maps each name to a value, without duplicates', async () => {
    const ds = makeDataSource();
    const getResource = jest.spyOn(ds, 'getResource').mockResolvedValue(servicesResponse);

    const values = await ds.metricFindQuery({ refId: 'V' });

    expect(getResource).toHaveBeenCalledTimes(1);
    expect(getResource.mock.calls[0][0]).toBe('services');
    expect(values).toEqual([{ text: 'checkout' }, { text: 'payments' }, { text: 'postgres' }]);
  });

  it('filters by namespace, with template variables in it', async () => {
    const ds = makeDataSource();
    jest.spyOn(ds, 'getResource').mockResolvedValue(servicesResponse);

    expect(await ds.metricFindQuery({ refId: 'V', namespace: '$ns' })).toEqual([
      { text: 'checkout' },
      { text: 'payments' },
    ]);
    expect(await ds.metricFindQuery({ refId: 'V', namespace: 'data' })).toEqual([{ text: 'postgres' }]);
  });

  it('returns nothing when the backend lists no services', async () => {
    const ds = makeDataSource();
    jest.spyOn(ds, 'getResource').mockResolvedValue({});
    expect(await ds.metricFindQuery('')).toEqual([]);
  });

  it('serves template variables through its variable support', async () => {
    const ds = makeDataSource();
    jest.spyOn(ds, 'getResource').mockResolvedValue(servicesResponse);
    const variableSupport = ds.variables as unknown as {
      query: (r: unknown) => import('rxjs').Observable<{ data: unknown[] }>;
    };
    const response = await lastValueFrom(
      variableSupport.query({ targets: [{ refId: 'V', namespace: 'data' }], scopedVars: {} })
    );
    expect(response.data).toEqual([{ text: 'postgres' }]);
  });
});

describe('DataSource query handling', () => {
  it('defaults new queries to a service map with depth 2 up and down', () => {
    const ds = makeDataSource();
    expect(ds.getDefaultQuery!('dashboard' as never)).toEqual({ queryType: 'serviceMap', depthUp: 2, depthDown: 2 });
  });

  it('filters out hidden queries', () => {
    const ds = makeDataSource();
    expect(ds.filterQuery({ refId: 'A', queryType: 'serviceMap', hide: true })).toBe(false);
    expect(ds.filterQuery({ refId: 'B', queryType: 'serviceMap' })).toBe(true);
  });

  it('turns annotation queries into deployAnnotations queries', () => {
    const ds = makeDataSource();
    expect(ds.annotations?.prepareAnnotation).toBeDefined();
    const prepared = prepareAnnotation({
      name: 'Deploys',
      enable: true,
      iconColor: 'blue',
      target: { refId: 'Anno', queryType: 'serviceMap', service: 'checkout' },
    });
    expect(prepared.target).toEqual({ refId: 'Anno', queryType: 'deployAnnotations', service: 'checkout' });

    const fresh = prepareAnnotation({ name: 'Deploys', enable: true, iconColor: 'blue' });
    expect(fresh.target).toEqual({ refId: 'Anno', queryType: 'deployAnnotations' });
  });
});
