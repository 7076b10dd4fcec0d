package traces

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// The columns of spanColumns, in order.
const (
	colTraceID = iota
	colSpanID
	colParentSpanID
	colService
	colKind
	colStart
	colDurationMs
	colStatus
	colPeerService
	colDBSystem
	colDBNamespace
	colServerAddress
	colServerPort
	colRPCSystem
	colHTTPMethod
	colMessagingSystem
	colMessagingDest
	colServiceNamespace
	colKubeNamespace
	spanColumnCount
)

var columnNames = [spanColumnCount]string{"trace_id", "span_id", "parent_span_id", "service_name", "span_kind",
	"start_time", "duration_ns", "status_code", "peer.service", "db.system", "db.namespace", "server.address",
	"server.port", "rpc.system", "http.request.method", "messaging.system", "messaging.destination.name",
	"service.namespace", "k8s.namespace.name"}

// spanDecoder turns the raw bytes of one spans row into a row without
// materialising a string per column: ids become fixed-size keys, repeated
// strings are interned, peer attributes are copied only for caller-side
// spans. Text columns arrive as their UTF-8 bytes in either wire format, and
// timestamptz and float8 in the binary format pgx asks for; any other type or
// format (a uuid trace_id, a NULL duration) goes through pgx's own scanning,
// so the values and errors are exactly what rows.Scan gives.
type spanDecoder struct {
	names   interner
	typeMap *pgtype.Map
	fields  []pgconn.FieldDescription
	str     [spanColumnCount]string // scratch for columns pgx must convert
}

func (d *spanDecoder) decode(vals [][]byte, s *row) error {
	if len(vals) != spanColumnCount || len(d.fields) != spanColumnCount {
		return fmt.Errorf("expected %d columns, got %d", spanColumnCount, len(vals))
	}
	var err error
	text := func(col int) []byte {
		if err != nil {
			return nil
		}
		if v := vals[col]; v != nil && isText(d.fields[col].DataTypeOID) {
			return v
		}
		if e := d.typeMap.Scan(d.fields[col].DataTypeOID, d.fields[col].Format, vals[col], &d.str[col]); e != nil {
			err = fmt.Errorf("column %s: %w", columnNames[col], e)
			return nil
		}
		return []byte(d.str[col])
	}
	trace, span, parent := text(colTraceID), text(colSpanID), text(colParentSpanID)
	s.key = keyOf(trace, span)
	if s.hasParent = len(parent) > 0; s.hasParent {
		s.parent = keyOf(trace, parent)
	}
	s.service = d.names.bytes(text(colService))
	s.kind = parseKindBytes(text(colKind))
	s.failed = parseFailedBytes(text(colStatus))
	if err != nil {
		return err
	}
	if s.start, err = d.timestamptz(vals, colStart); err != nil {
		return err
	}
	if s.durMs, err = d.float8(vals, colDurationMs); err != nil {
		return err
	}
	// What every span keeps is interned; the names of a peer only matter for
	// caller-side spans, which alone may end at a virtual node.
	rpc, msg, db, method := text(colRPCSystem), text(colMessagingSystem), text(colDBSystem), text(colHTTPMethod)
	s.protocol = d.protocolOfBytes(rpc, msg, db, method)
	s.namespace = d.names.bytes(text(colServiceNamespace))
	s.kubeNs = d.names.bytes(text(colKubeNamespace))
	if s.kind.callerSide() {
		s.attrs = &Attributes{PeerService: string(text(colPeerService)), DBSystem: string(db), DBNamespace: string(text(colDBNamespace)),
			ServerAddress: string(text(colServerAddress)), ServerPort: string(text(colServerPort)), RPCSystem: string(rpc),
			HTTPMethod: string(method), MessagingSystem: string(msg), MessagingDest: string(text(colMessagingDest)),
			ServiceNamespace: s.namespace}
	}
	return err
}

// isText: the types whose value is its UTF-8 bytes in both wire formats.
func isText(oid uint32) bool {
	switch oid {
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID:
		return true
	}
	return false
}

// y2k is where PostgreSQL's binary timestamps count from, in Unix microseconds.
const y2kMicros = 946_684_800 * 1_000_000

func (d *spanDecoder) timestamptz(vals [][]byte, col int) (time.Time, error) {
	f, v := d.fields[col], vals[col]
	if f.DataTypeOID == pgtype.TimestamptzOID && f.Format == pgtype.BinaryFormatCode && len(v) == 8 {
		// Same value as pgx's binary decoding (time.Unix, local zone), for the
		// years 1970 to 2262; infinities and the rest go through pgx below.
		us := int64(binary.BigEndian.Uint64(v))
		if us > -y2kMicros && us < math.MaxInt64/1000-y2kMicros {
			us += y2kMicros
			return time.Unix(us/1_000_000, us%1_000_000*1_000), nil
		}
	}
	var t time.Time
	if err := d.typeMap.Scan(f.DataTypeOID, f.Format, v, &t); err != nil {
		return t, fmt.Errorf("column %s: %w", columnNames[col], err)
	}
	return t, nil
}

func (d *spanDecoder) float8(vals [][]byte, col int) (float64, error) {
	f, v := d.fields[col], vals[col]
	if f.DataTypeOID == pgtype.Float8OID && f.Format == pgtype.BinaryFormatCode && len(v) == 8 {
		return math.Float64frombits(binary.BigEndian.Uint64(v)), nil
	}
	var x float64
	if err := d.typeMap.Scan(f.DataTypeOID, f.Format, v, &x); err != nil {
		return x, fmt.Errorf("column %s: %w", columnNames[col], err)
	}
	return x, nil
}

// parseKindBytes is ParseKind without allocating for the usual spellings.
func parseKindBytes(b []byte) Kind {
	switch string(b) {
	case "SPAN_KIND_SERVER":
		return KindServer
	case "SPAN_KIND_CLIENT":
		return KindClient
	case "SPAN_KIND_INTERNAL":
		return KindInternal
	case "SPAN_KIND_PRODUCER":
		return KindProducer
	case "SPAN_KIND_CONSUMER":
		return KindConsumer
	case "":
		return KindUnspecified
	}
	return ParseKind(string(b))
}

// parseFailedBytes is ParseFailed without allocating for the usual spellings.
func parseFailedBytes(b []byte) bool {
	switch string(b) {
	case "STATUS_CODE_UNSET", "STATUS_CODE_OK", "":
		return false
	case "STATUS_CODE_ERROR":
		return true
	}
	return ParseFailed(string(b))
}

// protocolOfBytes is protocolOf over raw attribute values, interned.
func (d *spanDecoder) protocolOfBytes(rpc, messaging, db, method []byte) string {
	switch {
	case len(rpc) > 0:
		if bytes.EqualFold(rpc, []byte("grpc")) {
			return "gRPC"
		}
		return d.names.bytes(rpc)
	case len(messaging) > 0:
		return d.names.bytes(messaging)
	case len(db) > 0:
		return d.names.bytes(db)
	case len(method) > 0:
		return "HTTP"
	}
	return ""
}
