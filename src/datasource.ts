import {
  AnnotationQuery,
  CustomVariableSupport,
  CoreApp,
  DataQueryRequest,
  DataQueryResponse,
  DataSourceInstanceSettings,
  LegacyMetricFindQueryOptions,
  MetricFindValue,
  ScopedVars,
} from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';
import { from, map, Observable } from 'rxjs';

import { VariableQueryEditor } from './components/VariableQueryEditor';
import {
  DEFAULT_QUERY,
  ServiceInfo,
  ServiceMapOptions,
  ServiceMapQuery,
  ServicesResponse,
  ServiceVariableQuery,
} from './types';

/** Query fields that may hold template variables. */
const TEMPLATED_FIELDS = ['service', 'namespace', 'sourceFilter', 'targetFilter', 'since'] as const;

export class DataSource extends DataSourceWithBackend<ServiceMapQuery, ServiceMapOptions> {
  constructor(instanceSettings: DataSourceInstanceSettings<ServiceMapOptions>) {
    super(instanceSettings);

    // Annotations come from the backend as a deployAnnotations query.
    this.annotations = {
      prepareAnnotation: (annotation: AnnotationQuery<ServiceMapQuery>) => prepareAnnotation(annotation),
    };

    this.variables = new ServiceVariableSupport(this);
  }

  getDefaultQuery(_app: CoreApp): Partial<ServiceMapQuery> {
    return DEFAULT_QUERY;
  }

  applyTemplateVariables(query: ServiceMapQuery, scopedVars: ScopedVars): ServiceMapQuery {
    const templateSrv = getTemplateSrv();
    const out: ServiceMapQuery = { ...query };
    for (const key of TEMPLATED_FIELDS) {
      const value = query[key];
      if (typeof value === 'string' && value !== '') {
        out[key] = templateSrv.replace(value, scopedVars);
      }
    }
    return out;
  }

  filterQuery(query: ServiceMapQuery): boolean {
    return !query.hide;
  }

  /** Services the backend knows, from the resource `GET services`. */
  async getServices(): Promise<ServiceInfo[]> {
    const response: ServicesResponse | undefined = await this.getResource('services');
    const services = response?.services;
    return Array.isArray(services) ? services.filter((s) => s && typeof s.name === 'string' && s.name !== '') : [];
  }

  /**
   * Values of a template variable: the names of the services the backend knows,
   * optionally only those of one namespace.
   */
  async metricFindQuery(
    query: ServiceVariableQuery | string | undefined,
    options?: LegacyMetricFindQueryOptions
  ): Promise<MetricFindValue[]> {
    const namespaceRaw = typeof query === 'object' && query ? query.namespace : undefined;
    const namespace = namespaceRaw ? getTemplateSrv().replace(namespaceRaw, options?.scopedVars) : '';

    const services = await this.getServices();
    const seen = new Set<string>();
    const values: MetricFindValue[] = [];
    for (const s of services) {
      if (namespace && s.namespace !== namespace) {
        continue;
      }
      if (seen.has(s.name)) {
        continue;
      }
      seen.add(s.name);
      values.push({ text: s.name });
    }
    return values;
  }
}

/** Turns whatever the annotation editor saved into a deployAnnotations query. */
export function prepareAnnotation(annotation: AnnotationQuery<ServiceMapQuery>): AnnotationQuery<ServiceMapQuery> {
  const target = annotation.target;
  return {
    ...annotation,
    target: {
      ...(target ?? {}),
      refId: target?.refId || 'Anno',
      queryType: 'deployAnnotations',
    } as ServiceMapQuery,
  };
}

/** Template variables listing services, with their own small query editor. */
export class ServiceVariableSupport extends CustomVariableSupport<DataSource, ServiceVariableQuery> {
  editor = VariableQueryEditor;

  constructor(private readonly datasource: DataSource) {
    super();
  }

  query(request: DataQueryRequest<ServiceVariableQuery>): Observable<DataQueryResponse> {
    const query = request.targets[0];
    return from(this.datasource.metricFindQuery(query, { scopedVars: request.scopedVars, range: request.range })).pipe(
      map((values) => ({ data: values }))
    );
  }
}
