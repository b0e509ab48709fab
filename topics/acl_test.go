package topics

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestBadACLFiles: every testdata/acls/*.bad.yaml is rejected with its
// error, on one line naming the file (and the line where one applies).
func TestBadACLFiles(t *testing.T) {
	cases := []struct{ file, errMsg string }{
		{"unknown_field.bad.yaml", `unknown_field.bad.yaml:5: field wirte not found`},
		{"no_match.bad.yaml", `no_match.bad.yaml:7: principal "drover-bridge": write: "raw.sensr" matches no catalogue topic`},
		{"alter_cluster.bad.yaml", `alter_cluster.bad.yaml:5: principal "drover-ops": cluster: "Alter": want IdempotentWrite, Describe or DescribeConfigs`},
		{"duplicate_user.bad.yaml", `duplicate_user.bad.yaml:6: principals[1].user: duplicate user "drover-sink"`},
		{"missing_used_by.bad.yaml", `missing_used_by.bad.yaml:2: principal "drover-sink": used_by: missing`},
		{"missing_description.bad.yaml", `missing_description.bad.yaml:2: principal "drover-sink": description: missing`},
		{"bad_group.bad.yaml", `bad_group.bad.yaml:5: principal "drover-sink": groups: "drover sink": invalid character ' '`},
		{"bad_user.bad.yaml", `bad_user.bad.yaml:2: principals[0].user: invalid character ':'`},
		{"empty.bad.yaml", `empty.bad.yaml: principals: missing or empty`},
		{"external_no_description.bad.yaml", `external_no_description.bad.yaml:2: external_topics[0].description: missing`},
		{"list_of_lists.bad.yaml", `list_of_lists.bad.yaml:5: want a string, got a list`},
	}
	files, _ := filepath.Glob("testdata/acls/*.bad.yaml")
	var listed []string
	for _, c := range cases {
		listed = append(listed, filepath.Join("testdata", "acls", c.file))
	}
	for _, f := range files {
		if !slices.Contains(listed, f) {
			t.Errorf("%s has no expected error in TestBadACLFiles", f)
		}
	}
	cat := smallCatalogue(t)
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			_, err := LoadACLs(filepath.Join("testdata", "acls", c.file), cat)
			if err == nil {
				t.Fatalf("no error, want %q", c.errMsg)
			}
			if !strings.Contains(err.Error(), c.errMsg) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q\n  want one line containing %q", err, c.errMsg)
			}
			var ce *CatalogueError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *CatalogueError", err)
			}
		})
	}
}

// TestDefaultACLs checks the embedded file's expansion: globs become one
// literal ACL per catalogue topic, prefixed groups, no cluster power beyond
// what a stage may hold, and the expansion follows the catalogue.
func TestDefaultACLs(t *testing.T) {
	cat, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	set, err := DefaultACLs(cat)
	if err != nil {
		t.Fatal(err)
	}
	has := func(user string, rt kmsg.ACLResourceType, name string, pat kmsg.ACLResourcePatternType, op kmsg.ACLOperation) bool {
		return slices.Contains(set.ACLs(), ACL{Principal: "User:" + user, Host: "*", Resource: rt, Name: name, Pattern: pat, Operation: op, Allow: true})
	}
	lit, pre := kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed
	topic, group, cluster := kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup, kmsg.ACLResourceTypeCluster
	for _, c := range []struct {
		name string
		want bool
		got  bool
	}{
		{"bridge writes every raw topic", true, has("drover-bridge", topic, RawImage3D, lit, kmsg.ACLOperationWrite)},
		{"bridge writes no derived topic", false, has("drover-bridge", topic, Features, lit, kmsg.ACLOperationWrite)},
		{"bridge reads no raw topic", false, has("drover-bridge", topic, RawSensor, lit, kmsg.ACLOperationRead)},
		{"process creates its tables", true, has("drover-process", topic, "state-table", lit, kmsg.ACLOperationCreate)},
		{"process creates no stream", false, has("drover-process", topic, Features, lit, kmsg.ACLOperationCreate)},
		{"sink reads media metadata", true, has("drover-sink", topic, RawVideo2D, lit, kmsg.ACLOperationRead)},
		{"sink writes nothing", false, slices.ContainsFunc(set.ACLs(), func(a ACL) bool {
			return a.Principal == "User:drover-sink" && a.Operation != kmsg.ACLOperationRead
		})},
		{"media writes media metadata", true, has("drover-media", topic, RawImage2D, lit, kmsg.ACLOperationWrite)},
		{"media writes no sensor data", false, has("drover-media", topic, RawSensor, lit, kmsg.ACLOperationWrite)},
		{"mirror describes drover- groups by prefix", true, has("mirror", group, "drover-", pre, kmsg.ACLOperationDescribe)},
		{"ops sees every group (wildcard)", true, has("drover-ops", group, "*", lit, kmsg.ACLOperationDescribe)},
		{"ops reads a governance topic", true, has("drover-ops", topic, "cra.product.lifecycle", lit, kmsg.ACLOperationRead)},
		{"ops writes nothing", false, has("drover-ops", topic, RawSensor, lit, kmsg.ACLOperationWrite)},
		{"bridge idempotent on old brokers", true, has("drover-bridge", cluster, ClusterResource, lit, kmsg.ACLOperationIdempotentWrite)},
		{"registry owns _schemas", true, has("schema-registry", topic, "_schemas", lit, kmsg.ACLOperationCreate)},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %t", c.name, c.got)
		}
	}
	for _, a := range set.ACLs() {
		if a.Resource == cluster && !slices.Contains(stageClusterOps, a.Operation) {
			t.Errorf("%s: cluster operations beyond a stage's", a)
		}
		if a.Operation == kmsg.ACLOperationAll || !a.Allow || a.Host != "*" {
			t.Errorf("%s: want an ALLOW of one operation from any host", a)
		}
	}
	// A topic added to the catalogue under raw. is granted to the bridge
	// on the next apply: the glob follows the catalogue.
	more := &Catalogue{Topics: append(slices.Clone(cat.Topics), Topic{Name: "raw.audio.meta", Partitions: 1, Replication: 1, Description: "x", Format: FormatAvro})}
	set2, err := DefaultACLs(more)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(set2.ACLs()) - len(set.ACLs()); got < 3 { // bridge, sink, schedule write/read, mirror
		t.Errorf("a new raw topic added %d ACLs, want the bridge's, sink's, schedule's and mirror's", got)
	}
}

// TestACLCommand prints the expansion without Kafka.
func TestACLCommand(t *testing.T) {
	out, _, err := run(t, "acls")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"User:drover-bridge (used by bridge):",
		"  WRITE TOPIC raw.sensor (literal)",
		"  READ GROUP drover-sink (literal)",
		"  DESCRIBE GROUP drover- (prefixed)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("topics acls output lacks %q:\n%s", want, out)
		}
	}
	_, _, err = run(t, "acls", "--acls-file", "testdata/acls/no_match.bad.yaml")
	if err == nil || !strings.Contains(err.Error(), "--acls-file:") || !strings.Contains(err.Error(), "raw.sensr") {
		t.Errorf("bad ACL file: err = %v, want a usage error naming --acls-file and the pattern", err)
	}
}
