package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestCAIssue(t *testing.T) {
	now := time.Now()
	caPEM, keyPEM, err := NewCA("farm1", now)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA("farm1", caPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || ca.Cert.Subject.Organization[0] != "farm1" || !ca.Cert.MaxPathLenZero {
		t.Fatalf("CA %+v", ca.Cert.Subject)
	}
	tn := &Tenant{ID: "farm1", CACertPEM: string(caPEM)}
	if err := validateTenant(tn); err != nil {
		t.Fatal(err)
	}

	// A CSR: only its public key is used; its subject is ignored.
	devKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "farm2/evil"}}, devKey)
	csr, err := ParseCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, fp, err := ca.Issue("cow-1", csr.PublicKey, now)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(cert.Raw) != fp || cert.Subject.CommonName != "farm1/cow-1" || cert.URIs[0].String() != "urn:drover:device:farm1/cow-1" {
		t.Fatalf("certificate CN %q URI %v fp %s", cert.Subject.CommonName, cert.URIs, fp)
	}
	if tnt, dev, err := CertIdentity(cert); err != nil || tnt != "farm1" || dev != "cow-1" {
		t.Fatalf("CertIdentity = %s, %s, %v", tnt, dev, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the certificate does not verify against its tenant CA: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("a device certificate verifies for server authentication")
	}

	otherCA, otherKey, _ := NewCA("farm2", now)
	if _, err := LoadCA("farm1", caPEM, otherKey); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("mismatched key: %v", err)
	}
	if _, err := LoadCA("farm2", otherCA, otherKey); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCSR([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")); err == nil {
		t.Fatal("garbage CSR accepted")
	}
	if _, err := ParseCSR(caPEM); err == nil {
		t.Fatal("a certificate accepted as a CSR")
	}
}
