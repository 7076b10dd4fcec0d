package traces

// The table shapes, exactly as docs/tables.md documents them (a test keeps
// the two the same). Tests and the demo create them from here.
const (
	CallsDDL = `CREATE TABLE calls (
    "timestamp"    timestamptz      NOT NULL,
    parent_service text,
    child_service  text             NOT NULL,
    duration_ms    double precision,
    status         text
);
CREATE INDEX calls_timestamp_idx ON calls ("timestamp");`

	SpansDDL = `CREATE TABLE spans (
    trace_id            text        NOT NULL,
    span_id             text        NOT NULL,
    parent_span_id      text,
    service_name        text        NOT NULL,
    span_name           text        NOT NULL,
    span_kind           text,
    start_time          timestamptz NOT NULL,
    duration_ns         bigint      NOT NULL,
    status_code         text,
    attributes          jsonb,
    resource_attributes jsonb
);
CREATE INDEX spans_start_time_idx ON spans (start_time);`
)
