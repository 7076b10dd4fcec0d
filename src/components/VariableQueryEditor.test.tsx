import React from 'react';
import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';

import type { DataSource } from '../datasource';
import { VariableQueryEditor } from './VariableQueryEditor';

describe('VariableQueryEditor', () => {
  const datasource = {} as DataSource;

  it('stores the namespace filter when the field loses focus', async () => {
    const onChange = jest.fn();
    render(
      <VariableQueryEditor datasource={datasource} query={{ refId: 'V' }} onChange={onChange} onRunQuery={jest.fn()} />
    );
    const user = userEvent.setup({ delay: null });
    await user.type(screen.getByLabelText('Namespace'), ' shop ');
    expect(onChange).not.toHaveBeenCalled();
    await user.tab();
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'V', namespace: 'shop' });
  });

  it('accepts a legacy string query and clears an empty namespace', async () => {
    const onChange = jest.fn();
    render(
      <VariableQueryEditor
        datasource={datasource}
        query={'services' as never}
        onChange={onChange}
        onRunQuery={jest.fn()}
      />
    );
    const user = userEvent.setup({ delay: null });
    await user.click(screen.getByLabelText('Namespace'));
    await user.tab();
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'ServiceMapVariableQuery', namespace: undefined });
  });
});
