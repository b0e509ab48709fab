package dynsec

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/drover-iot/drover/registry"
)

// Names of what the sync manages in dynsec. Clients with TextName
// DeviceTextName and roles prefixed RolePrefix belong to drover; everything
// else (the admin, the bridge, an operator's own clients) is left alone.
const (
	DeviceTextName = "drover device"
	RolePrefix     = "drover-device:"
	markerPrefix   = "drover credential "
	// MarkerPending marks a client whose password the broker does not have.
	MarkerPending = markerPrefix + "pending"
	markerCert    = markerPrefix + "certificate"
)

// RoleName returns the dynsec role of the device with key "tenant/device".
func RoleName(key string) string { return RolePrefix + key }

// Marker is the textdescription a device's client carries when the broker
// holds its current credential: the credential's id, so a rotation
// without the new secret in hand is detected ([registry.SecretHash.ID]).
func Marker(d *registry.Device) string {
	if d.Secret == nil {
		return markerCert
	}
	return markerPrefix + d.Secret.ID()
}

// ACL is one entry of a dynsec role.
type ACL struct {
	ACLType  string `json:"acltype"`
	Topic    string `json:"topic"`
	Allow    bool   `json:"allow"`
	Priority int    `json:"priority"`
}

// RoleACLs turns a registry ACL into dynsec role entries: publishClientSend
// for each publish filter; subscribePattern and publishClientReceive for
// each subscribe filter, also as a shared subscription ($share/+/filter)
// when shared is set (the bridge).
func RoleACLs(a registry.ACL, shared bool) []ACL {
	var out []ACL
	for _, f := range a.Publish {
		out = append(out, ACL{ACLType: "publishClientSend", Topic: f, Allow: true})
	}
	for _, f := range a.Subscribe {
		out = append(out, ACL{ACLType: "subscribePattern", Topic: f, Allow: true})
		if shared {
			out = append(out, ACL{ACLType: "subscribePattern", Topic: "$share/+/" + f, Allow: true})
		}
		out = append(out, ACL{ACLType: "publishClientReceive", Topic: f, Allow: true})
	}
	return out
}

// AdminACLs are the rights of the sync's own principal: the control topic
// and its responses, nothing else.
func AdminACLs() []ACL {
	t := ControlTopic + "/#"
	return []ACL{
		{ACLType: "publishClientSend", Topic: t, Allow: true},
		{ACLType: "publishClientReceive", Topic: t, Allow: true},
		{ACLType: "subscribePattern", Topic: t, Allow: true},
	}
}

// Service is a non-device principal written into a rendered configuration.
type Service struct {
	Username string
	Secret   string // plaintext, hashed when rendering
	ClientID string // "" = any client id
	Role     string
	ACLs     []ACL
}

// config is the dynamic-security.json document (mosquitto 2.0).
type config struct {
	DefaultACLAccess map[string]bool `json:"defaultACLAccess"`
	Clients          []configClient  `json:"clients"`
	Groups           []any           `json:"groups"`
	Roles            []configRole    `json:"roles"`
}

type configClient struct {
	Username        string    `json:"username"`
	ClientID        string    `json:"clientid,omitempty"`
	TextName        string    `json:"textname,omitempty"`
	TextDescription string    `json:"textdescription,omitempty"`
	Disabled        bool      `json:"disabled,omitempty"`
	Roles           []roleRef `json:"roles"`
	Password        string    `json:"password,omitempty"`
	Salt            string    `json:"salt,omitempty"`
	Iterations      int       `json:"iterations,omitempty"`
}

type roleRef struct {
	Rolename string `json:"rolename"`
}

type configRole struct {
	Rolename string `json:"rolename"`
	TextName string `json:"textname,omitempty"`
	ACLs     []ACL  `json:"acls"`
}

// RenderConfig renders a complete dynamic-security.json from the registry:
// secure defaults (no publish or subscribe without a role), the services
// (the sync's admin, the bridge) with their secrets hashed, and every device
// that is not revoked with its role and its stored secret hash, disabled
// when suspended. Mosquitto reads the file at start, which is how a broker
// gets the secrets of devices added while it was not in step (the registry
// holds only hashes, and dynsec's API takes only plaintext passwords).
func RenderConfig(devices []*registry.Device, services []Service) ([]byte, error) {
	cfg := config{
		DefaultACLAccess: map[string]bool{"publishClientSend": false, "publishClientReceive": true, "subscribe": false, "unsubscribe": true},
		Groups:           []any{},
	}
	for _, s := range services {
		h, err := registry.HashSecret(s.Secret)
		if err != nil {
			return nil, err
		}
		c := configClient{Username: s.Username, ClientID: s.ClientID, TextName: "drover service", Roles: []roleRef{{s.Role}}}
		setHash(&c, h)
		cfg.Clients = append(cfg.Clients, c)
		if !slices.ContainsFunc(cfg.Roles, func(r configRole) bool { return r.Rolename == s.Role }) {
			cfg.Roles = append(cfg.Roles, configRole{Rolename: s.Role, TextName: "drover service role", ACLs: s.ACLs})
		}
	}
	for _, d := range devices {
		if d.Status == registry.StatusRevoked {
			continue
		}
		key := d.Key()
		c := configClient{
			Username: key, ClientID: key, TextName: DeviceTextName, TextDescription: Marker(d),
			Disabled: !d.Active(), Roles: []roleRef{{RoleName(key)}},
		}
		if d.Secret != nil {
			setHash(&c, d.Secret)
		}
		cfg.Clients = append(cfg.Clients, c)
		cfg.Roles = append(cfg.Roles, configRole{Rolename: RoleName(key), ACLs: RoleACLs(registry.DeviceACL(d), false)})
	}
	return json.MarshalIndent(cfg, "", "\t")
}

func setHash(c *configClient, h *registry.SecretHash) {
	c.Password = base64.StdEncoding.EncodeToString(h.Hash)
	c.Salt = base64.StdEncoding.EncodeToString(h.Salt)
	c.Iterations = h.Iterations
}

// PluginPath returns the path of Mosquitto's dynamic security plugin
// (Debian: /usr/lib/<arch>/mosquitto_dynamic_security.so), or an error
// naming the package to install.
func PluginPath() (string, error) {
	patterns := []string{
		"/usr/lib/*/mosquitto_dynamic_security.so",
		"/usr/lib/mosquitto_dynamic_security.so",
		"/usr/lib/mosquitto/mosquitto_dynamic_security.so",
		"/usr/local/lib/mosquitto_dynamic_security.so",
		"/usr/local/lib/mosquitto/mosquitto_dynamic_security.so",
	}
	for _, p := range patterns {
		m, _ := filepath.Glob(p)
		for _, f := range m {
			if st, err := os.Stat(f); err == nil && !st.IsDir() {
				return f, nil
			}
		}
	}
	return "", fmt.Errorf("mosquitto_dynamic_security.so not found under %s (Debian: apt-get install -y mosquitto)", strings.Join(patterns, ", "))
}
