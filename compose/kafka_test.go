package compose

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/drover-iot/drover/topics"
)

const standardAuthorizer = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

var (
	jaasUserRe  = regexp.MustCompile(`\buser_([A-Za-z0-9._-]+)="([^"]*)"`)
	jaasLoginRe = regexp.MustCompile(`\busername="([^"]*)"\s+password="([^"]*)"`)
)

// exampleSecret reads a file of secrets/example, trimmed.
func exampleSecret(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("secrets", "example", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// secretFile returns the content of the secret file behind a
// /run/secrets/<name> path of service s, trimmed.
func secretFile(t *testing.T, p *types.Project, s types.ServiceConfig, path string) string {
	t.Helper()
	b, err := os.ReadFile(secretPath(t, p, s, path))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestKafkaACLs checks the Kafka authorizer of staging and prod: every
// broker runs StandardAuthorizer with admin as the only super user and SASL
// on every listener; every Kafka client logs in as its own principal of
// topics/acls.yaml (the one whose used_by names the service) with a
// password the brokers' JAAS file knows; only topics-apply logs in as
// admin, and it applies the ACLs.
func TestKafkaACLs(t *testing.T) {
	_, set, err := topics.DefaultCatalogueAndACLs()
	if err != nil {
		t.Fatal(err)
	}
	jaas := exampleSecret(t, "kafka_server_jaas.conf")
	users := map[string]string{}
	for _, m := range jaasUserRe.FindAllStringSubmatch(jaas, -1) {
		users[m[1]] = m[2]
	}
	// The JAAS users are the declared principals and admin, nothing else.
	want := []string{"admin"}
	for _, p := range set.Principals {
		want = append(want, p.User)
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for u := range users {
			if !yield(u) {
				return
			}
		}
	}); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("kafka_server_jaas.conf users %v, want admin and the principals of topics/acls.yaml %v", got, want)
	}
	if m := jaasLoginRe.FindStringSubmatch(jaas); m == nil || m[1] != "admin" || m[2] != users["admin"] {
		t.Errorf("kafka_server_jaas.conf: the brokers must log in to each other as admin with admin's password")
	}
	if got := exampleSecret(t, "kafka_admin_password"); got != users["admin"] {
		t.Errorf("kafka_admin_password does not match user_admin of kafka_server_jaas.conf")
	}
	if !strings.Contains(exampleSecret(t, "kafka_admin.properties"), `username="admin" password="`+users["admin"]+`"`) {
		t.Errorf("kafka_admin.properties does not log in as admin with admin's password")
	}
	usedBy := func(user, service string) bool {
		p, ok := set.Lookup(user)
		return ok && p.UsedByStage(service)
	}

	for _, o := range overlays(t) {
		if o.name == "base" || o.name == "dev" {
			p := mustLoad(t, o)
			if v := envOf(p.Services["topics-apply"], "DROVER_ACLS"); v != "" {
				t.Errorf("%s: topics-apply sets DROVER_ACLS=%s; its broker has no authorizer", o.name, v)
			}
			continue
		}
		t.Run(o.name, func(t *testing.T) {
			p := mustLoad(t, o)
			checkBrokers(t, p)
			// login checks that service logs in as its own principal.
			login := func(service, user, pass string) {
				if !usedBy(user, service) {
					t.Errorf("%s logs in to Kafka as %q, not a principal of topics/acls.yaml used by %s", service, user, service)
				}
				if pw, ok := users[user]; !ok || pw != pass {
					t.Errorf("%s: the password of %q does not match kafka_server_jaas.conf", service, user)
				}
			}
			for name, s := range p.Services {
				switch {
				case s.Image == testImage && s.Environment["DROVER_KAFKA_BROKERS"] != nil:
					user := envOf(s, "DROVER_KAFKA_SASL_USER")
					pass := secretFile(t, p, s, envOf(s, "DROVER_KAFKA_SASL_PASSWORD_FILE"))
					if name == "topics-apply" {
						if user != "admin" || pass != users["admin"] || envOf(s, "DROVER_ACLS") != "true" {
							t.Errorf("topics-apply: logs in as %q with DROVER_ACLS=%q; want the super user admin applying the ACLs", user, envOf(s, "DROVER_ACLS"))
						}
						continue
					}
					login(name, user, pass)
				case name == "schema-registry":
					m := jaasLoginRe.FindStringSubmatch(secretFile(t, p, s, "/run/secrets/kafka_client_jaas.conf"))
					if m == nil || envOf(s, "SCHEMA_REGISTRY_KAFKASTORE_SECURITY_PROTOCOL") != "SASL_SSL" {
						t.Errorf("schema-registry: no SASL_SSL login in kafka_client_jaas.conf")
						continue
					}
					login(name, m[1], m[2])
				case name == "minio":
					login(name, envOf(s, "MINIO_NOTIFY_KAFKA_SASL_USERNAME_DROVER"), envOf(s, "MINIO_NOTIFY_KAFKA_SASL_PASSWORD_DROVER"))
				case name == "mirrormaker":
					props := secretFile(t, p, s, "/run/secrets/mm2.properties")
					get := func(k string) string {
						m := regexp.MustCompile(`(?m)^` + k + `=(.*)$`).FindStringSubmatch(props)
						if m == nil {
							return ""
						}
						return m[1]
					}
					login(name, get("primary_user"), get("primary_password"))
				}
			}
		})
	}
}

// checkBrokers: every broker authorizes with StandardAuthorizer, admin is
// its only super user, and every listener (the controller's too) needs
// SASL over TLS.
func checkBrokers(t *testing.T, p *types.Project) {
	t.Helper()
	n := 0
	for name, s := range p.Services {
		if !strings.HasPrefix(s.Image, "apache/kafka") || s.Command != nil {
			continue
		}
		n++
		for k, want := range map[string]string{
			"KAFKA_AUTHORIZER_CLASS_NAME":                standardAuthorizer,
			"KAFKA_SUPER_USERS":                          "User:admin",
			"KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND":       "false",
			"KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL":   "PLAIN",
			"KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL": "PLAIN",
			"KAFKA_SASL_ENABLED_MECHANISMS":              "PLAIN",
		} {
			if got := envOf(s, k); got != want {
				t.Errorf("broker %s: %s = %q, want %q", name, k, got, want)
			}
		}
		for _, kv := range strings.Split(envOf(s, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"), ",") {
			if _, proto, _ := strings.Cut(kv, ":"); proto != "SASL_SSL" {
				t.Errorf("broker %s: listener %s is not SASL_SSL", name, kv)
			}
		}
		if !strings.Contains(envOf(s, "KAFKA_OPTS"), "/run/secrets/kafka_server_jaas.conf") || mountedAt(s, "/run/secrets/kafka_server_jaas.conf") == "" {
			t.Errorf("broker %s: does not load the mounted kafka_server_jaas.conf", name)
		}
	}
	if n != 3 {
		t.Errorf("%d brokers, want 3", n)
	}
}
