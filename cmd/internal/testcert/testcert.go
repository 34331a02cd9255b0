// Package testcert writes TLS certificates for tests: a self-signed
// certificate for 127.0.0.1 and localhost that is its own authority, so a
// client that trusts the certificate file can verify a server using it;
// and an authority (CA) that signs certificates for both ends of mutual
// TLS.
package testcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Write writes cert.pem and key.pem into dir (replacing them if present)
// for a new self-signed certificate with the given serial number, valid
// for a day, and returns the two paths.
func Write(dir string, serial int64) (certFile, keyFile string, err error) {
	return WriteValid(dir, serial, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
}

// WriteValid is Write with a certificate valid from notBefore to notAfter.
func WriteValid(dir string, serial int64, notBefore, notAfter time.Time) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := template(serial, "checkin test", x509.ExtKeyUsageServerAuth)
	tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	tmpl.IsCA = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	return write(dir, "cert.pem", "key.pem", der, key)
}

// CA is a certificate authority for tests.
type CA struct {
	File string // its certificate, PEM
	cert *x509.Certificate
	key  crypto.Signer
}

// NewCA writes the certificate of a new authority to dir/name.pem.
func NewCA(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := template(1, name, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	tmpl.IsCA = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return &CA{File: file, cert: cert, key: key}, nil
}

// Issue writes name.pem and name-key.pem into dir for a new certificate
// signed by ca, good for both ends of a connection (server and client), and
// returns the two paths.
func (ca *CA) Issue(dir, name string, serial int64) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := template(serial, name, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return "", "", err
	}
	return write(dir, name+".pem", name+"-key.pem", der, key)
}

// template is a certificate for 127.0.0.1 and localhost, valid for a day.
func template(serial int64, name string, usage ...x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
}

func write(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) (certFile, keyFile string, err error) {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, certName), filepath.Join(dir, keyName)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
