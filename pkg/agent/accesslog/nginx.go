package accesslog

// NginxConfig is the nginx configuration this package parses, to paste into
// the http block; then `access_log PATH servicemap;` (docs/agent.md).
//
// The service is $servicemap_service: by default $proxy_host, the upstream
// block (or host:port) of proxy_pass. grpc_pass sets no $proxy_host, so a
// grpc_pass location names its service itself: `set $servicemap_service
// NAME;` (a map variable may be overridden by set).
//
// escape=json makes nginx write valid JSON for any header value; an unset
// variable is written as "". The gRPC status of a normal response comes in
// the trailers, of an immediate error in the headers: nginx never sets both,
// so the two variables are concatenated.
const NginxConfig = `map $proxy_host $servicemap_service { default $proxy_host; }
log_format servicemap escape=json '{"time":"$time_iso8601",'
    '"client":"$remote_addr","user":"$http_x_user_id",'
    '"service":"$servicemap_service","upstream":"$upstream_addr",'
    '"status":"$status","request_time":"$request_time",'
    '"content_type":"$content_type",'
    '"grpc_status":"$upstream_trailer_grpc_status$upstream_http_grpc_status",'
    '"method":"$request_method","uri":"$uri"}';`
