package registry

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/drover-iot/drover/identity"
)

// Certificate lifetimes.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	DeviceValidity = 2 * 365 * 24 * time.Hour
)

// DeviceURI returns the URI SAN drover puts in a device certificate:
// urn:drover:device:{tenant}/{device}.
func DeviceURI(tenant, device string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: "drover:device:" + identity.Key(tenant, device)}
}

// NewCA creates a tenant's CA: an ECDSA P-256 key and a self-signed CA
// certificate (subject O=tenant, CN "drover tenant {tenant} CA", path length
// 0: it signs device certificates only). It returns both in PEM; the key is
// PKCS #8.
func NewCA(tenant string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if err := identity.ValidTenant(tenant); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{Organization: []string{tenant}, CommonName: "drover tenant " + tenant + " CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", kder), nil
}

// NewDeviceKey generates an ECDSA P-256 key for a device (--issue-cert) and
// returns it with its PKCS #8 PEM.
func NewDeviceKey() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the device key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pemBlock("PRIVATE KEY", der), nil
}

// ParseCSR parses a PEM certificate signing request and checks its
// signature (proof that the requester holds the key). Only its public key is
// used: the subject of the certificate is drover's.
func ParseCSR(pemBytes []byte) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || (blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST") {
		return nil, errors.New("not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the CSR's signature does not verify: %w", err)
	}
	return csr, nil
}

// CA is a tenant CA able to sign device certificates.
type CA struct {
	Tenant string
	Cert   *x509.Certificate
	Key    crypto.Signer
}

// LoadCA parses a tenant CA from its certificate and key (PEM; the key
// PKCS #8, SEC 1 or PKCS #1) and checks that the key belongs to the
// certificate.
func LoadCA(tenant string, certPEM, keyPEM []byte) (*CA, error) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("CA certificate: not a PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA", cert.Subject.String())
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("the CA key does not belong to the CA certificate of tenant %s", tenant)
	}
	return &CA{Tenant: tenant, Cert: cert, Key: key}, nil
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		return nil, errors.New("not PEM")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key type %T cannot sign", k)
	}
	return s, nil
}

// Issue signs a client certificate for tenant/device over pub: subject
// CN = "tenant/device" (so brokers that take the username from the CN, like
// Mosquitto's use_identity_as_username and EMQX's peer_cert_as_username,
// get the device key), O = tenant, URI SAN [DeviceURI], client
// authentication only. It returns the certificate PEM and its fingerprint.
func (ca *CA) Issue(device string, pub crypto.PublicKey, now time.Time) (certPEM []byte, fingerprint string, err error) {
	if err := identity.Validate(ca.Tenant, device); err != nil {
		return nil, "", err
	}
	sn, err := serial()
	if err != nil {
		return nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{Organization: []string{ca.Tenant}, CommonName: identity.Key(ca.Tenant, device)},
		URIs:         []*url.URL{DeviceURI(ca.Tenant, device)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(DeviceValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, "", fmt.Errorf("signing the certificate of %s: %w", identity.Key(ca.Tenant, device), err)
	}
	return pemBlock("CERTIFICATE", der), Fingerprint(der), nil
}

// CertIdentity returns the tenant and device a drover device certificate
// names (its CN, which must agree with its O and URI SAN when present).
func CertIdentity(c *x509.Certificate) (tenant, device string, err error) {
	tenant, device, err = identity.ParseKey(c.Subject.CommonName)
	if err != nil {
		return "", "", fmt.Errorf("certificate common name: %w", err)
	}
	if len(c.Subject.Organization) > 0 && c.Subject.Organization[0] != tenant {
		return "", "", fmt.Errorf("certificate organisation %q does not match the tenant %q of its common name", c.Subject.Organization[0], tenant)
	}
	want := DeviceURI(tenant, device).String()
	for _, u := range c.URIs {
		if u.Scheme == "urn" && u.String() != want {
			return "", "", fmt.Errorf("certificate URI %q does not match its common name %q", u, c.Subject.CommonName)
		}
	}
	return tenant, device, nil
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	return n, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// CertRequest asks Store.Enrol for a client certificate: over the public
// key of CSR (PEM), or over a fresh key when NewKey is set.
type CertRequest struct {
	CSR    []byte
	NewKey bool
}

// Enrolled is a device added with a certificate: its secret (if any), the
// certificate and, when the registry generated it, the device's private key
// (both PEM; shown once, never stored).
type Enrolled struct {
	Added
	CertPEM []byte
	KeyPEM  []byte
}

// Enrol adds a device with a client certificate signed by its tenant's CA
// (the tenant's published CA certificate and caKeyPEM, its key). The
// certificate's fingerprint is enrolled with the device; the device keeps a
// secret as well unless nd.NoSecret.
func (s *Store) Enrol(ctx context.Context, nd NewDevice, caKeyPEM []byte, req CertRequest) (Enrolled, error) {
	if err := s.view.WaitReady(ctx); err != nil {
		return Enrolled{}, err
	}
	t, ok := s.view.Tenant(nd.Tenant)
	switch {
	case !ok:
		return Enrolled{}, Errorf(ErrNotFound, "tenant %s is not registered (add it with: drover tenants add %s)", nd.Tenant, nd.Tenant)
	case t.CACertPEM == "":
		return Enrolled{}, Errorf(ErrConflict, "tenant %s has no CA certificate to sign with", nd.Tenant)
	}
	ca, err := LoadCA(nd.Tenant, []byte(t.CACertPEM), caKeyPEM)
	if err != nil {
		return Enrolled{}, &FieldError{Field: "ca_key", Err: err}
	}
	var pub crypto.PublicKey
	var out Enrolled
	switch {
	case req.NewKey && req.CSR != nil:
		return Enrolled{}, fieldErr("csr", "give a CSR or ask for a new key, not both")
	case req.NewKey:
		key, keyPEM, err := NewDeviceKey()
		if err != nil {
			return Enrolled{}, err
		}
		pub, out.KeyPEM = key.Public(), keyPEM
	default:
		csr, err := ParseCSR(req.CSR)
		if err != nil {
			return Enrolled{}, &FieldError{Field: "csr", Err: err}
		}
		pub = csr.PublicKey
	}
	certPEM, fp, err := ca.Issue(nd.ID, pub, s.now())
	if err != nil {
		return Enrolled{}, err
	}
	nd.CertFingerprints = append(nd.CertFingerprints, fp)
	if out.Added, err = s.Add(ctx, nd); err != nil {
		return Enrolled{}, err
	}
	out.CertPEM = certPEM
	return out, nil
}
