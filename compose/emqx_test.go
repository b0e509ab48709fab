package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/drover-iot/drover/ingest/routes"
)

// hocon is a strict reader for the subset of HOCON that config/emqx/emqx.conf
// uses (no Go HOCON parser resolves through the module proxy here): objects
// (`key { ... }`), dotted keys, `key = value`, arrays of values or objects,
// quoted and unquoted scalars, # and // comments. Anything else is an error,
// so a file that drifts from the subset fails the test instead of being
// half-read. Values are flattened to dotted paths; arrays keep their
// elements (string or map[string]any).
type hocon struct {
	src []rune
	pos int
}

func parseHOCON(data string) (map[string]any, error) {
	h := &hocon{src: []rune(data)}
	out := map[string]any{}
	if err := h.object(out, "", false); err != nil {
		return nil, err
	}
	return out, nil
}

func (h *hocon) errorf(format string, args ...any) error {
	line := 1 + strings.Count(string(h.src[:h.pos]), "\n")
	return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
}

// skip skips blanks, commas and comments; newlines too.
func (h *hocon) skip() {
	for h.pos < len(h.src) {
		r := h.src[h.pos]
		switch {
		case unicode.IsSpace(r) || r == ',':
			h.pos++
		case r == '#' || (r == '/' && h.pos+1 < len(h.src) && h.src[h.pos+1] == '/'):
			for h.pos < len(h.src) && h.src[h.pos] != '\n' {
				h.pos++
			}
		default:
			return
		}
	}
}

func (h *hocon) key() (string, error) {
	start := h.pos
	for h.pos < len(h.src) {
		r := h.src[h.pos]
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '.' || r == '-' {
			h.pos++
			continue
		}
		break
	}
	if h.pos == start {
		return "", h.errorf("expected a key, found %q", string(h.src[h.pos]))
	}
	return string(h.src[start:h.pos]), nil
}

func (h *hocon) object(out map[string]any, prefix string, braced bool) error {
	for {
		h.skip()
		if h.pos == len(h.src) {
			if braced {
				return h.errorf("unterminated object %s", prefix)
			}
			return nil
		}
		if h.src[h.pos] == '}' {
			if !braced {
				return h.errorf("unexpected }")
			}
			h.pos++
			return nil
		}
		k, err := h.key()
		if err != nil {
			return err
		}
		path := strings.TrimPrefix(prefix+"."+k, ".")
		for h.pos < len(h.src) && (h.src[h.pos] == ' ' || h.src[h.pos] == '\t') {
			h.pos++
		}
		if h.pos == len(h.src) {
			return h.errorf("key %s without value", path)
		}
		switch h.src[h.pos] {
		case '{':
			h.pos++
			if err := h.object(out, path, true); err != nil {
				return err
			}
		case '=', ':':
			h.pos++
			v, err := h.value(out, path)
			if err != nil {
				return err
			}
			if v != nil {
				if _, dup := out[path]; dup {
					return h.errorf("%s set twice", path)
				}
				out[path] = v
			}
		default:
			return h.errorf("after key %s: expected =, : or {, found %q", path, string(h.src[h.pos]))
		}
	}
}

// value reads a scalar or an array; an object value is flattened into out
// (and nil returned).
func (h *hocon) value(out map[string]any, path string) (any, error) {
	for h.pos < len(h.src) && (h.src[h.pos] == ' ' || h.src[h.pos] == '\t') {
		h.pos++
	}
	if h.pos == len(h.src) {
		return nil, h.errorf("%s: missing value", path)
	}
	switch r := h.src[h.pos]; {
	case r == '{':
		h.pos++
		return nil, h.object(out, path, true)
	case r == '[':
		h.pos++
		var arr []any
		for {
			h.skip()
			if h.pos == len(h.src) {
				return nil, h.errorf("%s: unterminated array", path)
			}
			if h.src[h.pos] == ']' {
				h.pos++
				return arr, nil
			}
			if h.src[h.pos] == '{' {
				h.pos++
				m := map[string]any{}
				if err := h.object(m, "", true); err != nil {
					return nil, err
				}
				arr = append(arr, m)
				continue
			}
			v, err := h.scalar(path, true)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
	default:
		return h.scalar(path, false)
	}
}

func (h *hocon) scalar(path string, inArray bool) (string, error) {
	if h.src[h.pos] == '"' {
		h.pos++
		start := h.pos
		for h.pos < len(h.src) && h.src[h.pos] != '"' {
			if h.src[h.pos] == '\\' || h.src[h.pos] == '\n' {
				return "", h.errorf("%s: escapes and newlines in strings are not in the subset", path)
			}
			h.pos++
		}
		if h.pos == len(h.src) {
			return "", h.errorf("%s: unterminated string", path)
		}
		h.pos++
		return string(h.src[start : h.pos-1]), nil
	}
	start := h.pos
	for h.pos < len(h.src) {
		r := h.src[h.pos]
		if r == '\n' || r == ',' || r == '#' || r == '}' || (inArray && r == ']') {
			break
		}
		if strings.ContainsRune(`{[]"$=:`, r) {
			return "", h.errorf("%s: %q in an unquoted value", path, string(r))
		}
		h.pos++
	}
	v := strings.TrimSpace(string(h.src[start:h.pos]))
	if v == "" {
		return "", h.errorf("%s: empty value", path)
	}
	return v, nil
}

func TestHOCONReaderIsStrict(t *testing.T) {
	good := "a { b = 1\n c.d = \"x\" }\n# comment\ne = [\"p\", q]\nf = [ { g = h } ]\n"
	m, err := parseHOCON(good)
	if err != nil {
		t.Fatal(err)
	}
	if m["a.b"] != "1" || m["a.c.d"] != "x" || len(m["e"].([]any)) != 2 || m["f"].([]any)[0].(map[string]any)["g"] != "h" {
		t.Fatalf("parsed %v", m)
	}
	for _, bad := range []string{"a {", "a = ", "a = ${X}", "a b", "a = 1\na = 2", "}", "a = \"x"} {
		if _, err := parseHOCON(bad); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

// TestEMQXConfig checks config/emqx/emqx.conf (read with the strict subset
// reader) for what the prod overlay relies on: TLS only on 8883 with mounted
// certificates, password authentication seeded from a mounted secret, the ACL
// file mounted where the config reads it, and sessions that never drop QoS 1
// backlog.
func TestEMQXConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("config", "emqx", "emqx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := parseHOCON(string(data))
	if err != nil {
		t.Fatalf("emqx.conf: %v", err)
	}
	for _, tc := range []struct{ key, want string }{
		// never drop QoS 1 backlog (DESIGN.md, known pitfalls)
		{"mqtt.max_mqueue_len", "infinity"},
		{"mqtt.mqueue_store_qos0", "false"},
		{"mqtt.max_inflight", "1024"},
		{"mqtt.shared_subscription", "true"},
		{"force_shutdown.max_mailbox_size", "1000000"},
		{"force_shutdown.max_heap_size", "2GB"},
		{"durable_sessions.enable", "false"},
		{"broker.shared_subscription_strategy", "hash_clientid"},
		// only TLS
		{"listeners.tcp.default.enable", "false"},
		{"listeners.ws.default.enable", "false"},
		{"listeners.wss.default.enable", "false"},
		{"listeners.ssl.default.enable", "true"},
		{"listeners.ssl.default.bind", "0.0.0.0:8883"},
		{"authorization.no_match", "deny"},
		// the bridge's client ids belong to the bridge: devices' ids are
		// their user names, the bridge has a listener of its own
		{"listeners.ssl.default.zone", "devices"},
		{"zones.devices.mqtt.use_username_as_clientid", "true"},
		{"listeners.ssl.bridge.enable", "true"},
		{"listeners.ssl.bridge.bind", "0.0.0.0:8884"},
		// the bridge's --command-presence events follows these
		{"sys_topics.sys_event_messages.client_connected", "true"},
		{"sys_topics.sys_event_messages.client_disconnected", "true"},
	} {
		if got, _ := conf[tc.key].(string); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.key, got, tc.want)
		}
	}
	for _, k := range conf {
		if s, ok := k.(string); ok && (strings.Contains(s, "emqxsecretcookie") || strings.Contains(s, "public")) {
			t.Errorf("emqx.conf holds a default credential %q", s)
		}
	}
	if _, ok := conf["node.cookie"]; ok {
		t.Error("emqx.conf sets node.cookie: the cookie comes from the emqx_cookie secret (entrypoint.sh)")
	}

	// Devices: the registry first (HTTP, the bodies registry/emqx
	// documents), then the built-in database for tooling users.
	authn, _ := conf["authentication"].([]any)
	if len(authn) != 2 {
		t.Fatalf("authentication = %v, want the registry's HTTP authenticator, then the built-in database", conf["authentication"])
	}
	checkRegistryHTTP(t, "authentication.1", authn[0].(map[string]any), "/emqx/authn",
		map[string]string{"clientid": "${clientid}", "username": "${username}", "password": "${password}",
			"peerhost": "${peerhost}", "cert_common_name": "${cert_common_name}", "cert_subject": "${cert_subject}"})
	if m := authn[0].(map[string]any)["mechanism"]; m != "password_based" {
		t.Errorf("authentication.1.mechanism = %v, want password_based", m)
	}
	a := authn[1].(map[string]any)
	for k, want := range map[string]string{"mechanism": "password_based", "backend": "built_in_database", "user_id_type": "username",
		"bootstrap_type": "hash", "password_hash_algorithm.name": "sha256", "password_hash_algorithm.salt_position": "suffix"} {
		if a[k] != want {
			t.Errorf("authentication.2.%s = %v, want %s", k, a[k], want)
		}
	}
	// Certificate devices: verified against the tenants' CAs.
	if v := conf["listeners.ssl.default.ssl_options.verify"]; v != "verify_peer" {
		t.Errorf("listeners.ssl.default.ssl_options.verify = %v, want verify_peer (certificate devices)", v)
	}
	bridgeAuthn, _ := conf["listeners.ssl.bridge.authentication"].([]any)
	if len(bridgeAuthn) != 1 {
		t.Fatalf("listeners.ssl.bridge.authentication = %v, want one password_based authenticator of its own", conf["listeners.ssl.bridge.authentication"])
	}
	ba := bridgeAuthn[0].(map[string]any)
	if ba["backend"] != "built_in_database" || ba["bootstrap_file"] == a["bootstrap_file"] ||
		!strings.HasSuffix(ba["bootstrap_file"].(string), "/emqx_bridge_users.csv") {
		t.Errorf("bridge listener authentication %v: want the built-in database seeded from emqx_bridge_users.csv, not the devices' users", ba)
	}
	sources, _ := conf["authorization.sources"].([]any)
	if len(sources) != 2 || sources[0].(map[string]any)["type"] != "http" || sources[1].(map[string]any)["type"] != "file" {
		t.Fatalf("authorization.sources = %v, want the registry's HTTP source, then the file", conf["authorization.sources"])
	}
	checkRegistryHTTP(t, "authorization.sources.1", sources[0].(map[string]any), "/emqx/authz",
		map[string]string{"clientid": "${clientid}", "username": "${username}", "topic": "${topic}",
			"action": "${action}", "qos": "${qos}", "retain": "${retain}"})
	aclPath, _ := sources[1].(map[string]any)["path"].(string)

	// Every file the config names is mounted into every EMQX node of prod.
	files := []string{conf["listeners.ssl.default.ssl_options.cacertfile"].(string), conf["listeners.ssl.default.ssl_options.certfile"].(string),
		conf["listeners.ssl.default.ssl_options.keyfile"].(string), a["bootstrap_file"].(string), aclPath,
		conf["listeners.ssl.bridge.ssl_options.cacertfile"].(string), conf["listeners.ssl.bridge.ssl_options.certfile"].(string),
		conf["listeners.ssl.bridge.ssl_options.keyfile"].(string), ba["bootstrap_file"].(string)}
	p := mustLoad(t, overlays(t)[3])
	nodes := emqxNodes(p)
	if len(nodes) != 3 {
		t.Fatalf("prod has EMQX nodes %v, want 3", nodes)
	}
	for _, name := range nodes {
		s := p.Services[name]
		mounted := map[string]string{}
		for _, sec := range s.Secrets {
			target := sec.Target
			if target == "" {
				target = sec.Source
			}
			if !strings.HasPrefix(target, "/") {
				target = "/run/secrets/" + target
			}
			mounted[target] = "secret " + sec.Source
		}
		for _, v := range s.Volumes {
			mounted[v.Target] = v.Source
		}
		for _, f := range files {
			if mounted[f] == "" {
				t.Errorf("%s: emqx.conf reads %s, which is not mounted", name, f)
			}
		}
		if src := mounted["/opt/emqx/etc/emqx.conf"]; !strings.HasSuffix(src, filepath.Join("config", "emqx", "emqx.conf")) {
			t.Errorf("%s: /opt/emqx/etc/emqx.conf is %q, want config/emqx/emqx.conf", name, src)
		}
		if src := mounted[aclPath]; !strings.HasSuffix(src, filepath.Join("config", "emqx", "acl.conf")) {
			t.Errorf("%s: %s is %q, want config/emqx/acl.conf", name, aclPath, src)
		}
		if mounted["/run/secrets/registry_emqx_token"] == "" {
			t.Errorf("%s: the registry's token (registry_emqx_token) is not mounted", name)
		}
		if mounted["/opt/emqx/data"] == "" {
			t.Errorf("%s: /opt/emqx/data (Mnesia, cluster membership) is not on a volume", name)
		}
	}
}

// TestEMQXACL reads config/emqx/acl.conf with Erlang's file:consult (what
// EMQX's file authorizer uses) and checks it grants the bridge what the
// Mosquitto ACL grants it (every device topic, also as a shared
// subscription; writes commands) and devices nothing: the registry decides
// for them (authorization.sources.1), and when it cannot answer they are
// refused; everything else is denied.
func TestEMQXACL(t *testing.T) {
	erl, err := exec.LookPath("erl")
	if err != nil {
		t.Fatal("erl not found: apt-get install erlang-base (EMQX's ACL file is Erlang terms)")
	}
	path, err := filepath.Abs(filepath.Join("config", "emqx", "acl.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// Print each rule as one line of io_lib:format("~0p").
	eval := fmt.Sprintf(`case file:consult(%q) of {ok, Rules} -> [io:format("~0p~n", [R]) || R <- Rules], halt(0); {error, E} -> io:format("~p~n", [E]), halt(1) end.`, path)
	out, err := exec.Command(erl, "-noshell", "-eval", eval).CombinedOutput()
	if err != nil {
		t.Fatalf("file:consult(acl.conf): %v\n%s", err, out)
	}
	rules := strings.Split(strings.TrimSpace(string(out)), "\n")
	// The topics come from the routes table: a new route family is one
	// entry there, and these files must follow.
	rt := routes.Default()
	// Devices have no rule here: EMQX asks the registry first
	// (checkRegistryHTTP), and a registry that does not answer leaves
	// them refused.
	var sub []string
	for _, f := range rt.Filters() {
		sub = append(sub, `"$share/+/`+f+`"`)
	}
	for _, f := range rt.Filters() {
		sub = append(sub, `"`+f+`"`)
	}
	want := []string{
		`{allow,{username,"drover-bridge"},subscribe,[` + strings.Join(sub, ",") + `,"$SYS/brokers/+/clients/#"]}`,
		`{allow,{username,"drover-bridge"},publish,["devices/+/+/commands/#","devices/+/+/shadow/#"]}`,
		`{deny,all}`,
	}
	if !slices.Equal(rules, want) {
		t.Errorf("acl.conf rules:\n  %s\nwant:\n  %s", strings.Join(rules, "\n  "), strings.Join(want, "\n  "))
	}

	// The Mosquitto ACL (staging's bridge listener) grants the bridge the
	// same topics and devices nothing: the dynamic security plugin, fed by
	// the registry, decides for them on their own listener.
	moz, err := os.ReadFile(filepath.Join("config", "mosquitto", "acl.conf"))
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{"user drover-bridge", "topic write devices/+/+/commands/#", "topic write devices/+/+/shadow/#"}
	for _, f := range rt.Filters() {
		lines = append(lines, "topic read "+f)
	}
	for _, line := range lines {
		if !strings.Contains(string(moz), line+"\n") {
			t.Errorf("config/mosquitto/acl.conf lost %q: keep the two ACLs equivalent", line)
		}
	}
	for _, line := range strings.Split(string(moz), "\n") {
		if strings.HasPrefix(line, "pattern ") || (strings.HasPrefix(line, "user ") && line != "user drover-bridge") {
			t.Errorf("config/mosquitto/acl.conf: %q: the bridge's listener has no other principal; devices get their topics from the registry (dynamic security)", line)
		}
	}
}

// TestEMQXUsersFile checks the example users files the way EMQX's bootstrap
// reads them (header user_id,password_hash,salt,is_superuser; sha256 of
// password + salt): the bridge's listener knows the bridge (its row matches
// the bridge's password file) and the devices' listener no drover-bridge
// user, whose client id would then be drover-bridge.
func TestEMQXUsersFile(t *testing.T) {
	dir := filepath.Join("secrets", "example")
	pw, err := os.ReadFile(filepath.Join(dir, "mqtt_bridge_password"))
	if err != nil {
		t.Fatal(err)
	}
	rows := func(file string) [][]string {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if lines[0] != "user_id,password_hash,salt,is_superuser" {
			t.Fatalf("%s: header %q", file, lines[0])
		}
		var out [][]string
		for _, l := range lines[1:] {
			f := strings.Split(l, ",")
			if len(f) != 4 {
				t.Fatalf("%s: row %q: want 4 fields", file, l)
			}
			if f[3] != "false" {
				t.Errorf("%s: user %s is a superuser: ACLs would not apply", file, f[0])
			}
			out = append(out, f)
		}
		return out
	}
	for _, f := range rows("emqx_users.csv") {
		if strings.HasPrefix(f[0], "drover-bridge") {
			t.Errorf("emqx_users.csv (devices' listener) has user %s: the bridge's users belong in emqx_bridge_users.csv", f[0])
		}
	}
	bridge := rows("emqx_bridge_users.csv")
	if len(bridge) != 1 || bridge[0][0] != "drover-bridge" {
		t.Fatalf("emqx_bridge_users.csv rows %v, want drover-bridge only", bridge)
	}
	if got := sha256Hex(string(pw) + bridge[0][2]); got != bridge[0][1] {
		t.Errorf("drover-bridge: sha256(mqtt_bridge_password + salt) = %s, csv has %s", got, bridge[0][1])
	}
}

// emqxNodes returns the names of a project's EMQX services, sorted.
func emqxNodes(p *types.Project) []string {
	var out []string
	for name, s := range p.Services {
		if strings.HasPrefix(s.Image, "emqx/emqx:") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// mountedAt returns what a service has at the container path target: a
// secret ("secret <name>") or a volume's source, or "".
func mountedAt(s types.ServiceConfig, target string) string {
	for _, sec := range s.Secrets {
		t := sec.Target
		if t == "" {
			t = sec.Source
		}
		if !strings.HasPrefix(t, "/") {
			t = "/run/secrets/" + t
		}
		if t == target {
			return "secret " + sec.Source
		}
	}
	for _, v := range s.Volumes {
		if v.Target == target {
			return v.Source
		}
	}
	return ""
}

func envOf(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

// checkRegistryTLS: the schema registry serves HTTPS only, with a mounted
// keystore and an https healthcheck, and every drover service that talks to
// it uses an https URL and a mounted CA.
func checkRegistryTLS(t *testing.T, overlay string, p *types.Project) {
	t.Helper()
	sr := p.Services["schema-registry"]
	for _, l := range strings.Split(envOf(sr, "SCHEMA_REGISTRY_LISTENERS"), ",") {
		if !strings.HasPrefix(l, "https://") {
			t.Errorf("%s: schema registry listener %q is not https", overlay, l)
		}
	}
	if v := envOf(sr, "SCHEMA_REGISTRY_INTER_INSTANCE_PROTOCOL"); v != "https" {
		t.Errorf("%s: SCHEMA_REGISTRY_INTER_INSTANCE_PROTOCOL = %q, want https (the registry has no http listener)", overlay, v)
	}
	if ks := envOf(sr, "SCHEMA_REGISTRY_SSL_KEYSTORE_LOCATION"); ks == "" || mountedAt(sr, ks) == "" {
		t.Errorf("%s: schema registry keystore %q is not mounted", overlay, ks)
	}
	if hc := strings.Join(sr.HealthCheck.Test, " "); !strings.Contains(hc, "https://schema-registry:8081") || !strings.Contains(hc, "--cacert /run/secrets/ca.pem") {
		t.Errorf("%s: schema registry healthcheck %q does not check https against the CA", overlay, hc)
	}
	var clients []string
	for name, s := range p.Services {
		if s.Image != testImage || s.Environment["DROVER_SCHEMA_REGISTRY_URL"] == nil {
			continue
		}
		clients = append(clients, name)
		if u := envOf(s, "DROVER_SCHEMA_REGISTRY_URL"); !strings.HasPrefix(u, "https://schema-registry:8081") {
			t.Errorf("%s: %s uses registry URL %q, want https://schema-registry:8081", overlay, name, u)
		}
		if ca := envOf(s, "DROVER_SCHEMA_REGISTRY_TLS_CA"); ca == "" || mountedAt(s, ca) == "" {
			t.Errorf("%s: %s: registry CA %q is not set or not mounted", overlay, name, ca)
		}
	}
	slices.Sort(clients)
	want := []string{"bridge", "console", "media", "process", "registry", "schedule", "schemas-register", "sink"}
	if _, ok := p.Services["mosquitto-dynsec"]; ok {
		want = append(want, "mosquitto-dynsec")
		slices.Sort(want)
	}
	if !slices.Equal(clients, want) {
		t.Errorf("%s: registry clients %v, want %v", overlay, clients, want)
	}
}

// checkEMQXCluster: three statically seeded nodes that name each other by
// resolvable aliases, each healthy by 'emqx ctl status', publishing only its
// TLS listener, with its own data volume and the secrets its entrypoint
// reads; the bridge connects to the cluster.
func checkEMQXCluster(t *testing.T, p *types.Project) {
	t.Helper()
	nodes := emqxNodes(p)
	if !slices.Equal(nodes, []string{"emqx-1", "emqx-2", "emqx-3"}) {
		t.Fatalf("EMQX nodes %v, want emqx-1..3", nodes)
	}
	entry, err := os.ReadFile(filepath.Join("config", "emqx", "entrypoint.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var entrySecrets []string
	for _, f := range strings.Fields(strings.NewReplacer("(", " ", ")", " ", `"`, " ").Replace(string(entry))) {
		if strings.HasPrefix(f, "/run/secrets/") {
			entrySecrets = append(entrySecrets, f)
		}
	}
	if len(entrySecrets) < 2 {
		t.Errorf("entrypoint.sh reads secrets %v, want the cookie and the dashboard password", entrySecrets)
	}
	var names, hostPorts, dataVolumes []string
	shared := map[string]int{} // alias -> nodes carrying it
	for _, n := range nodes {
		s := p.Services[n]
		name := envOf(s, "EMQX_NODE__NAME")
		names = append(names, name)
		net := s.Networks["ingest"]
		if net == nil {
			t.Errorf("%s is not on ingest", n)
			continue
		}
		host, ok := strings.CutPrefix(name, "emqx@")
		if !ok || !strings.Contains(host, ".") || !slices.Contains(net.Aliases, host) {
			t.Errorf("%s: node name %q: want emqx@<dotted alias of this service> (aliases %v)", n, name, net.Aliases)
		}
		for _, a := range net.Aliases {
			shared[a]++
		}
		if v := envOf(s, "EMQX_CLUSTER__DISCOVERY_STRATEGY"); v != "static" {
			t.Errorf("%s: discovery strategy %q, want static", n, v)
		}
		if hc := strings.Join(s.HealthCheck.Test, " "); !strings.Contains(hc, "emqx ctl status") || !strings.Contains(hc, "/run/secrets/emqx_cookie") {
			t.Errorf("%s: healthcheck %q, want 'emqx ctl status' with the cookie from its secret", n, hc)
		}
		if len(s.Ports) != 1 || s.Ports[0].Target != 8883 {
			t.Errorf("%s publishes %v, want only its MQTT TLS listener 8883", n, s.Ports)
		} else {
			hostPorts = append(hostPorts, s.Ports[0].Published)
		}
		if len(s.Entrypoint) != 2 || s.Entrypoint[1] != "/opt/drover/entrypoint.sh" ||
			!strings.HasSuffix(mountedAt(s, "/opt/drover/entrypoint.sh"), filepath.Join("config", "emqx", "entrypoint.sh")) {
			t.Errorf("%s: entrypoint %v does not run the mounted config/emqx/entrypoint.sh", n, s.Entrypoint)
		}
		if !slices.Equal(s.Command, types.ShellCommand{"/opt/emqx/bin/emqx", "foreground"}) {
			t.Errorf("%s: command %v, want emqx foreground (an entrypoint override drops the image's command)", n, s.Command)
		}
		for _, sec := range entrySecrets {
			if mountedAt(s, sec) == "" {
				t.Errorf("%s: entrypoint.sh reads %s, which is not mounted", n, sec)
			}
		}
		dataVolumes = append(dataVolumes, mountedAt(s, "/opt/emqx/data"))
		for k, v := range s.Environment {
			if v != nil && (strings.Contains(k, "COOKIE") || strings.Contains(k, "PASSWORD")) {
				t.Errorf("%s: %s is set in the compose file; it must come from a secret file", n, k)
			}
		}
	}
	for _, n := range nodes {
		seeds := strings.Split(strings.Trim(envOf(p.Services[n], "EMQX_CLUSTER__STATIC__SEEDS"), "[]"), ",")
		slices.Sort(seeds)
		if !slices.Equal(seeds, names) {
			t.Errorf("%s: seeds %v, want every node %v", n, seeds, names)
		}
	}
	slices.Sort(hostPorts)
	if len(slices.Compact(slices.Clone(hostPorts))) != len(nodes) {
		t.Errorf("EMQX host ports %v are not distinct", hostPorts)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(dataVolumes)))) != len(nodes) || slices.Contains(dataVolumes, "") {
		t.Errorf("EMQX data volumes %v: want one per node", dataVolumes)
	}
	// The bridge connects to the cluster: a node, or an alias every node has.
	u := envOf(p.Services["bridge"], "DROVER_MQTT_URL")
	host, _, _ := strings.Cut(strings.TrimPrefix(u, "ssl://"), ":")
	if !slices.Contains(nodes, host) && shared[host] != len(nodes) {
		t.Errorf("bridge MQTT URL %q: host %s is neither an EMQX node nor an alias of every node", u, host)
	}
	if _, ok := p.Services["bridge"].Networks["ingest"]; !ok {
		t.Error("bridge is not on ingest, where the EMQX nodes are")
	}
}

// checkNoSecretValues: in prod every password, cookie or secret variable
// names a file, except where the program reads only its environment.
func checkNoSecretValues(t *testing.T, p *types.Project) {
	t.Helper()
	envOnly := map[string]bool{
		"MINIO_NOTIFY_KAFKA_SASL_PASSWORD_DROVER": true, // MinIO reads notification credentials only from its environment
	}
	for name, s := range p.Services {
		for k, v := range s.Environment {
			words := strings.Split(strings.ToUpper(k), "_")
			secret := false
			for _, w := range words {
				secret = secret || w == "PASSWORD" || w == "COOKIE" || w == "SECRET" || w == "TOKEN"
			}
			// Settings about a secret, not the secret (GF_SECURITY_COOKIE_SECURE).
			if last := words[len(words)-1]; !secret || last == "SECURE" || last == "SAMESITE" || last == "NAME" {
				continue
			}
			up := strings.ToUpper(k)
			if strings.HasSuffix(up, "_FILE") || envOnly[k] || (v != nil && strings.HasPrefix(*v, "/run/secrets/")) {
				continue
			}
			t.Errorf("prod: service %s sets %s in the compose file; use a secret file", name, k)
		}
	}
}

// checkRegistryHTTP checks an EMQX HTTP authenticator or authorization
// source: a POST of JSON with exactly the placeholders registry/emqx reads,
// to the prod registry service's port on a network the EMQX nodes share
// with it, where it serves --emqx with a token; entrypoint.sh sets the
// source's Authorization header from the same secret the registry reads.
func checkRegistryHTTP(t *testing.T, where string, src map[string]any, path string, body map[string]string) {
	t.Helper()
	if src["backend"] != nil && src["backend"] != "http" {
		t.Errorf("%s.backend = %v, want http", where, src["backend"])
	}
	if src["method"] != "post" || src["enable"] != "true" {
		t.Errorf("%s: method %v enable %v, want post, true", where, src["method"], src["enable"])
	}
	if src["headers.content-type"] != "application/json" {
		t.Errorf("%s.headers.content-type = %v, want application/json", where, src["headers.content-type"])
	}
	for k, v := range body {
		if src["body."+k] != v {
			t.Errorf("%s.body.%s = %v, want %q", where, k, src["body."+k], v)
		}
	}
	for k := range src {
		if f, ok := strings.CutPrefix(k, "body."); ok && body[f] == "" {
			t.Errorf("%s.body.%s: not a field registry/emqx reads", where, f)
		}
	}
	u, _ := src["url"].(string)
	p := mustLoad(t, overlays(t)[3])
	reg, ok := p.Services["registry"]
	if !ok {
		t.Fatal("prod: no registry service")
	}
	addr, _ := commandFlag(reg.Command, "admin-addr")
	if want := "http://registry" + addr + path; u != want {
		t.Errorf("%s.url = %q, want %q (the registry's admin port)", where, u, want)
	}
	if _, on := commandFlag(reg.Command, "emqx"); !on {
		t.Errorf("%s: the registry does not serve %s (--emqx)", where, path)
	}
	tok, _ := commandFlag(reg.Command, "emqx-token-file")
	regSecret := mountedAt(reg, tok)
	for _, node := range emqxNodes(p) {
		s := p.Services[node]
		shared := false
		for n := range s.Networks {
			if _, ok := reg.Networks[n]; ok {
				shared = true
			}
		}
		if !shared {
			t.Errorf("%s: shares no network with the registry", node)
		}
		if got := mountedAt(s, "/run/secrets/registry_emqx_token"); got == "" || got != regSecret {
			t.Errorf("%s: registry token %q, the registry reads %q: want the same secret", node, got, regSecret)
		}
	}
	ep, err := os.ReadFile(filepath.Join("config", "emqx", "entrypoint.sh"))
	if err != nil {
		t.Fatal(err)
	}
	env := "EMQX_" + strings.ToUpper(strings.ReplaceAll(where, ".", "__")) + "__HEADERS__AUTHORIZATION"
	if !strings.Contains(string(ep), env+`="$REGISTRY_AUTH"`) || !strings.Contains(string(ep), `REGISTRY_AUTH="\"Bearer $(cat /run/secrets/registry_emqx_token)\""`) ||
		!regexp.MustCompile(`(?m)^export .*\b`+env+`\b`).Match(ep) {
		t.Errorf("entrypoint.sh does not export %s as the bearer token of registry_emqx_token", env)
	}
}
