package registry

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/drover-iot/drover/identity"
)

// Credentials are what a client presents at CONNECT.
type Credentials struct {
	ClientID string
	Username string
	Password []byte
	// Cert is the client's leaf certificate, already verified by the TLS
	// layer against the tenants' CAs; nil without one.
	Cert *x509.Certificate
	// CertCommonName is the certificate's common name when the broker
	// passes only that (EMQX's ${cert_common_name}); ignored when Cert is
	// set. Weaker than Cert: the fingerprint cannot be checked.
	CertCommonName string
}

// Principal is who a connected client is: a device (Tenant and Device) or a
// service (Service: the bridge, tooling).
type Principal struct {
	Tenant, Device string
	Service        string
}

// IsDevice reports whether the principal is a device.
func (p Principal) IsDevice() bool { return p.Service == "" }

func (p Principal) String() string {
	if p.IsDevice() {
		return "device " + identity.Key(p.Tenant, p.Device)
	}
	return "service " + p.Service
}

// Service is a principal that is not a device, with its own secret and ACL.
type Service struct {
	// Name is its MQTT username; it must not look like a device key.
	Name   string
	Secret *SecretHash
	// ClientIDPrefix, when set, is required of its client ids.
	ClientIDPrefix string
	ACL            ACL
}

// Reasons a client is refused (DenyError.Reason), for logs and metrics.
const (
	ReasonNotReady       = "registry_not_ready"
	ReasonUnknownDevice  = "unknown_device"
	ReasonUnknownCert    = "unknown_certificate"
	ReasonBadCredentials = "bad_credentials"
	ReasonClientID       = "client_id_mismatch"
	ReasonSuspended      = "device_suspended"
	ReasonRevoked        = "device_revoked"
	ReasonTopic          = "topic_not_allowed"
)

// ErrDenied is wrapped by every *DenyError.
var ErrDenied = errors.New("denied")

// DenyError is a refusal with a machine-readable reason and a detail for
// the log (never sent to the client).
type DenyError struct {
	Reason string
	Detail string
}

func (e *DenyError) Error() string { return fmt.Sprintf("denied (%s): %s", e.Reason, e.Detail) }

// Unwrap makes errors.Is(err, ErrDenied) true.
func (e *DenyError) Unwrap() error { return ErrDenied }

func deny(reason, format string, args ...any) error {
	return &DenyError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Auth decides CONNECT, PUBLISH and SUBSCRIBE for an MQTT door from a
// registry view and a fixed set of services. A device connects with client
// id and username both "tenant/device" ([identity.Key]) and its secret as
// password, or with a client certificate the registry enrolled (username
// empty or the same key). Safe for concurrent use.
type Auth struct {
	view     *View
	services map[string]Service
}

// NewAuth returns an Auth over view with the given services.
func NewAuth(view *View, services ...Service) (*Auth, error) {
	a := &Auth{view: view, services: map[string]Service{}}
	for _, s := range services {
		if strings.Contains(s.Name, identity.Separator) || s.Name == "" {
			return nil, fmt.Errorf("service name %q: must be non-empty and without %q (device keys have one)", s.Name, identity.Separator)
		}
		if _, dup := a.services[s.Name]; dup {
			return nil, fmt.Errorf("service %q given twice", s.Name)
		}
		if s.Secret == nil {
			return nil, fmt.Errorf("service %q has no secret", s.Name)
		}
		a.services[s.Name] = s
	}
	return a, nil
}

// HasService reports whether name is one of the services.
func (a *Auth) HasService(name string) bool {
	_, ok := a.services[name]
	return ok
}

// dummy is verified against for unknown usernames, so that a refusal takes
// as long whether or not the username exists.
var dummy = sync.OnceValue(func() *SecretHash {
	h, _ := HashSecret("drover-timing-equaliser")
	return h
})

// Connect decides a CONNECT: the principal, or a *DenyError.
func (a *Auth) Connect(c Credentials) (Principal, error) {
	if !a.view.IsReady() {
		return Principal{}, deny(ReasonNotReady, "the registry view is not ready")
	}
	if s, ok := a.services[c.Username]; ok && c.Cert == nil {
		if !s.Secret.Verify(c.Password) {
			return Principal{}, deny(ReasonBadCredentials, "service %s: wrong password", s.Name)
		}
		if !strings.HasPrefix(c.ClientID, s.ClientIDPrefix) {
			return Principal{}, deny(ReasonClientID, "service %s: client id %q does not start with %q", s.Name, c.ClientID, s.ClientIDPrefix)
		}
		return Principal{Service: s.Name}, nil
	}
	d, err := a.authenticate(c)
	if err != nil {
		return Principal{}, err
	}
	if err := statusErr(d); err != nil {
		return Principal{}, err
	}
	if c.ClientID != d.Key() {
		return Principal{}, deny(ReasonClientID, "device %s connected with client id %q (want %q)", d.Key(), c.ClientID, d.Key())
	}
	return Principal{Tenant: d.Tenant, Device: d.ID}, nil
}

// authenticate finds the device the credentials prove, or refuses them.
func (a *Auth) authenticate(c Credentials) (*Device, error) {
	switch {
	case c.Cert != nil:
		fp := Fingerprint(c.Cert.Raw)
		d, ok := a.view.DeviceByCert(fp)
		if !ok {
			return nil, deny(ReasonUnknownCert, "certificate %s (subject %q) is not enrolled", fp, c.Cert.Subject.String())
		}
		if c.Username != "" && c.Username != d.Key() {
			return nil, deny(ReasonBadCredentials, "certificate of %s presented with username %q", d.Key(), c.Username)
		}
		return d, nil
	case c.CertCommonName != "" && len(c.Password) == 0:
		d, ok := a.view.DeviceByKey(c.CertCommonName)
		if !ok || len(d.CertFingerprints) == 0 {
			return nil, deny(ReasonUnknownCert, "certificate common name %q is no device enrolled with a certificate", c.CertCommonName)
		}
		if c.Username != "" && c.Username != d.Key() {
			return nil, deny(ReasonBadCredentials, "certificate of %s presented with username %q", d.Key(), c.Username)
		}
		return d, nil
	}
	tenant, id, err := identity.ParseKey(c.Username)
	var d *Device
	if err == nil {
		d, _ = a.view.Device(tenant, id)
	}
	if d == nil {
		dummy().Verify(c.Password)
		return nil, deny(ReasonUnknownDevice, "username %q is no registered device", c.Username)
	}
	if d.Secret == nil || !d.Secret.Verify(c.Password) {
		return nil, deny(ReasonBadCredentials, "device %s: wrong secret", d.Key())
	}
	return d, nil
}

func statusErr(d *Device) error {
	switch d.Status {
	case StatusActive:
		return nil
	case StatusSuspended:
		return deny(ReasonSuspended, "device %s is suspended", d.Key())
	}
	return deny(ReasonRevoked, "device %s is %s", d.Key(), d.Status)
}

// acl returns the principal's ACL: a device's from its current registry
// entry (refused when it is no longer active), a service's as configured.
func (a *Auth) acl(p Principal) (ACL, error) {
	if !p.IsDevice() {
		s, ok := a.services[p.Service]
		if !ok {
			return ACL{}, deny(ReasonUnknownDevice, "unknown service %q", p.Service)
		}
		return s.ACL, nil
	}
	d, ok := a.view.Device(p.Tenant, p.Device)
	if !ok {
		return ACL{}, deny(ReasonUnknownDevice, "device %s is no longer registered", identity.Key(p.Tenant, p.Device))
	}
	if err := statusErr(d); err != nil {
		return ACL{}, err
	}
	return DeviceACL(d), nil
}

// Publish decides a PUBLISH by p to topic.
func (a *Auth) Publish(p Principal, topic string) error {
	acl, err := a.acl(p)
	if err != nil {
		return err
	}
	if !acl.CanPublish(topic) {
		return deny(ReasonTopic, "%s may not publish to %q", p, topic)
	}
	return nil
}

// Subscribe decides a SUBSCRIBE by p to filter.
func (a *Auth) Subscribe(p Principal, filter string) error {
	acl, err := a.acl(p)
	if err != nil {
		return err
	}
	if !acl.CanSubscribe(filter) {
		return deny(ReasonTopic, "%s may not subscribe to %q", p, filter)
	}
	return nil
}
