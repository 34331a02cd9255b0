package main

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/checkin/checkin/cmd/internal/testcert"
)

// TestCertificateReloadKeepsAValidOne: a certificate file replaced by one
// outside its validity (an expired one copied back by mistake) is refused
// on reload, naming the dates, and the one in use stays; so is one not
// valid yet. One valid now is taken.
func TestCertificateReloadKeepsAValidOne(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := testcert.Write(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := loadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	first := c.cur.Load()
	for _, tc := range []struct {
		name                string
		notBefore, notAfter time.Time
	}{
		{"expired", time.Now().Add(-48 * time.Hour), time.Now().Add(-24 * time.Hour)},
		{"not valid yet", time.Now().Add(time.Hour), time.Now().Add(48 * time.Hour)},
	} {
		if _, _, err := testcert.WriteValid(dir, 2, tc.notBefore, tc.notAfter); err != nil {
			t.Fatal(err)
		}
		if err := c.reload(); err == nil || !strings.Contains(err.Error(), "not now") {
			t.Errorf("reload of a certificate %s: %v, want it refused", tc.name, err)
		}
		if c.cur.Load() != first {
			t.Errorf("the certificate in use changed to one %s", tc.name)
		}
	}
	if _, _, err := testcert.Write(dir, 3); err != nil {
		t.Fatal(err)
	}
	if err := c.reload(); err != nil || c.cur.Load() == first {
		t.Errorf("reload of a valid certificate: %v, want it taken", err)
	}
}

// TestPeerReloadRefusesAnotherAuthority: a member certificate renewed by
// an authority that cluster.tls-ca-file does not hold is refused (every
// other member would refuse it: the node would be cut off), at start and
// on reload, and the pair in use stays.
func TestPeerReloadRefusesAnotherAuthority(t *testing.T) {
	dir := t.TempDir()
	ca, certFile, keyFile, p := startPeerTLS(t, dir)
	other, err := testcert.NewCA(t.TempDir(), "other-ca")
	if err != nil {
		t.Fatal(err)
	}
	first := p.cert.cur.Load()
	if _, _, err := other.Issue(dir, "member", 3); err != nil { // the same files, another signer
		t.Fatal(err)
	}
	if err := p.reload(); err == nil || !strings.Contains(err.Error(), "not signed by cluster.tls-ca-file") {
		t.Errorf("reload of a certificate another authority signed: %v, want it refused", err)
	}
	if p.cert.cur.Load() != first {
		t.Error("the certificate in use changed to one the cluster's authority did not sign")
	}
	if _, err := loadPeerTLS(certFile, keyFile, ca.File); err == nil {
		t.Error("a node with a certificate another authority signed starts")
	}
}

// TestPeerReloadRefusesResumedSessions: once the cluster's authority is
// replaced (new files and SIGHUP), a member whose certificate the old
// authority signed is refused, also when it resumes a TLS session it
// made before: resumption must not skip the check against the authority
// in use.
func TestPeerReloadRefusesResumedSessions(t *testing.T) {
	dir, clientDir := t.TempDir(), t.TempDir()
	oldCA, _, _, p := startPeerTLS(t, dir)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", p.config())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	handshakes := make(chan error, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			err = c.(*tls.Conn).Handshake()
			if err == nil {
				_, err = c.Write([]byte{1}) // also sends the session ticket
			}
			handshakes <- err
			_ = c.Close()
		}
	}()
	// A member the old authority signed, which keeps its sessions.
	oldCertFile, oldKeyFile, err := oldCA.Issue(clientDir, "old-member", 3)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(oldCertFile, oldKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	client := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true, //nolint:gosec // the test checks the server's side
		ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	dial := func() (resumed bool) {
		c, err := tls.Dial("tcp", ln.Addr().String(), client)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Read(make([]byte, 1))
		return c.ConnectionState().DidResume
	}
	dial()
	if err := <-handshakes; err != nil {
		t.Fatalf("a member the authority signed is refused: %v", err)
	}
	// A new authority: the node's own files are renewed by it.
	newCA, err := testcert.NewCA(t.TempDir(), "cluster-ca")
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(newCA.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(oldCA.File, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := newCA.Issue(dir, "member", 4); err != nil {
		t.Fatal(err)
	}
	if err := p.reload(); err != nil {
		t.Fatal(err)
	}
	resumed := dial()
	if err := <-handshakes; err == nil {
		t.Errorf("a member the replaced authority signed is accepted after the reload (session resumed: %v)", resumed)
	}
}

// startPeerTLS makes a cluster authority in dir, issues a member
// certificate with it, and loads the cluster port's TLS from them.
func startPeerTLS(t *testing.T, dir string) (ca *testcert.CA, certFile, keyFile string, p *peerTLS) {
	t.Helper()
	ca, err := testcert.NewCA(dir, "cluster-ca")
	if err != nil {
		t.Fatal(err)
	}
	if certFile, keyFile, err = ca.Issue(dir, "member", 2); err != nil {
		t.Fatal(err)
	}
	if p, err = loadPeerTLS(certFile, keyFile, ca.File); err != nil {
		t.Fatal(err)
	}
	return ca, certFile, keyFile, p
}
