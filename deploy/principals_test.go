package deploy

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/drover-iot/drover/topics"
)

// superUser is the principal the topics-apply Job logs in as: the brokers'
// super user (Strimzi: authorization.superUsers), which creates every
// stage's ACLs.
const superUser = "drover-admin"

// noKafka are the workloads that do not talk to Kafka.
var noKafka = []string{"drover-schemas-register", "drover-sink-migrate"}

// TestKafkaPrincipals: in staging and prod every workload that talks to
// Kafka logs in as its own principal of topics/acls.yaml (the one whose
// used_by names it), with the password file of its own Secret
// drover-kafka-<name>; only topics-apply logs in as the super user, and it
// applies the ACLs. dev (no authorizer) has no principals.
func TestKafkaPrincipals(t *testing.T) {
	_, set, err := topics.DefaultCatalogueAndACLs()
	if err != nil {
		t.Fatal(err)
	}
	usedBy := func(user, stage string) bool {
		p, ok := set.Lookup(user)
		return ok && p.UsedByStage(stage)
	}
	for _, dir := range []string{"overlays/staging", "overlays/prod"} {
		t.Run(dir, func(t *testing.T) {
			for _, w := range workloads(render(t, dir)) {
				c := w.Pod.Containers[0]
				user, file, acls := envValue(c, "DROVER_KAFKA_SASL_USER"), envValue(c, "DROVER_KAFKA_SASL_PASSWORD_FILE"), envValue(c, "DROVER_ACLS")
				if slices.Contains(noKafka, w.Name) {
					if user != "" {
						t.Errorf("%s logs in to Kafka as %s but does not use it", w.Name, user)
					}
					continue
				}
				stage := strings.TrimPrefix(w.Name, "drover-")
				switch {
				case w.Name == "drover-topics-apply":
					if user != superUser || acls != "true" {
						t.Errorf("%s: user %q, DROVER_ACLS %q; want %s applying the ACLs", w.Name, user, acls, superUser)
					}
				case !usedBy(user, stage):
					t.Errorf("%s %s logs in as %q, not a principal of topics/acls.yaml used by %s", w.Kind, w.Name, user, stage)
				}
				if acls != "" && w.Name != "drover-topics-apply" {
					t.Errorf("%s sets DROVER_ACLS: only the super user applies ACLs", w.Name)
				}
				secret := secretBehind(w, c, file)
				if want := "drover-kafka-" + strings.TrimPrefix(user, "drover-"); secret != want {
					t.Errorf("%s: password file %q comes from Secret %q, want %q", w.Name, file, secret, want)
				}
			}
		})
	}
	for _, w := range workloads(render(t, "overlays/dev")) {
		if u := envValue(w.Pod.Containers[0], "DROVER_KAFKA_SASL_USER"); u != "" {
			t.Errorf("dev: %s logs in as %s; dev's Kafka has no SASL", w.Name, u)
		}
	}
}

// TestDatabaseTLS: in staging and prod the sink and its migration reach the
// database as drover_sink with sslmode=verify-full, the CA mounted, the
// password from a mounted pgpass file and no password in the URL.
func TestDatabaseTLS(t *testing.T) {
	for _, dir := range []string{"overlays/staging", "overlays/prod"} {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			cms := configMaps(objs)
			n := 0
			for _, w := range workloads(objs) {
				c := w.Pod.Containers[0]
				for _, e := range c.Env {
					if e.Name != "DROVER_DATABASE_URL" {
						continue
					}
					n++
					if e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil || e.ValueFrom.SecretKeyRef != nil {
						t.Fatalf("%s: DROVER_DATABASE_URL does not come from a ConfigMap alone", w.Name)
					}
					ref := e.ValueFrom.ConfigMapKeyRef
					cm, ok := findConfigMap(cms, ref.Name)
					if !ok {
						t.Fatalf("%s: no ConfigMap %s", w.Name, ref.Name)
					}
					u, err := url.Parse(cm.Data[ref.Key])
					if err != nil {
						t.Fatal(err)
					}
					q := u.Query()
					if _, hasPass := u.User.Password(); hasPass || u.User.Username() != "drover_sink" {
						t.Errorf("%s: database URL user %q (password in URL: %t), want drover_sink and no password", w.Name, u.User.Username(), hasPass)
					}
					if q.Get("sslmode") != "verify-full" || secretBehind(w, c, q.Get("sslrootcert")) == "" {
						t.Errorf("%s: %s: want sslmode=verify-full and sslrootcert on a mounted Secret", w.Name, u)
					}
					if secretBehind(w, c, envValue(c, "PGPASSFILE")) != "drover-database" {
						t.Errorf("%s: PGPASSFILE %q is not the mounted pgpass of Secret drover-database", w.Name, envValue(c, "PGPASSFILE"))
					}
				}
			}
			if n != 2 {
				t.Errorf("%d workloads use the database, want 2 (sink, sink-migrate)", n)
			}
		})
	}
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// secretBehind returns the Secret whose item is mounted at path in c, or "".
func secretBehind(w workload, c corev1.Container, path string) string {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range w.Pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					return v.Secret.SecretName
				}
			}
		}
	}
	return ""
}
