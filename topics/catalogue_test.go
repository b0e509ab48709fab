package topics

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDefaultCatalogue(t *testing.T) {
	cat, err := Default()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	if got, want := len(cat.Topics), 48; got != want {
		t.Errorf("topics: got %d, want %d (11 pipeline + 29 governance-family + commands.devices + commands.status + devices.registry + 5 goka internals)", got, want)
	}
	want := map[string][2]int{ // name → partitions, replication
		RawGPS: {24, 3}, RawSensor: {24, 3}, RawImage2D: {12, 3}, RawImage3D: {12, 3},
		RawVideo2D: {12, 3}, RawVideo3D: {12, 3}, MediaEvents: {12, 3}, Features: {24, 3},
		Alerts: {12, 3}, StateLatest: {12, 3}, DLQ: {12, 3}, Commands: {12, 3}, CommandStatus: {12, 3}, DevicesRegistry: {6, 3},
		"governance.data.products": {3, 3}, "governance.access.requests": {6, 3},
		"governance.permission.events": {6, 3}, "governance.intermediation.log": {12, 3},
		"governance.transfer.notices": {6, 3}, "governance.research.projects": {3, 3},
		"governance.research.outputs": {6, 3}, "governance.dataset.catalog": {3, 3},
		"governance.data_management_plans": {3, 3}, "governance.repository.exports": {6, 3},
		"dataact.product.catalog": {3, 3}, "dataact.user.access.requests": {6, 3},
		"dataact.third_party.sharing": {6, 3}, "dataact.user.exports": {6, 3},
		"dataact.safeguards": {3, 3}, "dataact.legal_basis.checks": {6, 3},
		"security.asset.inventory": {3, 3}, "security.incident.events": {6, 3},
		"security.vulnerability.findings": {6, 3}, "security.sbom.attestations": {3, 3},
		"security.patch.events": {6, 3}, "resilience.backup.tests": {3, 3},
		"resilience.operational.risk": {3, 3}, "resilience.third_party.risk": {3, 3},
		"compliance.scope.decisions": {3, 3}, "compliance.control.assessments": {6, 3},
		"compliance.reporting.channels": {3, 3}, "compliance.legal.dossier": {3, 3},
		"cra.product.lifecycle": {3, 3},
		// goka internals: co-partitioned with raw.sensor and raw.gps.
		"features-table": {24, 3}, "alerts-table": {24, 3}, "alerts-loop": {24, 3},
		"state-table": {24, 3}, "state-loop": {24, 3},
	}
	internal := map[string]bool{"features-table": true, "alerts-table": true, "alerts-loop": true, "state-table": true, "state-loop": true}
	for name, pr := range want {
		tp, ok := cat.Lookup(name)
		if !ok {
			t.Errorf("%s: missing from the catalogue", name)
			continue
		}
		if int(tp.Partitions) != pr[0] || int(tp.Replication) != pr[1] {
			t.Errorf("%s: got %d/%d, want %d/%d", name, tp.Partitions, tp.Replication, pr[0], pr[1])
		}
	}
	for _, tp := range cat.Topics {
		if _, ok := want[tp.Name]; !ok {
			t.Errorf("%s: in the catalogue but not expected", tp.Name)
		}
		if tp.Description == "" {
			t.Errorf("%s: no description", tp.Name)
		}
		for _, k := range []string{CleanupPolicy, RetentionMs, MinInsyncReplicas} {
			if _, ok := tp.Configs[k]; !ok {
				t.Errorf("%s: configs.%s not set", tp.Name, k)
			}
		}
		wantPolicy := "delete"
		if tp.Name == StateLatest || tp.Name == DevicesRegistry || strings.HasSuffix(tp.Name, "-table") {
			wantPolicy = "compact"
		}
		if tp.Internal() != internal[tp.Name] {
			t.Errorf("%s: Internal() = %v (format %q)", tp.Name, tp.Internal(), tp.Format)
		}
		if !tp.Internal() && tp.Format != FormatAvro {
			t.Errorf("%s: format %q, want the default %q", tp.Name, tp.Format, FormatAvro)
		}
		if got := tp.Configs[CleanupPolicy]; got != wantPolicy {
			t.Errorf("%s: cleanup.policy %q, want %q", tp.Name, got, wantPolicy)
		}
		if got := tp.Configs[MinInsyncReplicas]; got != "2" {
			t.Errorf("%s: min.insync.replicas %q, want 2", tp.Name, got)
		}
	}
	for name, ms := range map[string]string{
		RawGPS: "604800000", RawVideo3D: "604800000", Features: "2592000000", Alerts: "2592000000",
		DLQ: "1209600000", Commands: "86400000", CommandStatus: "604800000", "governance.intermediation.log": "-1",
		"governance.data.products": "31536000000", "alerts-loop": "86400000", "state-loop": "604800000",
		"features-table": "-1", DevicesRegistry: "-1",
	} {
		if tp, _ := cat.Lookup(name); tp.Configs[RetentionMs] != ms {
			t.Errorf("%s: retention.ms %q, want %q", name, tp.Configs[RetentionMs], ms)
		}
	}
}

// TestNamesInCatalogue keeps names.go and catalogue.yaml in step.
func TestNamesInCatalogue(t *testing.T) {
	cat, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{RawSensor, RawGPS, RawImage2D, RawImage3D, RawVideo2D, RawVideo3D,
		MediaEvents, Features, Alerts, StateLatest, DLQ, Commands, CommandStatus, DevicesRegistry} {
		if _, ok := cat.Lookup(name); !ok {
			t.Errorf("constant %q is not in catalogue.yaml", name)
		}
	}
	for _, kind := range []string{"image2d", "image3d", "video2d", "video3d"} {
		name, ok := MediaTopic(kind)
		if _, inCat := cat.Lookup(name); !ok || !inCat {
			t.Errorf("MediaTopic(%q) = %q, %v: not in the catalogue", kind, name, ok)
		}
	}
}

// TestBadCatalogues: every testdata/*.bad.yaml must be rejected with its
// error, which names the file, the line, the entry and the field.
func TestBadCatalogues(t *testing.T) {
	cases := []struct {
		file   string
		errMsg string
	}{
		{"unknown_field.bad.yaml", `unknown_field.bad.yaml:4: topic "raw.gps": partitons: unknown field`},
		{"duplicate_name.bad.yaml", `duplicate_name.bad.yaml:6: topic "raw.gps": name: duplicate topic name (first at line 2)`},
		{"empty_name.bad.yaml", `empty_name.bad.yaml:2: name: must not be empty`},
		{"missing_name.bad.yaml", `missing_name.bad.yaml:2: topics[0].name: missing`},
		{"invalid_name.bad.yaml", `invalid_name.bad.yaml:2: topic "raw gps": name: invalid character ' '`},
		{"long_name.bad.yaml", `name: longer than 249 characters (250)`},
		{"zero_partitions.bad.yaml", `zero_partitions.bad.yaml:4: topic "raw.gps": partitions: must be ≥ 1, got 0`},
		{"string_partitions.bad.yaml", `string_partitions.bad.yaml:3: topic "raw.gps": partitions: must be an integer, got "twelve"`},
		{"missing_partitions.bad.yaml", `topic "raw.gps": partitions: missing`},
		{"zero_replication.bad.yaml", `zero_replication.bad.yaml:4: topic "raw.gps": replication: must be ≥ 1, got 0`},
		{"missing_description.bad.yaml", `topic "raw.gps": description: missing`},
		{"bad_cleanup.bad.yaml", `bad_cleanup.bad.yaml:7: topic "raw.gps": configs.cleanup.policy: must be "delete", "compact" or "compact,delete", got "remove"`},
		{"bad_retention.bad.yaml", `bad_retention.bad.yaml:7: topic "raw.gps": configs.retention.ms: must be an integer ≥ -1`},
		{"retention_below.bad.yaml", `topic "raw.gps": configs.retention.ms: must be an integer ≥ -1 (milliseconds, -1 = keep forever), got "-2"`},
		{"min_insync_above.bad.yaml", `min_insync_above.bad.yaml:7: topic "raw.gps": configs.min.insync.replicas: must be ≤ replication (2), got 3`},
		{"unknown_config.bad.yaml", `unknown_config.bad.yaml:7: topic "raw.gps": configs.retention.msx: unknown topic config (did you mean "retention.ms"?)`},
		{"configs_list.bad.yaml", `topic "raw.gps": configs: must be a mapping, got a list`},
		{"duplicate_key.bad.yaml", `duplicate_key.bad.yaml:5: topic "raw.gps": partitions: duplicate key (first at line 3)`},
		{"collision.bad.yaml", `collision.bad.yaml:6: topic "governance.data.plans": name: collides with "governance.data_plans"`},
		{"unknown_top_level.bad.yaml", `unknown_top_level.bad.yaml:1: topic: unknown field`},
		{"empty_list.bad.yaml", `topics: empty list`},
		{"empty.bad.yaml", `empty.bad.yaml: empty catalogue`},
		{"not_yaml.bad.yaml", `not_yaml.bad.yaml:`},
		{"bad_bool.bad.yaml", `topic "raw.gps": configs.unclean.leader.election.enable: must be true or false, got "maybe"`},
		{"bad_format.bad.yaml", `bad_format.bad.yaml:5: topic "features-table": format: must be "avro" or "goka", got "protobuf"`},
	}
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	var listed []string
	for _, c := range cases {
		listed = append(listed, filepath.Join("testdata", c.file))
	}
	for _, f := range files {
		if !slices.Contains(listed, f) {
			t.Errorf("%s has no expected error in TestBadCatalogues", f)
		}
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", c.file))
			if err == nil {
				t.Fatalf("no error, want %q", c.errMsg)
			}
			if !strings.Contains(err.Error(), c.errMsg) {
				t.Errorf("error %q\n  does not contain %q", err, c.errMsg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			var ce *CatalogueError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *CatalogueError", err)
			}
		})
	}
}

func TestParse(t *testing.T) {
	const head = "topics:\n  - name: t\n    partitions: 1\n    replication: 3\n    description: d\n"
	cases := []struct {
		name   string
		yaml   string
		errMsg string // "" = valid
		check  func(t *testing.T, c *Catalogue)
	}{
		{name: "minimal", yaml: head, check: func(t *testing.T, c *Catalogue) {
			if len(c.Topics) != 1 || c.Topics[0].Configs == nil {
				t.Errorf("got %+v", c.Topics)
			}
		}},
		{name: "numbers become strings", yaml: head + "    configs:\n      retention.ms: 1000\n      preallocate: true\n      min.cleanable.dirty.ratio: 0.5\n",
			check: func(t *testing.T, c *Catalogue) {
				if got := c.Topics[0].Configs; got["retention.ms"] != "1000" || got["preallocate"] != "true" || got["min.cleanable.dirty.ratio"] != "0.5" {
					t.Errorf("configs %v", got)
				}
			}},
		{name: "compact,delete in any order", yaml: head + "    configs:\n      cleanup.policy: delete,compact\n"},
		{name: "retention forever", yaml: head + "    configs:\n      retention.ms: -1\n"},
		{name: "aliases", yaml: "x: &c\n  retention.ms: 5\ntopics:\n  - name: t\n    partitions: 1\n    replication: 1\n    description: d\n    configs: *c\n",
			errMsg: "x: unknown field"},
		{name: "replication too large", yaml: "topics:\n  - name: t\n    partitions: 1\n    replication: 40000\n    description: d\n",
			errMsg: `src.yaml:4: topic "t": replication: must be ≤ 32767, got 40000`},
		{name: "partitions float", yaml: "topics:\n  - name: t\n    partitions: 1.5\n    replication: 1\n    description: d\n",
			errMsg: `partitions: must be an integer, got "1.5"`},
		{name: "null config", yaml: head + "    configs:\n      retention.ms:\n",
			errMsg: `src.yaml:7: topic "t": configs.retention.ms: must be a scalar value, got nothing (null)`},
		{name: "min.insync zero", yaml: head + "    configs:\n      min.insync.replicas: 0\n",
			errMsg: `configs.min.insync.replicas: must be an integer ≥ 1, got "0"`},
		{name: "min.insync via alias is checked per topic", yaml: "topics:\n  - name: a\n    partitions: 1\n    replication: 3\n    description: d\n    configs: &c\n      min.insync.replicas: 2\n  - name: b\n    partitions: 1\n    replication: 1\n    description: d\n    configs: *c\n",
			errMsg: `src.yaml:12: topic "b": configs.min.insync.replicas: must be ≤ replication (1), got 2`},
		{name: "topic not a mapping", yaml: "topics:\n  - raw.gps\n", errMsg: `src.yaml:2: topics[0]: must be a mapping, got a scalar`},
		{name: "format goka", yaml: head + "    format: goka\n", check: func(t *testing.T, c *Catalogue) {
			if !c.Topics[0].Internal() || len(c.SchemaTopics()) != 0 || len(c.Names()) != 1 {
				t.Errorf("format goka: %+v, schema topics %v", c.Topics[0], c.SchemaTopics())
			}
		}},
		{name: "format defaults to avro", yaml: head, check: func(t *testing.T, c *Catalogue) {
			if c.Topics[0].Format != FormatAvro || c.Topics[0].Internal() || len(c.SchemaTopics()) != 1 {
				t.Errorf("default format: %+v", c.Topics[0])
			}
		}},
		{name: "format list", yaml: head + "    format: [goka]\n", errMsg: `src.yaml:6: topic "t": format: must be a string, got a list`},
		{name: "dot name", yaml: "topics:\n  - name: ..\n    partitions: 1\n    replication: 1\n    description: d\n", errMsg: `".." is not a valid topic name`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cat, err := Parse([]byte(c.yaml), "src.yaml")
			switch {
			case c.errMsg == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.errMsg != "" && err == nil:
				t.Fatalf("no error, want %q", c.errMsg)
			case c.errMsg != "" && !strings.Contains(err.Error(), c.errMsg):
				t.Fatalf("error %q\n  does not contain %q", err, c.errMsg)
			}
			if c.check != nil {
				c.check(t, cat)
			}
		})
	}
}

func TestWithReplicationCap(t *testing.T) {
	cat, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name          string
		cap           int16
		wantRF        int16
		wantMinInsync string
	}{
		{"no cap", 0, 3, "2"},
		{"negative is no cap", -1, 3, "2"},
		{"cap above", 5, 3, "2"},
		{"cap 3", 3, 3, "2"},
		{"cap 2", 2, 2, "2"},
		{"dev stack", 1, 1, "1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			capped := cat.WithReplicationCap(c.cap)
			if len(capped.Topics) != len(cat.Topics) {
				t.Fatalf("topics: %d, want %d", len(capped.Topics), len(cat.Topics))
			}
			for _, tp := range capped.Topics {
				if tp.Replication != c.wantRF || tp.Configs[MinInsyncReplicas] != c.wantMinInsync {
					t.Fatalf("%s: replication %d min.insync %s, want %d/%s", tp.Name, tp.Replication, tp.Configs[MinInsyncReplicas], c.wantRF, c.wantMinInsync)
				}
			}
		})
	}
	// The original is untouched (the copy is deep).
	if tp, _ := cat.Lookup(RawGPS); tp.Replication != 3 || tp.Configs[MinInsyncReplicas] != "2" {
		t.Errorf("WithReplicationCap changed the original: %+v", tp)
	}
}

func TestLookupReturnsCopy(t *testing.T) {
	cat, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	tp, ok := cat.Lookup(DLQ)
	if !ok {
		t.Fatal("dlq.events not found")
	}
	tp.Configs[RetentionMs] = "1"
	if again, _ := cat.Lookup(DLQ); again.Configs[RetentionMs] == "1" {
		t.Error("Lookup returned a map shared with the catalogue")
	}
	if _, ok := cat.Lookup("no.such.topic"); ok {
		t.Error("Lookup found a topic that does not exist")
	}
	if names := cat.Names(); len(names) != len(cat.Topics) || names[0] != RawGPS {
		t.Errorf("Names: %v", names)
	}
}

func TestCatalogueErrorString(t *testing.T) {
	cases := []struct {
		name string
		err  CatalogueError
		want string
	}{
		{"full", CatalogueError{"catalogue.yaml", 14, "raw.gps", "partitions", "must be ≥ 1, got 0"}, `catalogue.yaml:14: topic "raw.gps": partitions: must be ≥ 1, got 0`},
		{"no line", CatalogueError{File: "f.yaml", Msg: "empty"}, `f.yaml: empty`},
		{"no topic", CatalogueError{File: "f.yaml", Line: 1, Field: "topic", Msg: "unknown field"}, `f.yaml:1: topic: unknown field`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.err.Error(); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an os.ErrNotExist", err)
	}
}
