import React, { useEffect, useMemo, useState } from 'react';
import { SelectableValue } from '@grafana/data';
import { getTemplateSrv } from '@grafana/runtime';
import { Select } from '@grafana/ui';

import type { DataSource } from '../datasource';
import { ServiceInfo } from '../types';

/** Names of the dashboard's template variables as `$name`; none when no template service is there. */
export function templateVariableNames(): string[] {
  try {
    return getTemplateSrv()
      .getVariables()
      .map((v) => `$${v.name}`);
  } catch {
    return [];
  }
}

/** Loads the services the backend knows once per data source. */
export function useServices(datasource: Pick<DataSource, 'getServices'>): {
  services: ServiceInfo[];
  loading: boolean;
} {
  const [services, setServices] = useState<ServiceInfo[]>([]);
  const [loading, setLoading] = useState(true);

  useEffect(() => {
    let cancelled = false;
    setLoading(true);
    datasource
      .getServices()
      .then((list) => {
        if (!cancelled) {
          setServices(list);
        }
      })
      .catch(() => {
        // The list only helps picking; a custom value still works without it.
        if (!cancelled) {
          setServices([]);
        }
      })
      .finally(() => {
        if (!cancelled) {
          setLoading(false);
        }
      });
    return () => {
      cancelled = true;
    };
  }, [datasource]);

  return { services, loading };
}

export function serviceOptions(services: ServiceInfo[], variables: string[]): Array<SelectableValue<string>> {
  const options: Array<SelectableValue<string>> = variables.map((v) => ({
    label: v,
    value: v,
    description: 'Template variable',
  }));
  const seen = new Set<string>(variables);
  for (const s of services) {
    if (seen.has(s.name)) {
      continue;
    }
    seen.add(s.name);
    const description = [s.kind, s.namespace].filter(Boolean).join(' in ');
    options.push({ label: s.name, value: s.name, description: description || undefined });
  }
  return options;
}

interface Props {
  inputId: string;
  value?: string;
  services: ServiceInfo[];
  loading?: boolean;
  placeholder?: string;
  width?: number;
  onChange: (value: string | undefined) => void;
}

/** A service picker filled from the backend's `services` resource; custom values and variables allowed. */
export function ServiceSelect({ inputId, value, services, loading, placeholder, width = 30, onChange }: Props) {
  const options = useMemo(() => serviceOptions(services, templateVariableNames()), [services]);
  const selected = value ? options.find((o) => o.value === value) ?? { label: value, value } : null;

  return (
    <Select<string>
      inputId={inputId}
      width={width}
      options={options}
      value={selected}
      isLoading={loading}
      isClearable
      allowCustomValue
      placeholder={placeholder ?? 'Choose or type a service'}
      onChange={(option) => onChange(option?.value ? String(option.value) : undefined)}
    />
  );
}
