package main

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// certificate is the node's TLS certificate. reload re-reads its files (the
// node does on SIGHUP), so a renewed certificate serves new connections
// without a restart; connections made before keep theirs.
type certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// loadCertificate reads a PEM certificate (chain) and its private key.
func loadCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the files again; on an error the certificate in use stays.
func (c *certificate) reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("http.tls-cert-file / http.tls-key-file: %w", err)
	}
	c.cur.Store(&pair)
	return nil
}

// config is the server side: TLS 1.2 or newer, the current certificate.
func (c *certificate) config() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil },
	}
}
