package deploy

import (
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/drover-iot/drover/topics"
)

// KafkaMirrorMaker2 is the part of Strimzi's kafka.strimzi.io/v1beta2
// KafkaMirrorMaker2 that the prod overlay uses, field for field as in
// Strimzi's CRD: decodeStrict rejects any field not declared here, so a
// typo fails as the API server would.
type KafkaMirrorMaker2 struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Version        string          `json:"version"`
		Replicas       int32           `json:"replicas"`
		ConnectCluster string          `json:"connectCluster"`
		Clusters       []mm2Cluster    `json:"clusters"`
		Mirrors        []mm2Mirror     `json:"mirrors"`
		Resources      mm2Requirements `json:"resources"`
	} `json:"spec"`
}

type mm2Requirements struct {
	Requests map[corev1.ResourceName]resource.Quantity `json:"requests"`
	Limits   map[corev1.ResourceName]resource.Quantity `json:"limits"`
}

type mm2Cluster struct {
	Alias            string `json:"alias"`
	BootstrapServers string `json:"bootstrapServers"`
	TLS              *struct {
		TrustedCertificates []struct {
			SecretName  string `json:"secretName"`
			Certificate string `json:"certificate"`
		} `json:"trustedCertificates"`
	} `json:"tls"`
	Authentication *struct {
		Type           string `json:"type"`
		Username       string `json:"username"`
		PasswordSecret struct {
			SecretName string `json:"secretName"`
			Password   string `json:"password"`
		} `json:"passwordSecret"`
	} `json:"authentication"`
	Config map[string]string `json:"config"`
}

type mm2Mirror struct {
	SourceCluster   string `json:"sourceCluster"`
	TargetCluster   string `json:"targetCluster"`
	TopicsPattern   string `json:"topicsPattern"`
	SourceConnector struct {
		TasksMax int32             `json:"tasksMax"`
		Config   map[string]string `json:"config"`
	} `json:"sourceConnector"`
}

func init() {
	kinds["kafka.strimzi.io/v1beta2/KafkaMirrorMaker2"] = func() any { return &KafkaMirrorMaker2{} }
}

// workloadEnv is the value of variable name in workload's first container:
// its env, else its ConfigMaps (envFrom); "" when unset.
func workloadEnv(objs []object, workload, name string) string {
	cms := configMaps(objs)
	for _, w := range workloads(objs) {
		if w.Name != workload {
			continue
		}
		c := w.Pod.Containers[0]
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef == nil {
				continue
			}
			if cm, ok := cms[ef.ConfigMapRef.Name]; ok {
				if v, ok := cm.Data[name]; ok {
					return v
				}
			}
		}
	}
	return ""
}

const identityPolicy = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"

// TestTwoClustersMirrored: in prod the bridge writes to the edge cluster and
// every other stage runs on the core cluster; two KafkaMirrorMaker2 carry,
// with the identity replication policy (the core stages consume the same
// topic names), every topic the edge writes to the core and every topic it
// reads from the core, and no topic both ways. Their clusters are the
// workloads' clusters, reached over TLS with SCRAM-SHA-512 and a password
// from a Secret.
func TestTwoClustersMirrored(t *testing.T) {
	objs := render(t, "overlays/prod")
	edge := workloadEnv(objs, "drover-bridge", "DROVER_KAFKA_BROKERS")
	core := workloadEnv(objs, "drover-process", "DROVER_KAFKA_BROKERS")
	if edge == "" || core == "" || edge == core {
		t.Fatalf("bridge on %q, process on %q: want two distinct clusters", edge, core)
	}
	for _, w := range workloads(objs) {
		if w.Name == "drover-bridge" || len(w.Pod.Containers) == 0 {
			continue
		}
		if got := workloadEnv(objs, w.Name, "DROVER_KAFKA_BROKERS"); got != core {
			t.Errorf("%s %s on %q, want the core cluster %q", w.Kind, w.Name, got, core)
		}
	}
	// direction "from->to" → the compiled topics pattern.
	mirrors := map[string]*regexp.Regexp{}
	for _, o := range objs {
		m, ok := o.Obj.(*KafkaMirrorMaker2)
		if !ok {
			continue
		}
		clusters := map[string]mm2Cluster{}
		for _, c := range m.Spec.Clusters {
			clusters[c.Alias] = c
			if c.TLS == nil || len(c.TLS.TrustedCertificates) == 0 {
				t.Errorf("%s: cluster %s without a trusted CA", m.Name, c.Alias)
			}
			if a := c.Authentication; a == nil || a.Type != "scram-sha-512" || a.PasswordSecret.SecretName == "" || a.Username == "" {
				t.Errorf("%s: cluster %s does not log in with SCRAM-SHA-512 and a password Secret", m.Name, c.Alias)
			}
		}
		if _, ok := clusters[m.Spec.ConnectCluster]; !ok {
			t.Errorf("%s: connectCluster %q is not one of its clusters", m.Name, m.Spec.ConnectCluster)
		}
		for _, mr := range m.Spec.Mirrors {
			src, dst := clusters[mr.SourceCluster], clusters[mr.TargetCluster]
			name := func(bootstrap string) string {
				switch bootstrap {
				case edge:
					return "edge"
				case core:
					return "core"
				}
				return "unknown cluster " + bootstrap
			}
			dir := name(src.BootstrapServers) + "->" + name(dst.BootstrapServers)
			if mr.TargetCluster != m.Spec.ConnectCluster {
				t.Errorf("%s: mirror %s does not run on its target cluster", m.Name, dir)
			}
			if p := mr.SourceConnector.Config["replication.policy.class"]; p != identityPolicy {
				t.Errorf("%s: mirror %s: replication.policy.class %q, want %s (the core stages consume the edge's topic names)", m.Name, dir, p, identityPolicy)
			}
			re, err := regexp.Compile("^(?:" + mr.TopicsPattern + ")$")
			if err != nil {
				t.Fatalf("%s: topicsPattern: %v", m.Name, err)
			}
			if mirrors[dir] != nil {
				t.Errorf("two mirrors %s", dir)
			}
			mirrors[dir] = re
		}
	}
	up, down := mirrors["edge->core"], mirrors["core->edge"]
	if up == nil || down == nil {
		t.Fatalf("want mirrors edge->core and core->edge, have %v", mirrors)
	}
	// What the edge writes must reach the core, what it reads must come
	// from the core; nothing goes both ways.
	cat, acls, err := topics.DefaultCatalogueAndACLs()
	if err != nil {
		t.Fatal(err)
	}
	bridgeUser, ok := acls.Lookup("drover-bridge")
	if !ok {
		t.Fatal("topics/acls.yaml declares no drover-bridge")
	}
	for _, tp := range cat.Topics {
		name := tp.Name
		u, d := up.MatchString(name), down.MatchString(name)
		if u && d {
			t.Errorf("%s is mirrored both ways (the identity policy would loop it)", name)
		}
		if slices.Contains(bridgeUser.Write, name) && !u {
			t.Errorf("the bridge writes %s on the edge; no mirror carries it to the core", name)
		}
		// The bridge's registry view reads devices.registry. A topic the
		// bridge writes and reads back (commands.status, its commands'
		// lifecycle) lives on the edge: only the bridge may write it.
		own := slices.Contains(bridgeUser.Write, name) && slices.Contains(bridgeUser.Read, name)
		if own {
			for _, other := range acls.Principals {
				for _, w := range other.Write {
					if ok, _ := path.Match(w, name); ok && other.User != bridgeUser.User {
						t.Errorf("the bridge reads back %s on the edge, but %s writes it on the core too", name, other.User)
					}
				}
			}
		}
		if (slices.Contains(bridgeUser.Read, name) || name == topics.DevicesRegistry) && !own && !d {
			t.Errorf("the bridge reads %s on the edge; no mirror carries it from the core", name)
		}
		if strings.HasPrefix(name, "raw.") && !u {
			t.Errorf("%s is not mirrored to the core", name)
		}
	}
}
