package devstack_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
)

// TestIntegrationEmbeddedBrokerCertificates: mutual TLS on the embedded
// broker, the device identified by its certificate's fingerprint. The
// listener verifies client certificates against the tenant's CA
// (`drover tenants ca`); the registry then admits only a certificate it
// enrolled: a second certificate the same CA signed for the same device
// is refused, and so is a revoked device's, which is also disconnected.
// Checked with paho and with mosquitto_pub (an independent client).
func TestIntegrationEmbeddedBrokerCertificates(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	caPEM, caKeyPEM, err := registry.NewCA("farm1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store.AddTenant(ctx, "farm1", string(caPEM)); err != nil {
		t.Fatal(err)
	}
	enrolled, err := e.Store.Enrol(ctx, registry.NewDevice{Tenant: "farm1", ID: "cam-1", Type: "camera-trap", NoSecret: true},
		caKeyPEM, registry.CertRequest{NewKey: true})
	if err != nil {
		t.Fatal(err)
	}
	// Signed by the same CA for the same device, never enrolled.
	ca, err := registry.LoadCA("farm1", caPEM, caKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	key2, key2PEM, err := registry.NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	cert2PEM, _, err := ca.Issue("cam-1", key2.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	certs := devtest.WriteCerts(t, dir)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodCert, goodKey := write("cam-1.crt", enrolled.CertPEM), write("cam-1.key", enrolled.KeyPEM)
	badCert, badKey := write("cam-1-other.crt", cert2PEM), write("cam-1-other.key", key2PEM)

	srvCert, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	tenantCAs := x509.NewCertPool()
	tenantCAs.AppendCertsFromPEM(caPEM)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := registryBrokerOn(t, e, tls.NewListener(l, &tls.Config{
		Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: tenantCAs, MinVersion: tls.VersionTLS12}))

	serverCAPEM, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(serverCAPEM)
	dialCert := func(certFile, keyFile string) (*client, error) {
		t.Helper()
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{kp}, ServerName: "127.0.0.1"})
		if err != nil {
			return nil, err
		}
		return dialConn(t, conn, "farm1/cam-1", "", "")
	}
	host, port, _ := net.SplitHostPort(addr)
	mosquittoPub := func(certFile, keyFile, msg string) error {
		out, err := exec.Command("mosquitto_pub", "-V", "mqttv5", "-h", host, "-p", port, "--cafile", certs.CA,
			"--cert", certFile, "--key", keyFile, "-i", "farm1/cam-1", "-q", "1", "-t", "devices/farm1/cam-1/sensor", "-m", msg).CombinedOutput()
		t.Logf("mosquitto_pub %s: %v %s", filepath.Base(certFile), err, strings.TrimSpace(string(out)))
		return err
	}
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Fatal("mosquitto_pub not found: apt-get install -y mosquitto-clients (scripts/deps)")
	}

	dev, err := dialCert(goodCert, goodKey)
	if err != nil {
		t.Fatalf("enrolled certificate refused: %v", err)
	}
	if rc := pub(t, dev, "devices/farm1/cam-1/sensor", "ok"); rc >= 0x80 {
		t.Fatalf("own topic: PUBACK 0x%02x", rc)
	}
	if rc := pub(t, dev, "devices/farm2/cam-1/sensor", "forbidden"); rc != 0x87 {
		t.Fatalf("another tenant's topic: PUBACK 0x%02x, want 0x87", rc)
	}
	if _, err := dialCert(badCert, badKey); err == nil {
		t.Fatal("a certificate the registry did not enrol (same CA, same device) connected")
	}
	if err := mosquittoPub(goodCert, goodKey, "via-mosquitto_pub"); err != nil {
		t.Fatalf("mosquitto_pub with the enrolled certificate: %v", err)
	}
	if err := mosquittoPub(badCert, badKey, "refused"); err == nil {
		t.Fatal("mosquitto_pub with a certificate the registry did not enrol succeeded")
	}

	// Revoked: the connected device is disconnected within seconds, and
	// its certificate is refused after.
	if _, err := e.Store.SetStatus(ctx, "farm1", "cam-1", registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dev.down:
	case <-time.After(5 * time.Second):
		t.Fatal("revoked certificate device still connected after 5s")
	}
	if _, err := dialCert(goodCert, goodKey); err == nil {
		t.Fatal("revoked device's certificate connected")
	}
	if err := mosquittoPub(goodCert, goodKey, "after-revoke"); err == nil {
		t.Fatal("mosquitto_pub with a revoked device's certificate succeeded")
	}
}
