package compose

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/drover-iot/drover/registry/emqx"
)

// mosquittoConf is a parsed Mosquitto configuration: global options and
// options per listener (keyed by port).
type mosquittoConf struct {
	global    map[string][]string
	listeners map[string]map[string][]string
	order     []string // listener ports in file order
}

func parseMosquittoConf(text string) mosquittoConf {
	c := mosquittoConf{global: map[string][]string{}, listeners: map[string]map[string][]string{}}
	cur := c.global
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		v = strings.TrimSpace(v)
		if k == "listener" {
			port, _, _ := strings.Cut(v, " ")
			cur = map[string][]string{}
			c.listeners[port] = cur
			c.order = append(c.order, port)
			continue
		}
		cur[k] = append(cur[k], v)
	}
	return c
}

// opt returns the value of an authentication option on a listener: the
// listener's own with per_listener_settings true, else the global one.
func (c mosquittoConf) opt(port, key string) []string {
	if slices.Equal(c.global["per_listener_settings"], []string{"true"}) {
		return c.listeners[port][key]
	}
	return c.global[key]
}

// dynsecPluginPath is where the eclipse-mosquitto image keeps the plugin.
const dynsecPluginPath = "/usr/lib/mosquitto_dynamic_security.so"

// shellVar returns the value of `name=VALUE` in a shell script.
func shellVar(t *testing.T, script, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("entrypoint.sh: no %s=", name)
	}
	return m[1]
}

// flagOf returns the value of --name=V or --name V in args ("" if absent).
func flagOf(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// secretAt names the secret mounted at path in s ("" when none is).
func secretAt(s types.ServiceConfig, path string) string {
	src, ok := strings.CutPrefix(mountedAt(s, path), "secret ")
	if !ok {
		return ""
	}
	return src
}

// TestComposeMosquittoDynsec: in every overlay that runs Mosquitto (dev and
// staging), its dynamic security plugin is fed by the device registry —
// mosquitto-dynsec renders the plugin's file from devices.registry before
// the broker starts, the entrypoint installs it where the configuration
// loads it, the registry service keeps it in step live as the administrator
// the file holds, every listener that admits devices authenticates them
// through the plugin (no password or ACL files, no anonymous clients), and
// the bridge logs in as the principal the file (or its own listener) holds
// — so removing any piece of the wiring fails here.
// TestIntegrationShippedMosquittoDynsec runs the same files in a real
// mosquitto.
func TestComposeMosquittoDynsec(t *testing.T) {
	entry, err := os.ReadFile(filepath.Join("config", "mosquitto", "entrypoint.sh"))
	if err != nil {
		t.Fatal(err)
	}
	rendered, live := shellVar(t, string(entry), "rendered"), shellVar(t, string(entry), "live")
	if !strings.Contains(string(entry), "exec /docker-entrypoint.sh \"$@\"") {
		t.Error("entrypoint.sh does not end in the image's entrypoint")
	}
	ran := 0
	for _, o := range overlays(t) {
		if o.name == "base" {
			continue
		}
		p := mustLoad(t, o)
		_, ok := p.Services["mosquitto"]
		if !ok {
			if _, ok := p.Services["mosquitto-dynsec"]; ok {
				t.Errorf("%s: mosquitto-dynsec without mosquitto", o.name)
			}
			if slices.Contains(p.Services["registry"].Command, "--dynsec-url") || flagOf(p.Services["registry"].Command, "dynsec-url") != "" {
				t.Errorf("%s: the registry keeps a Mosquitto in step that does not run", o.name)
			}
			continue
		}
		ran++
		t.Run(o.name, func(t *testing.T) { checkMosquittoDynsec(t, o.name, p, rendered, live) })
	}
	if ran != 2 {
		t.Errorf("%d overlays run Mosquitto, want 2 (dev, staging)", ran)
	}
}

func checkMosquittoDynsec(t *testing.T, overlay string, p *types.Project, rendered, live string) {
	mq, gen, reg, bridge := p.Services["mosquitto"], p.Services["mosquitto-dynsec"], p.Services["registry"], p.Services["bridge"]

	// The broker: the entrypoint installs the rendered file, which it reads
	// from mosquitto-dynsec's volume, after mosquitto-dynsec completed.
	if !slices.Equal(mq.Entrypoint, []string{"/bin/sh", "/opt/drover/entrypoint.sh"}) {
		t.Errorf("mosquitto entrypoint %v, want /bin/sh /opt/drover/entrypoint.sh (installs the rendered dynsec file)", mq.Entrypoint)
	}
	if src := mountedAt(mq, "/opt/drover/entrypoint.sh"); filepath.Base(src) != "entrypoint.sh" || filepath.Base(filepath.Dir(src)) != "mosquitto" {
		t.Errorf("mosquitto: /opt/drover/entrypoint.sh is %q, want config/mosquitto/entrypoint.sh", src)
	}
	if d, ok := mq.DependsOn["mosquitto-dynsec"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Error("mosquitto does not wait for mosquitto-dynsec to complete: it would start without the registry's devices")
	}
	if len(gen.Command) < 2 || gen.Command[0] != "registry" || gen.Command[1] != "dynsec-config" {
		t.Fatalf("mosquitto-dynsec runs %v, want drover registry dynsec-config", gen.Command)
	}
	out := flagOf(gen.Command, "out")
	var vol string
	for _, v := range gen.Volumes {
		if v.Type == types.VolumeTypeVolume && strings.HasPrefix(out, v.Target+"/") {
			vol = v.Source
			if rel := strings.TrimPrefix(out, v.Target); "/run/drover/dynsec"+rel != rendered {
				t.Errorf("mosquitto-dynsec writes %s (in the volume, %s); the entrypoint installs %s", out, rel, rendered)
			}
		}
	}
	if vol == "" {
		t.Fatalf("mosquitto-dynsec writes %q outside a named volume", out)
	}
	var mounted bool
	for _, v := range mq.Volumes {
		if v.Source == vol && v.Target == "/run/drover/dynsec" {
			mounted = true
			if !v.ReadOnly {
				t.Error("mosquitto mounts the rendered dynsec file writable")
			}
		}
	}
	if !mounted {
		t.Errorf("mosquitto does not mount volume %s at /run/drover/dynsec", vol)
	}
	if !strings.HasPrefix(live, "/mosquitto/data/") || mountedAt(mq, "/mosquitto/data") == "" {
		t.Errorf("the installed dynsec file %s is not on mosquitto's data volume (the plugin rewrites it after every change)", live)
	}

	// The configuration mounted: the plugin on every listener devices use,
	// reading the installed file; no password or ACL file, no anonymous.
	confSrc := mountedAt(mq, "/mosquitto/config/mosquitto.conf")
	text, err := os.ReadFile(confSrc)
	if err != nil {
		t.Fatalf("mosquitto.conf: %v", err)
	}
	conf := parseMosquittoConf(string(text))
	if len(conf.order) == 0 {
		t.Fatal("mosquitto.conf: no listener")
	}
	dynsecPorts := map[string]bool{}
	for _, port := range conf.order {
		if v := conf.opt(port, "allow_anonymous"); !slices.Equal(v, []string{"false"}) {
			t.Errorf("listener %s: allow_anonymous %v, want false", port, v)
		}
		plugin := conf.opt(port, "plugin")
		if slices.Equal(plugin, []string{dynsecPluginPath}) {
			dynsecPorts[port] = true
			if v := conf.opt(port, "plugin_opt_config_file"); !slices.Equal(v, []string{live}) {
				t.Errorf("listener %s: plugin_opt_config_file %v, want %s (where the entrypoint installs the registry's file)", port, v, live)
			}
			for _, k := range []string{"password_file", "acl_file"} {
				if v := conf.opt(port, k); len(v) > 0 {
					t.Errorf("listener %s: %s %v next to the dynamic security plugin: the registry is the only source of devices", port, k, v)
				}
			}
		} else if len(plugin) > 0 {
			t.Errorf("listener %s: plugin %v, want %s", port, plugin, dynsecPluginPath)
		}
	}
	if len(dynsecPorts) == 0 {
		t.Fatal("no listener runs the dynamic security plugin")
	}
	// Published listeners are the devices': each must be a dynsec one.
	for _, pt := range mq.Ports {
		if !dynsecPorts[strconv.Itoa(int(pt.Target))] {
			t.Errorf("mosquitto publishes %d, which does not authenticate through the registry's dynamic security", pt.Target)
		}
	}

	// The registry service keeps the broker in step, as the administrator
	// the rendered file holds.
	u := flagOf(reg.Command, "dynsec-url")
	host, port, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(u, "tcp://"), "ssl://"), ":")
	if host != "mosquitto" || !dynsecPorts[port] {
		t.Errorf("registry --dynsec-url %q: want mosquitto on a dynamic security listener %v", u, slices.Sorted(maps.Keys(dynsecPorts)))
	}
	if len(conf.listeners[port]["certfile"]) > 0 && !strings.HasPrefix(u, "ssl://") {
		t.Errorf("registry --dynsec-url %q: the listener is TLS", u)
	}
	if _, ok := reg.Networks["ingest"]; !ok {
		t.Error("registry is not on the ingest network: it cannot reach mosquitto")
	}
	regPass, genPass := secretAt(reg, flagOf(reg.Command, "dynsec-password-file")), secretAt(gen, flagOf(gen.Command, "dynsec-password-file"))
	if regPass == "" || regPass != genPass {
		t.Errorf("dynsec administrator: the registry logs in with secret %q, the rendered file holds %q", regPass, genPass)
	}
	if a, b := flagOf(reg.Command, "dynsec-client-id"), flagOf(gen.Command, "dynsec-client-id"); a != b {
		t.Errorf("dynsec administrator client id: registry %q, rendered %q", a, b)
	}
	if d, ok := reg.DependsOn["mosquitto"]; !ok || d.Condition != types.ServiceConditionHealthy {
		t.Error("registry does not wait for a healthy mosquitto")
	}

	// The bridge: on a dynsec listener as the principal the file holds, or
	// on a listener of its own.
	bu := envOf(bridge, "DROVER_MQTT_URL")
	_, bport, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(bu, "tcp://"), "ssl://"), ":")
	if envOf(bridge, "DROVER_MQTT_USERNAME") != "drover-bridge" {
		t.Errorf("bridge MQTT user %q, want drover-bridge", envOf(bridge, "DROVER_MQTT_USERNAME"))
	}
	if dynsecPorts[bport] {
		if a, b := secretAt(bridge, envOf(bridge, "DROVER_MQTT_PASSWORD_FILE")), secretAt(gen, flagOf(gen.Command, "bridge-password-file")); a == "" || a != b {
			t.Errorf("bridge: password secret %q, the rendered file's bridge principal %q", a, b)
		}
	} else if pf := conf.opt(bport, "password_file"); len(pf) != 1 || secretAt(mq, pf[0]) == "" {
		t.Errorf("bridge listener %s: neither dynamic security nor a mounted password file (%v)", bport, pf)
	}

	if overlay != "dev" {
		return
	}
	// dev: the simulator's herd is registered before the file is rendered,
	// each device connects with its secret, and the bridge enforces.
	if v := flagOf(bridge.Command, "registry"); v != "enforce" {
		t.Errorf("dev bridge --registry %q, want enforce", v)
	}
	sr, sim := p.Services["simulate-register"], p.Services["simulate"]
	if !slices.Contains(sr.Command, "--register-only") {
		t.Errorf("simulate-register runs %v, want simulate --register-only", sr.Command)
	}
	if d, ok := gen.DependsOn["simulate-register"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Error("mosquitto-dynsec renders before the simulator's herd is registered: its devices would have no password in Mosquitto")
	}
	for _, f := range []string{"devices", "tenant", "device-prefix", "seed", "wildfi-ratio"} {
		if a, b := flagOf(sr.Command, f), flagOf(sim.Command, f); a != b {
			t.Errorf("--%s: simulate-register %q, simulate %q: another herd", f, a, b)
		}
	}
	regFile, simFile := flagOf(sr.Command, "secrets-file"), flagOf(sim.Command, "secrets-file")
	if regFile == "" || regFile != simFile || mountedAt(sr, filepath.Dir(regFile)) == "" || mountedAt(sr, filepath.Dir(regFile)) != mountedAt(sim, filepath.Dir(simFile)) {
		t.Errorf("simulator secrets: simulate-register writes %q (%s), simulate reads %q (%s)", regFile, mountedAt(sr, filepath.Dir(regFile)), simFile, mountedAt(sim, filepath.Dir(simFile)))
	}
}

// TestComposeEMQXKicks: in prod the registry kicks suspended and revoked
// devices through EMQX's REST API with the API key EMQX bootstraps from the
// same secret file (api_key.bootstrap_file), mounted into every node.
func TestComposeEMQXKicks(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("config", "emqx", "emqx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := parseHOCON(string(data))
	if err != nil {
		t.Fatal(err)
	}
	bootstrap, _ := conf["api_key.bootstrap_file"].(string)
	if bootstrap == "" {
		t.Fatal("emqx.conf: no api_key.bootstrap_file: the registry's API key would not exist")
	}
	for _, o := range overlays(t) {
		if !strings.HasPrefix(o.name, "prod") {
			continue
		}
		p := mustLoad(t, o)
		reg := p.Services["registry"]
		if u := flagOf(reg.Command, "emqx-api-url"); u != "http://emqx:18083" {
			t.Errorf("%s: registry --emqx-api-url %q, want http://emqx:18083 (the REST API on the ingest network)", o.name, u)
		}
		keySecret := secretAt(reg, flagOf(reg.Command, "emqx-api-key-file"))
		if keySecret == "" {
			t.Fatalf("%s: registry --emqx-api-key-file %q is not a mounted secret", o.name, flagOf(reg.Command, "emqx-api-key-file"))
		}
		for _, n := range emqxNodes(p) {
			if got := secretAt(p.Services[n], bootstrap); got != keySecret {
				t.Errorf("%s: %s: %s is secret %q, the registry's key is %q", o.name, n, bootstrap, got, keySecret)
			}
		}
		if _, ok := p.Secrets["mqtt_dynsec_password"]; ok {
			t.Errorf("%s declares mqtt_dynsec_password, which nothing uses (no Mosquitto)", o.name)
		}
		b, err := os.ReadFile(p.Secrets[keySecret].File)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := emqx.ParseAPIKeyFile(b, flagOf(reg.Command, "emqx-api-key")); err != nil {
			t.Errorf("%s: the example %s: %v", o.name, keySecret, err)
		}
	}
}

// TestMosquittoEntrypoint runs config/mosquitto/entrypoint.sh (paths
// rewritten, the image's entrypoint replaced by echo): the rendered file is
// installed on the first start and whenever it is newer than the broker's
// copy (every `compose up` renders again), the broker's own copy is kept when
// it is newer (Mosquitto alone restarted after live changes), and a missing
// rendering stops the broker instead of starting it without devices.
func TestMosquittoEntrypoint(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("config", "mosquitto", "entrypoint.sh"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rendered, live := filepath.Join(dir, "rendered.json"), filepath.Join(dir, "live.json")
	s := strings.NewReplacer(
		shellVar(t, string(script), "rendered"), rendered,
		shellVar(t, string(script), "live"), live,
		"exec /docker-entrypoint.sh", "exec echo started",
	).Replace(string(script))
	path := filepath.Join(dir, "entrypoint.sh")
	if err := os.WriteFile(path, []byte(s), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func() (string, error) {
		out, err := exec.Command("/bin/sh", path, "mosquitto").CombinedOutput()
		return string(out), err
	}
	content := func() string { b, _ := os.ReadFile(live); return string(b) }
	setTime := func(p string, ago time.Duration) {
		if err := os.Chtimes(p, time.Now().Add(-ago), time.Now().Add(-ago)); err != nil {
			t.Fatal(err)
		}
	}

	if out, err := run(); err == nil || strings.Contains(out, "started") {
		t.Fatalf("no rendered file: %v %q, want a failure before the broker starts", err, out)
	}
	_ = os.WriteFile(rendered, []byte(`{"v":1}`), 0o600)
	setTime(rendered, time.Hour)
	if out, err := run(); err != nil || !strings.Contains(out, "started mosquitto") || content() != `{"v":1}` {
		t.Fatalf("first start: %v %q, live %q", err, out, content())
	}
	if st, _ := os.Stat(live); st.Mode().Perm() != 0o600 {
		t.Errorf("installed file mode %v, want 0600 (it holds password hashes)", st.Mode().Perm())
	}
	// The plugin rewrote its copy after a live change; Mosquitto restarts.
	_ = os.WriteFile(live, []byte(`{"v":"live"}`), 0o600)
	if _, err := run(); err != nil || content() != `{"v":"live"}` {
		t.Fatalf("restart: live %q (%v), want the broker's newer copy kept", content(), err)
	}
	// compose up renders again.
	setTime(live, time.Hour)
	_ = os.WriteFile(rendered, []byte(`{"v":2}`), 0o600)
	if _, err := run(); err != nil || content() != `{"v":2}` {
		t.Fatalf("after a new rendering: live %q (%v), want it installed", content(), err)
	}
}
