package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// certificate is a TLS certificate of the node. reload re-reads its files
// (the node does on SIGHUP), so a renewed certificate serves new
// connections without a restart; connections made before keep theirs.
type certificate struct {
	certFile, keyFile string
	flags             string // the flags that name the files, for errors
	cur               atomic.Pointer[tls.Certificate]
}

// loadCertificate reads a PEM certificate (chain) and its private key,
// named by the flags http.tls-cert-file and http.tls-key-file.
func loadCertificate(certFile, keyFile string) (*certificate, error) {
	return loadCertificateFor("http.tls-cert-file / http.tls-key-file", certFile, keyFile)
}

func loadCertificateFor(flags, certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile, flags: flags}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the files again; on an error the certificate in use stays.
// A certificate outside its validity (an expired one copied back by
// mistake) is an error: every handshake would fail with it.
func (c *certificate) reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", c.flags, err)
	}
	if now := time.Now(); pair.Leaf != nil && (now.Before(pair.Leaf.NotBefore) || !now.Before(pair.Leaf.NotAfter)) {
		return fmt.Errorf("%s: the certificate in %s is valid from %s to %s, not now", c.flags, c.certFile,
			pair.Leaf.NotBefore.UTC().Format(time.RFC3339), pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c.cur.Store(&pair)
	return nil
}

// expiry is when the certificate in use stops being valid (Unix seconds;
// 0 when it cannot be read).
func (c *certificate) expiry() float64 {
	if pair := c.cur.Load(); pair != nil && pair.Leaf != nil {
		return float64(pair.Leaf.NotAfter.Unix())
	}
	return 0
}

// peerTLS is mutual TLS on the cluster port: the node shows its
// certificate both to members it dials and to members that dial it, and
// accepts a member only if the cluster's authority signed that member's
// certificate. reload re-reads the three files.
type peerTLS struct {
	cert   *certificate
	caFile string
	roots  atomic.Pointer[x509.CertPool]
}

func loadPeerTLS(certFile, keyFile, caFile string) (*peerTLS, error) {
	cert, err := loadCertificateFor("cluster.tls-cert-file / cluster.tls-key-file", certFile, keyFile)
	if err != nil {
		return nil, err
	}
	p := &peerTLS{cert: cert, caFile: caFile}
	if err := p.loadCA(); err != nil {
		return nil, err
	}
	if err := p.signedByCA(); err != nil {
		return nil, err
	}
	return p, nil
}

// signedByCA checks that the authority signed this member's own
// certificate: else every other member refuses it.
func (p *peerTLS) signedByCA() error {
	if err := verifyChain(p.cert.cur.Load().Certificate, p.roots.Load()); err != nil {
		return fmt.Errorf("cluster.tls-cert-file: %s is not signed by cluster.tls-ca-file %s, so the other members would refuse it: %w", p.cert.certFile, p.caFile, err)
	}
	return nil
}

func (p *peerTLS) loadCA() error {
	pem, err := os.ReadFile(p.caFile)
	if err != nil {
		return fmt.Errorf("cluster.tls-ca-file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("cluster.tls-ca-file: %s holds no PEM certificate", p.caFile)
	}
	p.roots.Store(roots)
	return nil
}

// reload reads the certificate, key and authority again; on an error the
// ones in use stay. Both are checked before either changes.
func (p *peerTLS) reload() error {
	next := &peerTLS{cert: &certificate{certFile: p.cert.certFile, keyFile: p.cert.keyFile, flags: p.cert.flags}, caFile: p.caFile}
	if err := next.cert.reload(); err != nil {
		return err
	}
	if err := next.loadCA(); err != nil {
		return err
	}
	if err := next.signedByCA(); err != nil {
		return err
	}
	p.cert.cur.Store(next.cert.cur.Load())
	p.roots.Store(next.roots.Load())
	return nil
}

// config serves both ends of the cluster's connections: TLS 1.3 only (every
// member runs this code), a certificate required from the peer either way.
func (p *peerTLS) config() *tls.Config {
	current := func() *tls.Certificate { return p.cert.cur.Load() }
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current(), nil },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return current(), nil },
		ClientAuth:           tls.RequireAnyClientCert,
		// Members dial each other by address and one authority signs
		// every member's certificate: verifyPeer checks the chain against
		// that authority on both ends, not the names in the certificate.
		// It runs as VerifyConnection, which (unlike
		// VerifyPeerCertificate) also sees resumed sessions: a member
		// that resumes a session made before the authority was replaced
		// is checked against the one in use.
		InsecureSkipVerify: true, //nolint:gosec // verified in verifyPeer
		VerifyConnection:   p.verifyPeer,
	}
}

// verifyPeer accepts a peer whose certificate chains to the cluster's
// authority.
func (p *peerTLS) verifyPeer(cs tls.ConnectionState) error {
	return verifyCerts(cs.PeerCertificates, p.roots.Load()) // parsed by the handshake
}

// verifyChain checks that the certificate chain raw (DER, leaf first)
// chains to roots.
func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("cluster TLS: the peer's certificate: %w", err)
		}
		certs[i] = c
	}
	return verifyCerts(certs, roots)
}

// verifyCerts checks that the certificate chain certs (leaf first) chains
// to roots.
func verifyCerts(certs []*x509.Certificate, roots *x509.CertPool) error {
	if len(certs) == 0 {
		return errors.New("cluster TLS: the peer showed no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("cluster TLS: the peer's certificate (%s) is not signed by cluster.tls-ca-file: %w", certs[0].Subject, err)
	}
	return nil
}

// config is the server side: TLS 1.2 or newer, the current certificate.
func (c *certificate) config() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil },
	}
}

// Environment variables of etcd's credentials: never flags, never logged.
const (
	envEtcdUsername = "CHECKIN_CLUSTER_ETCD_USERNAME"
	envEtcdPassword = "CHECKIN_CLUSTER_ETCD_PASSWORD"
)

// etcdClientTLS is the client side of TLS to etcd: TLS 1.2 or newer, the
// server verified against caFile (empty: the system's authorities), and
// the client certificate when certFile is set (returned too, so SIGHUP
// can re-read it; new connections then show the renewed one).
func etcdClientTLS(caFile, certFile, keyFile string) (*tls.Config, *certificate, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster.etcd-tls-ca-file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("cluster.etcd-tls-ca-file: %s holds no PEM certificate", caFile)
		}
	}
	if certFile == "" {
		return tc, nil, nil
	}
	c, err := loadCertificateFor("cluster.etcd-tls-cert-file / cluster.etcd-tls-key-file", certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }
	return tc, c, nil
}
