package compose

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/drover-iot/drover/backfill/schedule"
)

// TestDockerfile checks the image's shape and that its build command is the
// Makefile's, then builds with it and runs the result.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	for _, tc := range []struct {
		name string
		re   string
	}{
		{name: "go builder", re: `(?m)^ARG GO_VERSION=1\.26$`},
		{name: "builder stage", re: `(?m)^FROM golang:\$\{GO_VERSION\} AS build$`},
		{name: "distroless nonroot final stage", re: `(?m)^FROM gcr\.io/distroless/static-debian12:nonroot$`},
		{name: "copies the binary", re: `(?m)^COPY --from=build /out/drover /drover$`},
		{name: "writable state directory", re: `(?m)^COPY --from=build --chown=65532:65532 /out/state /state$`},
		{name: "non-root user", re: `(?m)^USER 65532:65532$`},
		{name: "entrypoint", re: `(?m)^ENTRYPOINT \["/drover"\]$`},
		{name: "version label", re: `org\.opencontainers\.image\.version="\$\{VERSION\}"`},
		{name: "revision label", re: `org\.opencontainers\.image\.revision="\$\{REVISION\}"`},
		{name: "source label", re: `org\.opencontainers\.image\.source="https://github\.com/drover-iot/drover"`},
		{name: "no dev env file", re: `(?m)^ENV DROVER_DEV_ENV=""$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !regexp.MustCompile(tc.re).MatchString(df) {
				t.Errorf("Dockerfile does not match %s", tc.re)
			}
		})
	}
	if got := strings.Count(df, "\nFROM "); got != 2 {
		t.Errorf("Dockerfile has %d stages, want 2 (build, final)", got)
	}

	docker, mk := dockerfileBuild(t), makefileBuild(t)
	if docker.String() != mk.String() {
		t.Fatalf("Dockerfile and Makefile build differently:\n  Dockerfile: %s\n  Makefile:   %s", docker, mk)
	}
	if !slices.Contains(docker.Env, "CGO_ENABLED=0") || !slices.Contains(docker.Flags, "-trimpath") {
		t.Errorf("build is not static and trimmed: %s", docker)
	}
	if testing.Short() {
		return
	}
	out, err := runDrover(t, []string{"--version"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, testVersion) {
		t.Errorf("drover --version = %q, want the version %q set through the Dockerfile's -ldflags", out, testVersion)
	}
	// A static binary has no interpreter (distroless/static has no libc).
	if elf, err := exec.Command("file", droverBin(t)).Output(); err == nil && strings.Contains(string(elf), "dynamically linked") {
		t.Errorf("binary is dynamically linked: %s", elf)
	}
}

// TestJobsFile validates compose/config/jobs.yaml with drover's own parser.
func TestJobsFile(t *testing.T) {
	f, err := schedule.Load(filepath.Join("config", "jobs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Jobs) == 0 {
		t.Fatal("no jobs")
	}
}

// TestMosquittoConfigs checks that every Mosquitto config keeps QoS 1
// backlog (DESIGN.md, known pitfalls) and persists sessions.
func TestMosquittoConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("config", "mosquitto", "mosquitto*.conf"))
	if err != nil || len(files) < 2 {
		t.Fatalf("mosquitto configs: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			opts := map[string][]string{}
			for _, line := range strings.Split(string(data), "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				k, v, _ := strings.Cut(line, " ")
				opts[k] = append(opts[k], strings.TrimSpace(v))
			}
			for _, tc := range []struct{ key, want string }{
				{"max_queued_messages", "0"},
				{"max_queued_bytes", "0"},
				{"persistence", "true"},
			} {
				if got := opts[tc.key]; !slices.Equal(got, []string{tc.want}) {
					t.Errorf("%s = %v, want %s", tc.key, got, tc.want)
				}
			}
			if strings.Contains(f, "tls") {
				checkMosquittoListeners(t, string(data))
			} else if !strings.Contains(string(data), "\nlistener 8083\nprotocol websockets\n") {
				t.Error("no MQTT over WebSockets listener (listener 8083, protocol websockets)")
			}
		})
	}
}

// checkMosquittoListeners checks the staging broker's two listeners: both
// TLS, no anonymous clients; devices on 8883 through the dynamic security
// plugin (fed by the registry; TestComposeMosquittoDynsec checks the
// wiring), where a client id is the user name, so no device can present the
// bridge's client id; the bridge on 8884 with a password file of its own and
// no plugin, so no device credential is valid there
// (TestIntegrationBridgeSessionTakeoverRefused runs this file in a real
// mosquitto).
func checkMosquittoListeners(t *testing.T, conf string) {
	t.Helper()
	c := parseMosquittoConf(conf)
	if v := c.global["per_listener_settings"]; !slices.Equal(v, []string{"true"}) {
		t.Errorf("per_listener_settings %v, want true (authentication differs per listener)", v)
	}
	one := func(port, k string) string {
		if v := c.listeners[port][k]; len(v) == 1 {
			return v[0]
		}
		return ""
	}
	for port := range c.listeners {
		for _, k := range []string{"certfile", "keyfile", "cafile"} {
			if one(port, k) == "" {
				t.Errorf("listener %s: %s missing", port, k)
			}
		}
		if one(port, "allow_anonymous") != "false" {
			t.Errorf("listener %s: allow_anonymous %q, want false", port, one(port, "allow_anonymous"))
		}
	}
	devices, bridge := c.listeners["8883"], c.listeners["8884"]
	if devices == nil || bridge == nil {
		t.Fatalf("listeners %v: want 8883 (devices) and 8884 (bridge)", slices.Sorted(maps.Keys(c.listeners)))
	}
	if one("8883", "plugin") != dynsecPluginPath {
		t.Errorf("listener 8883 (devices): plugin %q, want the dynamic security plugin %s", one("8883", "plugin"), dynsecPluginPath)
	}
	if one("8883", "use_username_as_clientid") != "true" {
		t.Error("listener 8883 (devices): use_username_as_clientid must be true, or a device can take the bridge's session over")
	}
	if one("8884", "use_username_as_clientid") == "true" {
		t.Error("listener 8884 (bridge): use_username_as_clientid would give every replica the same client id")
	}
	if one("8884", "plugin") != "" {
		t.Error("listener 8884 (bridge): the dynamic security plugin would admit every device there, with any client id")
	}
	if !strings.HasSuffix(one("8884", "password_file"), "/mosquitto_bridge_passwd") || one("8884", "acl_file") == "" {
		t.Errorf("listener 8884 (bridge): password_file %q, acl_file %q, want the bridge's own mosquitto_bridge_passwd and its ACL", one("8884", "password_file"), one("8884", "acl_file"))
	}
}

// TestPrometheusConfig runs promtool on each Prometheus configuration (the
// base one, and prod's with the EMQX cluster) and its rule files, and checks
// that every drover scrape target is a compose service of that overlay
// listening there, that prod scrapes every EMQX node on the network
// Prometheus is on, and that the overlay mounts the configuration it is
// meant to run.
func TestPrometheusConfig(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: apt-get install prometheus (make test installs it: scripts/deps)")
	}
	all := overlays(t)
	for _, c := range []struct {
		file    string
		overlay overlay
		rules   []string
		emqx    bool
	}{
		{"prometheus.yml", all[0], []string{"alerts.yml"}, false},
		{"prometheus.prod.yml", all[3], []string{"alerts.yml", "emqx-alerts.yml"}, true},
	} {
		t.Run(c.file, func(t *testing.T) {
			checkPrometheusConfig(t, promtool, c.file, c.overlay, c.rules, c.emqx)
		})
	}
}

// promConfig is the part of a Prometheus configuration the tests read.
type promConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func checkPrometheusConfig(t *testing.T, promtool, file string, o overlay, rules []string, emqx bool) {
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join("config", "prometheus", file))
	if err != nil {
		t.Fatal(err)
	}
	// The container paths of the rule files become repository paths.
	local := string(cfg)
	for _, r := range rules {
		abs, err := filepath.Abs(filepath.Join("config", "prometheus", r))
		if err != nil {
			t.Fatal(err)
		}
		before := local
		local = strings.ReplaceAll(local, "/etc/prometheus/"+r, abs)
		if local == before {
			t.Fatalf("%s does not load /etc/prometheus/%s", file, r)
		}
		if out, err := exec.Command(promtool, "check", "rules", abs).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules %s: %v\n%s", r, err, out)
		}
	}
	localCfg := filepath.Join(dir, file)
	if err := os.WriteFile(localCfg, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", localCfg).CombinedOutput(); err != nil {
		t.Errorf("promtool check config %s: %v\n%s", file, err, out)
	}

	var pc promConfig
	if err := yaml.Unmarshal(cfg, &pc); err != nil {
		t.Fatal(err)
	}
	p := mustLoad(t, o)
	prom, ok := p.Services["prometheus"]
	if !ok {
		t.Fatalf("%s: no prometheus service", o.name)
	}
	mounted := false
	for _, v := range prom.Volumes {
		if v.Target == "/etc/prometheus/prometheus.yml" && filepath.Base(v.Source) == file {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("%s: prometheus does not mount %s at /etc/prometheus/prometheus.yml", o.name, file)
	}
	scraped := map[string]bool{}
	var emqxNodes []string
	for _, sc := range pc.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, _ := strings.Cut(target, ":")
				s, ok := p.Services[host]
				if sc.JobName == "prometheus" {
					continue
				}
				if !ok {
					t.Errorf("job %s, target %s: no compose service %s in %s", sc.JobName, target, host, o.name)
					continue
				}
				if _, ok := s.Networks["orchestration"]; !ok {
					t.Errorf("target %s: service %s is not on the orchestration network", target, host)
				}
				switch sc.JobName {
				case "drover":
					scraped[host] = true
					if !slices.Contains(s.Command, ":"+port) {
						t.Errorf("target %s: service %s does not run --admin-addr :%s (command %v)", target, host, port, s.Command)
					}
					if st.Labels["stage"] != host {
						t.Errorf("target %s: stage label %q, want %q", target, st.Labels["stage"], host)
					}
				case "emqx":
					emqxNodes = append(emqxNodes, host)
					if port != "18083" || sc.MetricsPath != "/api/v5/prometheus/stats" {
						t.Errorf("emqx target %s%s: want port 18083 and path /api/v5/prometheus/stats", target, sc.MetricsPath)
					}
				default:
					t.Errorf("unexpected scrape job %s", sc.JobName)
				}
			}
		}
	}
	for name, s := range p.Services {
		if s.Image == testImage && s.Restart != "on-failure:5" && !scraped[name] {
			t.Errorf("long-running drover service %s is not scraped", name)
		}
		if emqx && strings.HasPrefix(s.Image, "emqx/") && !slices.Contains(emqxNodes, name) {
			t.Errorf("EMQX node %s is not scraped", name)
		}
	}
	if emqx && len(emqxNodes) == 0 {
		t.Error("no EMQX node is scraped")
	}
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr   string `json:"expr"`
		RawSQL string `json:"rawSql"`
	} `json:"targets"`
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("config", "grafana", "dashboards", "*.json"))
	if err != nil || len(files) < 2 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(string(data)))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

var metricRe = regexp.MustCompile(`\b(drover_[a-z0-9_]+|up)\b`)

// usedMetrics returns the metric names used by the dashboards' PromQL and
// the alert rules, with where each is used.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	for file, d := range loadDashboards(t) {
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				for _, m := range metricRe.FindAllString(tg.Expr, -1) {
					used[m] = append(used[m], file+": "+p.Title)
				}
			}
		}
	}
	data, err := os.ReadFile(filepath.Join("config", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rf); err != nil {
		t.Fatal(err)
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			for _, m := range metricRe.FindAllString(r.Expr, -1) {
				used[m] = append(used[m], "alerts.yml: "+r.Alert)
			}
		}
	}
	return used
}

// TestGrafana checks the provisioning files and that the dashboards parse,
// use only provisioned datasources, query only tables the sink's migrations
// create, and that the panels are there.
func TestGrafana(t *testing.T) {
	var ds struct {
		Datasources []struct {
			Name           string            `yaml:"name"`
			UID            string            `yaml:"uid"`
			Type           string            `yaml:"type"`
			URL            string            `yaml:"url"`
			SecureJSONData map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	data, err := os.ReadFile(filepath.Join("config", "grafana", "provisioning", "datasources", "datasources.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &ds); err != nil {
		t.Fatal(err)
	}
	uids := map[string]string{}
	for _, d := range ds.Datasources {
		uids[d.UID] = d.Type
		for k, v := range d.SecureJSONData {
			if !strings.HasPrefix(v, "$__file{/run/secrets/") {
				t.Errorf("datasource %s: %s is not read from a secret file", d.Name, k)
			}
		}
	}
	if uids["prometheus"] != "prometheus" || uids["timescaledb"] != "grafana-postgresql-datasource" {
		t.Fatalf("datasources = %v, want prometheus and timescaledb", uids)
	}

	// Tables and views the sink's migrations create.
	tables := map[string]bool{}
	migs, _ := filepath.Glob(filepath.Join(repoRoot(t), "processors", "timescale", "migrations", "*.sql"))
	createRe := regexp.MustCompile(`(?i)CREATE (?:TABLE|MATERIALIZED VIEW|VIEW)(?: IF NOT EXISTS)? ([a-z_]+)`)
	for _, m := range migs {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, mm := range createRe.FindAllStringSubmatch(string(b), -1) {
			tables[mm[1]] = true
		}
	}
	if len(tables) == 0 {
		t.Fatal("found no tables in processors/timescale/migrations")
	}
	fromRe := regexp.MustCompile(`(?i)\bFROM ([a-z_]+)`)

	boards := loadDashboards(t)
	seenUID := map[string]bool{}
	titles := map[string][]string{}
	for file, d := range boards {
		if d.UID == "" || seenUID[d.UID] {
			t.Errorf("%s: uid %q empty or duplicate", file, d.UID)
		}
		seenUID[d.UID] = true
		ids := map[int]bool{}
		for _, p := range d.Panels {
			titles[file] = append(titles[file], p.Title)
			if ids[p.ID] {
				t.Errorf("%s: duplicate panel id %d", file, p.ID)
			}
			ids[p.ID] = true
			if typ, ok := uids[p.Datasource.UID]; !ok || typ != p.Datasource.Type {
				t.Errorf("%s: panel %q uses datasource %s/%s, not provisioned", file, p.Title, p.Datasource.Type, p.Datasource.UID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, tg := range p.Targets {
				switch p.Datasource.UID {
				case "prometheus":
					if !metricRe.MatchString(tg.Expr) {
						t.Errorf("%s: panel %q: query %q uses no drover metric", file, p.Title, tg.Expr)
					}
				case "timescaledb":
					froms := fromRe.FindAllStringSubmatch(tg.RawSQL, -1)
					if len(froms) == 0 {
						t.Errorf("%s: panel %q: SQL reads no table", file, p.Title)
					}
					for _, f := range froms {
						if !tables[f[1]] {
							t.Errorf("%s: panel %q: table %s is not created by the sink's migrations", file, p.Title, f[1])
						}
					}
				}
			}
		}
	}
	for _, tc := range []struct{ file, title string }{
		{"pipeline-health.json", "Bridge: records produced per topic"},
		{"pipeline-health.json", "Dead letters by stage and reason"},
		{"pipeline-health.json", "Sink consumer lag per topic"},
		{"pipeline-health.json", "Produce latency (MQTT receipt to Kafka ack)"},
		{"pipeline-health.json", "Write latency (sink batch) and end to end"},
		{"telemetry-overview.json", "Devices online"},
		{"telemetry-overview.json", "Readings per minute"},
		{"telemetry-overview.json", "Active alerts"},
	} {
		if !slices.Contains(titles[tc.file], tc.title) {
			t.Errorf("%s: no panel %q", tc.file, tc.title)
		}
	}
}

// TestDockerignore checks that the build context keeps everything the build
// needs: module files, the vendored replacement and every go:embed file.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.TrimPrefix(line, "/"))
		}
	}
	ignored := func(path string) string {
		for _, p := range patterns {
			p = strings.TrimPrefix(p, "**/")
			if path == p || strings.HasPrefix(path, p+"/") {
				return p
			}
			if ok, _ := filepath.Match(p, path); ok {
				return p
			}
			if ok, _ := filepath.Match(p, filepath.Base(path)); ok && strings.Contains(p, "*") {
				return p
			}
		}
		return ""
	}
	needed := []string{"go.mod", "go.sum", "third_party/mochi-server/go.mod", "third_party/goka/go.mod", "cmd/drover/main.go",
		"topics/catalogue.yaml", "ingest/routes/routes.yaml", "backfill/mapping.yaml", "processors/alerts/default_rules.yaml"}
	migs, _ := filepath.Glob(filepath.Join(repoRoot(t), "processors", "timescale", "migrations", "*.sql"))
	avsc, _ := filepath.Glob(filepath.Join(repoRoot(t), "schemas", "avsc", "*.avsc"))
	for _, f := range append(migs, avsc...) {
		rel, _ := filepath.Rel(repoRoot(t), f)
		needed = append(needed, rel)
	}
	for _, n := range needed {
		if _, err := os.Stat(filepath.Join(repoRoot(t), n)); err != nil {
			t.Errorf("%s: %v", n, err)
		}
		if p := ignored(n); p != "" {
			t.Errorf(".dockerignore pattern %q drops %s, which the build needs", p, n)
		}
	}
	for _, secret := range []string{"compose/secrets/example/postgres_password", ".drover/dev.env", ".git/config"} {
		if ignored(secret) == "" {
			t.Errorf(".dockerignore keeps %s in the build context", secret)
		}
	}
}
