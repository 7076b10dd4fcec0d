import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { DataSource } from './datasource';
import { ServiceMapOptions, ServiceMapQuery } from './types';

// Template variables are served by DataSource.variables (ServiceVariableSupport).
export const plugin = new DataSourcePlugin<DataSource, ServiceMapQuery, ServiceMapOptions>(DataSource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
