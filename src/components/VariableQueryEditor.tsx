import React, { useEffect, useState } from 'react';
import { QueryEditorProps } from '@grafana/data';
import { InlineField, Input } from '@grafana/ui';

import type { DataSource } from '../datasource';
import { ServiceMapOptions, ServiceMapQuery, ServiceVariableQuery } from '../types';

type Props = QueryEditorProps<DataSource, ServiceMapQuery, ServiceMapOptions, ServiceVariableQuery>;

/** Editor of a template variable listing the services the backend knows. */
export function VariableQueryEditor({ query, onChange }: Props) {
  // Older dashboards may have saved the variable query as a plain string.
  const current: ServiceVariableQuery =
    typeof query === 'object' && query ? query : { refId: 'ServiceMapVariableQuery' };
  const [namespace, setNamespace] = useState(current.namespace ?? '');

  useEffect(() => {
    setNamespace(current.namespace ?? '');
  }, [current.namespace]);

  const commit = () => {
    const trimmed = namespace.trim();
    onChange({ ...current, refId: current.refId || 'ServiceMapVariableQuery', namespace: trimmed || undefined });
  };

  return (
    <div>
      <p>Lists the names of the services on the map.</p>
      <InlineField
        label="Namespace"
        labelWidth={20}
        tooltip="Only services of this namespace. Empty lists all services. Template variables are allowed."
      >
        <Input
          id="servicemap-variable-namespace"
          aria-label="Namespace"
          width={40}
          value={namespace}
          placeholder="all namespaces"
          onChange={(e) => setNamespace(e.currentTarget.value)}
          onBlur={commit}
        />
      </InlineField>
    </div>
  );
}
