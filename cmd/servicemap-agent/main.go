// Command servicemap-agent is the servicemap node agent. It runs on every
// node (a DaemonSet with hostPID), reads the TCP tables of every network
// namespace every poll interval and serves the last snapshot at
// GET /v1/snapshot (bearer token) and GET /healthz. With -access-log it
// also tails API-gateway access logs and serves per-minute aggregates at
// GET /v1/gateway; -tcp=false makes it a gateway-only sidecar. See
// docs/agent.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/livemap/servicemap/pkg/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "servicemap-agent:", err)
		os.Exit(1)
	}
}

// run parses args, starts the poller and the HTTP server and blocks until
// ctx is done. If ready is not nil, it receives the bound listen address.
func run(ctx context.Context, args []string, logOut io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("servicemap-agent", flag.ContinueOnError)
	fs.SetOutput(logOut)
	listen := fs.String("listen", ":9477", "HTTP listen address")
	interval := fs.Duration("poll-interval", 5*time.Second, "poll interval")
	procRoot := fs.String("proc-root", "/proc", "proc file system of the node (hostPID)")
	token := fs.String("token", "", "bearer token for /v1/snapshot (default $SERVICEMAP_AGENT_TOKEN)")
	tokenFile := fs.String("token-file", "", "file holding the bearer token (alternative to -token)")
	maxBytes := fs.Int("max-response-bytes", agent.DefaultMaxResponseBytes, "largest /v1/snapshot response; connections are truncated to fit")
	method := fs.String("method", "auto", "how to read TCP tables: auto (netlink, /proc fallback), netlink or proc")
	node := fs.String("node", "", "node name (default $NODE_NAME, else the host name)")
	maxPIDs := fs.Int("max-pids-per-namespace", 5, "PIDs listed per namespace")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	tcp := fs.Bool("tcp", true, "poll TCP tables (false: gateway access logs only, runs unprivileged)")
	gw := gatewayFlags(fs)
	birthsRetention := fs.Duration("births-retention", 10*time.Minute, "how long each poll's closed births are held for GET /v1/snapshot?after=")
	tlsCert := fs.String("tls-cert", "", "PEM certificate file: serve HTTPS (with -tls-key; reloaded when it changes)")
	tlsKey := fs.String("tls-key", "", "PEM private key file of -tls-cert")
	if err := fs.Parse(args); err != nil {
		return err
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: lvl}))

	tok := *token
	if tok == "" && *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("-token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		tok = os.Getenv("SERVICEMAP_AGENT_TOKEN")
	}
	if tok == "" {
		return errors.New("no token: set -token, -token-file or SERVICEMAP_AGENT_TOKEN")
	}
	m, err := agent.ParseMethod(*method)
	if err != nil {
		return err
	}
	if *interval <= 0 {
		return errors.New("-poll-interval must be positive")
	}
	if *birthsRetention <= 0 {
		return errors.New("-births-retention must be positive")
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	nodeName := *node
	if nodeName == "" {
		nodeName = os.Getenv("NODE_NAME")
	}
	if nodeName == "" {
		nodeName, _ = os.Hostname()
	}

	a := agent.New(agent.Config{
		ProcRoot: *procRoot, Node: nodeName, Method: m, PollInterval: *interval,
		MaxPIDsPerNamespace: *maxPIDs, BirthsRetention: *birthsRetention, Logger: log,
	})
	var src agent.SnapshotSource
	if *tcp {
		src = a
	} else if len(gw.paths) == 0 {
		return errors.New("-tcp=false needs at least one -access-log")
	}
	srv, err := agent.NewServer(src, tok, *maxBytes)
	if err != nil {
		return err
	}
	srv.StaleAfter = 3**interval + 10*time.Second
	gateway, err := gw.build(nodeName, *maxBytes, log)
	if err != nil {
		return err
	}
	if gateway != nil {
		srv.ServeGateway(gateway)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *tlsCert != "" {
		certs, err := agent.LoadCertFiles(*tlsCert, *tlsKey, log)
		if err != nil {
			ln.Close()
			return err
		}
		ln = tls.NewListener(ln, certs.TLSConfig())
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		// TLS handshake failures (a client with the wrong CA) go to the JSON log.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("starting", "listen", ln.Addr().String(), "node", nodeName, "procRoot", *procRoot,
		"pollInterval", interval.String(), "method", string(m), "maxResponseBytes", *maxBytes,
		"tcp", *tcp, "accessLogs", gw.paths,
		"tls", *tlsCert != "", "birthsRetention", birthsRetention.String())

	pollCtx, cancelPoll := context.WithCancel(ctx)
	pollDone := make(chan struct{}, 2)
	polls := 0
	if *tcp {
		polls++
		go func() {
			defer func() { pollDone <- struct{}{} }()
			a.Run(pollCtx)
		}()
	}
	if gateway != nil {
		polls++
		go func() {
			defer func() { pollDone <- struct{}{} }()
			gateway.Run(pollCtx)
		}()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	log.Info("shutting down")
	shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if shErr := hs.Shutdown(shCtx); shErr != nil {
		log.Warn("shutdown", "err", shErr)
	}
	cancelPoll()
	for range polls {
		<-pollDone
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
