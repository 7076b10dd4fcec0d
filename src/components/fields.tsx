import React, { useEffect, useState } from 'react';
import { Input, TextArea } from '@grafana/ui';

/** Rounds away binary noise (1.1 / 100 = 0.011000000000000001). */
export function tidy(n: number): number {
  return parseFloat(n.toPrecision(12));
}

interface NumberInputProps {
  id: string;
  value?: number;
  /** The shown number is value * scale (100 shows a fraction as percent). */
  scale?: number;
  min?: number;
  max?: number;
  step?: number;
  placeholder?: string;
  width?: number;
  integer?: boolean;
  onChange: (value: number | undefined) => void;
}

/** A number field; empty stores undefined so the backend's default applies. */
export function NumberInput({
  id,
  value,
  scale = 1,
  min,
  max,
  step,
  placeholder,
  width = 16,
  integer,
  onChange,
}: NumberInputProps) {
  const shown = value === undefined || value === null ? '' : tidy(value * scale);
  return (
    <Input
      id={id}
      type="number"
      width={width}
      min={min}
      max={max}
      step={step ?? (integer ? 1 : 'any')}
      placeholder={placeholder}
      value={shown}
      onChange={(e) => {
        const text = e.currentTarget.value;
        if (text.trim() === '') {
          onChange(undefined);
          return;
        }
        let n = Number(text);
        if (!Number.isFinite(n)) {
          return;
        }
        if (integer) {
          n = Math.round(n);
        }
        onChange(tidy(n / scale));
      }}
    />
  );
}

/** Splits "a, b\nc" into ["a", "b", "c"]. */
export function splitList(text: string): string[] {
  return text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

interface ListInputProps {
  id: string;
  value?: string[];
  placeholder?: string;
  width?: number;
  /** Many lines in a text area instead of one input. */
  multiline?: boolean;
  onChange: (value: string[] | undefined) => void;
}

/** A comma (or line) separated list edited as text and stored as an array when the field loses focus. */
export function ListInput({ id, value, placeholder, width = 40, multiline, onChange }: ListInputProps) {
  const joined = (value ?? []).join(multiline ? '\n' : ', ');
  const [text, setText] = useState(joined);
  useEffect(() => setText(joined), [joined]);

  const commit = () => {
    const list = splitList(text);
    onChange(list.length > 0 ? list : undefined);
  };

  if (multiline) {
    return (
      <TextArea
        id={id}
        rows={4}
        cols={40}
        value={text}
        placeholder={placeholder}
        onChange={(e) => setText(e.currentTarget.value)}
        onBlur={commit}
      />
    );
  }
  return (
    <Input
      id={id}
      width={width}
      value={text}
      placeholder={placeholder}
      onChange={(e) => setText(e.currentTarget.value)}
      onBlur={commit}
    />
  );
}
