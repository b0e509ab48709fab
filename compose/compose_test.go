package compose

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// testImage is what ${DROVER_IMAGE} resolves to in these tests; it marks the
// services that run drover.
const testImage = "drover:compose-test"

// overlay is one supported combination of compose files.
type overlay struct {
	name     string
	files    []string
	profiles []string
	env      []string
}

func overlays(t *testing.T) []overlay {
	secrets, err := filepath.Abs(filepath.Join("secrets", "example"))
	if err != nil {
		t.Fatal(err)
	}
	prodEnv := []string{"DROVER_SECRETS_DIR=" + secrets, "KAFKA_CLUSTER_ID=Vx3fDvJ8RlWl1mZ7YJkz8A", "MINIO_KAFKA_PASSWORD=minio-dev-kafka"}
	return []overlay{
		{name: "base", files: []string{"compose.yaml"}},
		{name: "dev", files: []string{"compose.yaml", "compose.dev.yaml"}},
		{name: "staging", files: []string{"compose.yaml", "compose.staging.yaml"}, env: []string{"DROVER_SECRETS_DIR=" + secrets, "MINIO_KAFKA_PASSWORD=minio-dev-kafka"}},
		{name: "prod", files: []string{"compose.yaml", "compose.prod.yaml"}, env: prodEnv},
		{name: "prod+mirror", files: []string{"compose.yaml", "compose.prod.yaml"}, profiles: []string{"mirror"}, env: prodEnv},
	}
}

// load resolves files with compose-go exactly as `docker compose config`
// does: schema validation on (unknown keys are errors), interpolation,
// normalization and the consistency check (every referenced network, volume,
// secret and service exists). Only the given environment is visible.
func load(t *testing.T, files, profiles, env []string) (*types.Project, error) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(wd),
		cli.WithName("drover"),
		cli.WithEnv(append([]string{"DROVER_IMAGE=" + testImage}, env...)),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
		cli.WithProfiles(profiles),
	)
	if err != nil {
		return nil, err
	}
	return cli.ProjectFromOptions(context.Background(), opts)
}

func mustLoad(t *testing.T, o overlay) *types.Project {
	t.Helper()
	p, err := load(t, o.files, o.profiles, o.env)
	if err != nil {
		t.Fatalf("%s: %v", o.name, err)
	}
	return p
}

// TestComposeLoads loads every combination, and proves the loader is strict:
// unknown keys, undefined networks or secrets and unset required variables
// are errors.
func TestComposeLoads(t *testing.T) {
	for _, o := range overlays(t) {
		t.Run(o.name, func(t *testing.T) {
			p := mustLoad(t, o)
			if len(p.Services) < 10 {
				t.Fatalf("only %d services", len(p.Services))
			}
		})
	}

	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	bad := []struct {
		name    string
		files   []string
		env     []string
		wantErr string
	}{
		{name: "unknown service key", files: []string{"compose.yaml", write("typo.yaml", "services:\n  bridge:\n    comand: [bridge]\n")}, wantErr: "comand"},
		{name: "unknown top-level key", files: []string{"compose.yaml", write("top.yaml", "servics: {}\n")}, wantErr: "servics"},
		{name: "undefined network", files: []string{"compose.yaml", write("net.yaml", "services:\n  bridge:\n    networks: [nowhere]\n")}, wantErr: "nowhere"},
		{name: "undefined secret", files: []string{"compose.yaml", write("sec.yaml", "services:\n  bridge:\n    secrets: [nothing]\n")}, wantErr: "nothing"},
		{name: "prod without secrets dir", files: []string{"compose.yaml", "compose.prod.yaml"}, env: []string{"KAFKA_CLUSTER_ID=x", "MINIO_KAFKA_PASSWORD=x"}, wantErr: "DROVER_SECRETS_DIR"},
		{name: "prod without cluster id", files: []string{"compose.yaml", "compose.prod.yaml"}, env: []string{"DROVER_SECRETS_DIR=/x", "MINIO_KAFKA_PASSWORD=x"}, wantErr: "KAFKA_CLUSTER_ID"},
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.name, func(t *testing.T) {
			_, err := load(t, tc.files, nil, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

var secretPathRe = regexp.MustCompile(`/run/secrets/[A-Za-z0-9._-]+`)

// TestComposeReferencesExist checks that every file a service mounts, every
// secret file and every env file exists on disk, and every named volume,
// network and secret used is declared.
func TestComposeReferencesExist(t *testing.T) {
	for _, o := range overlays(t) {
		t.Run(o.name, func(t *testing.T) {
			p := mustLoad(t, o)
			for name, s := range p.Services {
				for _, v := range s.Volumes {
					switch v.Type {
					case types.VolumeTypeBind:
						if _, err := os.Stat(v.Source); err != nil {
							t.Errorf("service %s: bind mount %s: %v", name, v.Source, err)
						}
					case types.VolumeTypeVolume:
						if _, ok := p.Volumes[v.Source]; !ok {
							t.Errorf("service %s: volume %q not declared", name, v.Source)
						}
					}
				}
				for _, sec := range s.Secrets {
					if _, ok := p.Secrets[sec.Source]; !ok {
						t.Errorf("service %s: secret %q not declared", name, sec.Source)
					}
				}
				for net := range s.Networks {
					if _, ok := p.Networks[net]; !ok {
						t.Errorf("service %s: network %q not declared", name, net)
					}
				}
				if len(s.Networks) == 0 {
					t.Errorf("service %s: on no network (the default network is not used)", name)
				}
				for dep, d := range s.DependsOn {
					target, ok := p.Services[dep]
					if !ok {
						t.Errorf("service %s: depends on unknown service %s", name, dep)
						continue
					}
					switch d.Condition {
					case types.ServiceConditionHealthy:
						if target.HealthCheck == nil || len(target.HealthCheck.Test) == 0 {
							t.Errorf("service %s: waits for %s to be healthy, which has no healthcheck", name, dep)
						}
					case types.ServiceConditionCompletedSuccessfully:
						if target.Restart == "always" || target.Restart == "unless-stopped" {
							t.Errorf("service %s: waits for %s to complete, which restarts forever (%s)", name, dep, target.Restart)
						}
					}
				}
				// Every /run/secrets/<file> a service's environment,
				// command or healthcheck names is mounted into it.
				var refs []string
				for _, v := range s.Environment {
					if v != nil {
						refs = append(refs, *v)
					}
				}
				refs = append(refs, s.Command...)
				refs = append(refs, s.Entrypoint...)
				if s.HealthCheck != nil {
					refs = append(refs, s.HealthCheck.Test...)
				}
				for _, r := range refs {
					for _, path := range secretPathRe.FindAllString(r, -1) {
						if mountedAt(s, path) == "" {
							t.Errorf("service %s: uses %s, which is not mounted", name, path)
						}
					}
				}
				if s.Build != nil {
					if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
						t.Errorf("service %s: build: %v", name, err)
					}
				}
			}
			for name, sec := range p.Secrets {
				if sec.File == "" {
					t.Errorf("secret %s: not a file", name)
					continue
				}
				if _, err := os.Stat(sec.File); err != nil {
					t.Errorf("secret %s: %v", name, err)
				}
			}
		})
	}
}

// TestComposeTopology checks the properties each overlay promises.
func TestComposeTopology(t *testing.T) {
	// published lists the services that publish a host port on an
	// interface other than the host's loopback.
	published := func(p *types.Project) []string {
		var out []string
		for name, s := range p.Services {
			for _, port := range s.Ports {
				if port.HostIP != "127.0.0.1" {
					out = append(out, name)
					break
				}
			}
		}
		slices.Sort(out)
		return out
	}
	brokers := func(p *types.Project) int {
		n := 0
		for _, s := range p.Services {
			if strings.HasPrefix(s.Image, "apache/kafka") && s.Command == nil {
				n++
			}
		}
		return n
	}
	env := func(p *types.Project, service, key string) string {
		s, ok := p.Services[service]
		if !ok {
			t.Fatalf("no service %s", service)
		}
		v := s.Environment[key]
		if v == nil {
			return ""
		}
		return *v
	}
	networks := func(p *types.Project, service string) []string {
		var out []string
		for n := range p.Services[service].Networks {
			out = append(out, n)
		}
		slices.Sort(out)
		return out
	}
	for _, o := range overlays(t) {
		t.Run(o.name, func(t *testing.T) {
			p := mustLoad(t, o)
			for _, s := range []string{"kafka", "schema-registry", "timescaledb", "minio", "minio-init",
				"topics-apply", "schemas-register", "sink-migrate", "bridge", "process", "sink", "media", "schedule", "prometheus", "grafana"} {
				if _, ok := p.Services[s]; !ok {
					t.Errorf("service %s missing", s)
				}
			}
			// Segmentation: the database and Kafka sit on their own networks only.
			if got := networks(p, "timescaledb"); !slices.Equal(got, []string{"database"}) {
				t.Errorf("timescaledb networks = %v, want [database]", got)
			}
			if got := networks(p, "kafka"); !slices.Equal(got, []string{"kafka"}) {
				t.Errorf("kafka networks = %v, want [kafka]", got)
			}
			// The MQTT edge: Mosquitto everywhere but prod, an EMQX cluster in prod.
			edge := []string{"mosquitto"}
			if strings.HasPrefix(o.name, "prod") {
				edge = []string{"emqx-1", "emqx-2", "emqx-3"}
				if _, ok := p.Services["mosquitto"]; ok {
					t.Errorf("%s runs mosquitto; prod's MQTT edge is the EMQX cluster", o.name)
				}
				if _, ok := p.Volumes["mosquitto-data"]; ok {
					t.Errorf("%s declares mosquitto-data, which nothing uses", o.name)
				}
			} else if got := emqxNodes(p); len(got) != 0 {
				t.Errorf("%s runs EMQX nodes %v; only prod does", o.name, got)
			}
			// Commands for sleeping devices wait in Kafka where the broker
			// announces connections (EMQX); Mosquitto announces none.
			presence := "none"
			if strings.HasPrefix(o.name, "prod") {
				presence = "events"
			}
			if got := env(p, "bridge", "DROVER_COMMAND_PRESENCE"); got != presence {
				t.Errorf("%s: bridge DROVER_COMMAND_PRESENCE = %q, want %q", o.name, got, presence)
			}
			if got := append(emqxNodes(p), func() []string {
				if _, ok := p.Services["mosquitto"]; ok {
					return []string{"mosquitto"}
				}
				return nil
			}()...); !slices.Equal(got, edge) {
				t.Errorf("%s: MQTT brokers %v, want %v", o.name, got, edge)
			}
			for _, b := range edge {
				if _, ok := p.Services[b]; !ok {
					continue
				}
				// Devices and the bridge reach the broker on ingest; EMQX's
				// metrics endpoint is scraped on orchestration.
				want := []string{"ingest"}
				if b != "mosquitto" {
					want = []string{"ingest", "orchestration"}
				}
				if got := networks(p, b); !slices.Equal(got, want) {
					t.Errorf("%s networks = %v, want %v", b, got, want)
				}
				if d, ok := p.Services["bridge"].DependsOn[b]; !ok || d.Condition != types.ServiceConditionHealthy {
					t.Errorf("bridge does not wait for %s to be healthy", b)
				}
			}
			checkConsole(t, o.name, p)
			checkRegistryService(t, o.name, p)
			switch o.name {
			case "base":
				if got := publishedAny(p); len(got) != 0 {
					t.Errorf("base publishes host ports of %v; it must publish none", got)
				}
			case "dev":
				if n := brokers(p); n != 1 {
					t.Errorf("dev has %d brokers, want 1", n)
				}
				if v := env(p, "topics-apply", "DROVER_REPLICATION_CAP"); v != "1" {
					t.Errorf("dev DROVER_REPLICATION_CAP = %q, want 1", v)
				}
				if _, ok := p.Services["simulate"]; !ok {
					t.Error("dev has no simulate service")
				}
				if v := env(p, "bridge", "DROVER_LOG_LEVEL"); v != "debug" {
					t.Errorf("dev bridge log level = %q, want debug", v)
				}
				for _, s := range []string{"mosquitto", "grafana", "kafka", "timescaledb"} {
					if len(p.Services[s].Ports) == 0 {
						t.Errorf("dev does not publish %s", s)
					}
				}
			case "staging", "prod", "prod+mirror":
				if n := brokers(p); n != 3 {
					t.Errorf("%s has %d brokers, want 3", o.name, n)
				}
				if v := env(p, "topics-apply", "DROVER_REPLICATION_CAP"); v != "0" {
					t.Errorf("%s DROVER_REPLICATION_CAP = %q, want 0 (the catalogue's replication 3)", o.name, v)
				}
				for name, s := range p.Services {
					if s.Image != testImage {
						continue
					}
					if v := s.Environment["DROVER_KAFKA_BROKERS"]; v != nil && env(p, name, "DROVER_KAFKA_TLS_CA") == "" {
						t.Errorf("%s: service %s talks to Kafka without TLS", o.name, name)
					}
				}
				if got := env(p, "bridge", "DROVER_MQTT_URL"); !strings.HasPrefix(got, "ssl://") {
					t.Errorf("%s: bridge MQTT URL %q is not TLS", o.name, got)
				}
				checkRegistryTLS(t, o.name, p)
			}
			if strings.HasPrefix(o.name, "prod") {
				if got := published(p); !slices.Equal(got, []string{"emqx-1", "emqx-2", "emqx-3", "grafana"}) {
					t.Errorf("prod publishes %v, want only [emqx-1 emqx-2 emqx-3 grafana]", got)
				}
				checkEMQXCluster(t, p)
				checkNoSecretValues(t, p)
				for name, s := range p.Services {
					if s.Deploy == nil || s.Deploy.Resources.Limits == nil || s.Deploy.Resources.Limits.MemoryBytes == 0 {
						t.Errorf("prod: service %s has no memory limit", name)
					}
					if s.Restart == "" || s.Restart == "no" {
						t.Errorf("prod: service %s has no restart policy", name)
					}
					if s.Image == testImage && s.Environment["DROVER_KAFKA_BROKERS"] != nil &&
						(env(p, name, "DROVER_KAFKA_SASL_MECHANISM") == "" || env(p, name, "DROVER_KAFKA_SASL_PASSWORD_FILE") == "") {
						t.Errorf("prod: service %s talks to Kafka without SASL", name)
					}
				}
			}
			if o.name == "prod+mirror" {
				if _, ok := p.Services["mirrormaker"]; !ok {
					t.Error("profile mirror has no mirrormaker service")
				}
			} else if _, ok := p.Services["mirrormaker"]; ok {
				t.Errorf("%s: mirrormaker runs without its profile", o.name)
			}
		})
	}
}

// publishedAny lists the services that publish any host port.
func publishedAny(p *types.Project) []string {
	var out []string
	for name, s := range p.Services {
		if len(s.Ports) > 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// checkConsole: every overlay runs the console with the operator token from
// a mounted secret file and its re-drive state on its volume; dev publishes
// it on the host's loopback; staging and prod serve HTTPS from mounted
// certificate files, on the host's loopback only (its pages are readable
// without the token).
func checkConsole(t *testing.T, overlay string, p *types.Project) {
	t.Helper()
	s, ok := p.Services["console"]
	if !ok {
		t.Errorf("%s: no console service", overlay)
		return
	}
	flag := func(name string) string {
		for _, a := range s.Command {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				return v
			}
		}
		return ""
	}
	if tok := flag("operator-token-file"); tok == "" || mountedAt(s, tok) == "" {
		t.Errorf("%s: console operator token %q is not a mounted secret file", overlay, tok)
	}
	if st := flag("redrive-state-file"); !strings.HasPrefix(st, "/state/") {
		t.Errorf("%s: console --redrive-state-file %q is not on its /state volume", overlay, st)
	}
	for _, port := range s.Ports {
		if port.HostIP != "127.0.0.1" {
			t.Errorf("%s: console publishes %s:%s beyond the host's loopback", overlay, port.HostIP, port.Published)
		}
	}
	tls := overlay != "base" && overlay != "dev"
	cert, key := flag("console-tls-cert"), flag("console-tls-key")
	switch {
	case tls && (cert == "" || key == "" || mountedAt(s, cert) == "" || mountedAt(s, key) == ""):
		t.Errorf("%s: console serves without TLS from mounted files (cert %q, key %q)", overlay, cert, key)
	case !tls && cert != "":
		t.Errorf("%s: console serves TLS with %s, which this overlay has no certificate for", overlay, cert)
	}
	if overlay == "dev" && len(s.Ports) == 0 {
		t.Error("dev does not publish the console")
	}
	if tls && len(s.Ports) != 1 {
		t.Errorf("%s: console ports %v, want the page's only (on the host's loopback)", overlay, s.Ports)
	}
}

// commandFlag returns the value of --name=V or --name V in a command.
func commandFlag(cmd []string, name string) (string, bool) {
	for i, a := range cmd {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name {
			if i+1 < len(cmd) && !strings.HasPrefix(cmd[i+1], "--") {
				return cmd[i+1], true
			}
			return "", true
		}
	}
	return "", false
}

// checkRegistryService: every overlay runs `drover registry`, its operator
// token a mounted secret file, its admin port (the provisioning API)
// published on the host's loopback in dev only; with Kafka ACLs it logs in
// as drover-registry (TestKafkaACLs checks the password); prod serves
// EMQX's HTTP authentication to the EMQX nodes (ingest) with a token.
func checkRegistryService(t *testing.T, overlay string, p *types.Project) {
	t.Helper()
	s, ok := p.Services["registry"]
	if !ok {
		t.Errorf("%s: no registry service", overlay)
		return
	}
	if len(s.Command) == 0 || s.Command[0] != "registry" {
		t.Fatalf("%s: registry runs %v, want drover registry", overlay, s.Command)
	}
	if addr, _ := commandFlag(s.Command, "admin-addr"); addr != ":9482" {
		t.Errorf("%s: registry --admin-addr %q, want :9482 (Prometheus scrapes registry:9482)", overlay, addr)
	}
	if tok, _ := commandFlag(s.Command, "api-token-file"); tok == "" || mountedAt(s, tok) == "" {
		t.Errorf("%s: registry operator token %q is not a mounted secret file", overlay, tok)
	}
	for _, port := range s.Ports {
		if overlay != "dev" || port.HostIP != "127.0.0.1" {
			t.Errorf("%s: registry publishes %s:%s; only dev may, on the host's loopback", overlay, port.HostIP, port.Published)
		}
	}
	if overlay == "dev" && len(s.Ports) == 0 {
		t.Error("dev does not publish the registry's API on 127.0.0.1")
	}
	if overlay == "base" || overlay == "dev" {
		return
	}
	if u := envOf(s, "DROVER_KAFKA_SASL_USER"); u != "drover-registry" {
		t.Errorf("%s: registry logs in to Kafka as %q, want drover-registry", overlay, u)
	}
	if !strings.HasPrefix(overlay, "prod") {
		return
	}
	if _, on := commandFlag(s.Command, "emqx"); !on {
		t.Errorf("%s: registry does not serve EMQX's HTTP authentication (--emqx)", overlay)
	}
	if tok, _ := commandFlag(s.Command, "emqx-token-file"); tok == "" || mountedAt(s, tok) == "" {
		t.Errorf("%s: registry --emqx-token-file %q is not a mounted secret file: anyone on ingest could ask it", overlay, tok)
	}
	if _, ok := s.Networks["ingest"]; !ok {
		t.Errorf("%s: registry is not on ingest, where the EMQX nodes call it", overlay)
	}
}

// commandFlags splits a drover service command into the subcommand path
// and the long flag names it sets.
func commandFlags(args []string) (path, flags []string) {
	i := 0
	for ; i < len(args) && !strings.HasPrefix(args[i], "-"); i++ {
		path = append(path, args[i])
	}
	for ; i < len(args); i++ {
		if name, ok := strings.CutPrefix(args[i], "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			flags = append(flags, name)
		}
	}
	return path, flags
}

// TestComposeDroverCommands checks every drover service against the CLI
// itself: the command is a real subcommand, every flag exists and parses
// (drover <command> <flags> --help fails on an unknown flag or a bad value),
// and every DROVER_* variable is bound to one of its flags.
func TestComposeDroverCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the drover binary")
	}
	seen := map[string]bool{}
	for _, o := range overlays(t) {
		p := mustLoad(t, o)
		for name, s := range p.Services {
			if s.Image != testImage {
				continue
			}
			t.Run(o.name+"/"+name, func(t *testing.T) {
				if len(s.Entrypoint) != 0 {
					t.Fatalf("entrypoint %v overrides /drover", s.Entrypoint)
				}
				path, flags := commandFlags(s.Command)
				if len(path) == 0 {
					t.Fatalf("command %v names no subcommand", s.Command)
				}
				h, err := help(t, path)
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range flags {
					if !h.Flags[f] {
						t.Errorf("drover %s has no flag --%s", strings.Join(path, " "), f)
					}
				}
				if key := strings.Join(s.Command, "\x00"); !seen[key] {
					seen[key] = true
					if _, err := runDrover(t, append(slices.Clone(s.Command), "--help")); err != nil {
						t.Errorf("flags do not parse: %v", err)
					}
				}
				for k := range s.Environment {
					if strings.HasPrefix(k, "DROVER_") && !h.Env[k] {
						t.Errorf("%s is not a flag of drover %s", k, strings.Join(path, " "))
					}
				}
				for _, v := range s.Volumes {
					// Only /state is prepared in the image for the nonroot user.
					if v.Type == types.VolumeTypeVolume && v.Target != "/state" {
						t.Errorf("named volume %s mounted at %s: only /state is writable by the image's user", v.Source, v.Target)
					}
				}
				if s.User != "65532:65532" {
					t.Errorf("user = %q, want the image's nonroot 65532:65532", s.User)
				}
			})
		}
	}
	for _, want := range []string{"topics apply", "schemas register", "sink migrate", "bridge", "process", "sink", "media", "schedule", "simulate"} {
		if _, ok := helpCache[want]; !ok {
			t.Errorf("no compose service runs drover %s", want)
		}
	}
}
