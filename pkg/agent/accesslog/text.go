package accesslog

import (
	"bytes"
	"strconv"
	"time"
)

// NginxTextConfig is the text alternative to NginxConfig: nginx's
// "combined" format with the servicemap fields appended, for gateways
// whose log pipeline expects combined lines. Lines are positional; the
// client key is always the 12th field (Config.ClientKeyField does not
// apply). Add the map line of NginxConfig too.
const NginxTextConfig = `log_format servicemap_text '$remote_addr - $remote_user [$time_local] '
    '"$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" '
    '$request_time "$servicemap_service" "$http_x_user_id" "$content_type" '
    '"$upstream_trailer_grpc_status$upstream_http_grpc_status"';`

// Formats of Config.Format.
const (
	FormatJSON = "json"
	FormatText = "combined"
)

// ReasonFormat: a text line without the expected fields.
const ReasonFormat = "format"

// textFields is the number of fields of a NginxTextConfig line.
const textFields = 14

// parseText splits a combined-plus line into its fields: bare words,
// "quoted" and [bracketed] ones. nginx escapes '"' and control bytes in
// values as \xHH, so a quote always ends a quoted field.
func parseText(line []byte) (fields, error) {
	var tok [textFields][]byte
	n := 0
	for i := 0; i < len(line); {
		if line[i] == ' ' {
			i++
			continue
		}
		if n == textFields {
			break // extra trailing fields are ignored
		}
		var end byte = ' '
		start := i
		switch line[i] {
		case '"':
			end, start = '"', i+1
		case '[':
			end, start = ']', i+1
		}
		j := bytes.IndexByte(line[start:], end)
		if j < 0 {
			if end != ' ' {
				return fields{}, lineErr(ReasonFormat, "unterminated "+string(line[i]))
			}
			j = len(line) - start
		}
		tok[n] = line[start : start+j]
		n++
		i = start + j + 1
	}
	if n < textFields {
		return fields{}, lineErr(ReasonFormat, strconv.Itoa(n)+" fields, want "+strconv.Itoa(textFields))
	}
	t, err := time.Parse("02/Jan/2006:15:04:05 -0700", string(tok[3]))
	if err != nil {
		return fields{}, lineErr(ReasonBadTime, strconv.Quote(string(tok[3])))
	}
	return fields{
		at: t.UTC(), client: tok[0], status: tok[5], requestTime: tok[9],
		service: unescape(tok[10]), clientKey: unescape(tok[11]), contentType: tok[12],
		// nginx writes "-" for each empty variable: the two gRPC status
		// variables give "--", "0-" or "-14".
		grpcStatus: bytes.Trim(tok[13], "-"),
	}, nil
}

// unescape decodes nginx's \xHH escapes (only allocating when there are).
func unescape(b []byte) []byte {
	if bytes.IndexByte(b, '\\') < 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) && b[i+1] == 'x' {
			if v, err := strconv.ParseUint(string(b[i+2:i+4]), 16, 8); err == nil {
				out = append(out, byte(v))
				i += 3
				continue
			}
		}
		out = append(out, b[i])
	}
	return out
}
