package pgwindow

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livemap/servicemap/pkg/config"
)

// PoolConfig builds the pgx pool settings: read-only sessions, a statement
// timeout, and TLS as Grafana's PostgreSQL data source offers it. The
// password and certificates come only from secureJsonData.
func PoolConfig(s *config.Settings) (*pgxpool.Config, error) {
	u := url.URL{Scheme: "postgres", User: url.User(s.User), Host: s.Host, Path: "/" + s.Database, RawQuery: "sslmode=disable"}
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("connection settings: %w", err)
	}
	cfg.ConnConfig.Password = s.Secrets.Password
	cfg.ConnConfig.Fallbacks = nil
	tlsCfg, err := tlsConfig(s)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.TLSConfig = tlsCfg
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.Itoa(s.StatementTimeoutSeconds * 1000)
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	cfg.ConnConfig.RuntimeParams["application_name"] = "grafana-livemap-servicemap"
	cfg.MaxConns = int32(s.MaxConnections)
	return cfg, nil
}

func tlsConfig(s *config.Settings) (*tls.Config, error) {
	if s.SSLMode == "disable" {
		return nil, nil
	}
	host, _, _ := net.SplitHostPort(s.Host)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.Secrets.TLSClientCert != "" {
		pair, err := tls.X509KeyPair([]byte(s.Secrets.TLSClientCert), []byte(s.Secrets.TLSClientKey))
		if err != nil {
			return nil, fmt.Errorf("tlsClientCert/tlsClientKey: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	var roots *x509.CertPool
	if s.Secrets.TLSCACert != "" {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM([]byte(s.Secrets.TLSCACert)) {
			return nil, fmt.Errorf("tlsCACert: no PEM certificate found")
		}
	}
	switch s.SSLMode {
	case "require": // encrypted, server not verified (libpq's meaning)
		cfg.InsecureSkipVerify = true
	case "verify-ca": // chain verified, host name not
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return fmt.Errorf("server sent no certificate")
			}
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	case "verify-full":
		cfg.RootCAs = roots
		cfg.ServerName = host
	}
	return cfg, nil
}
