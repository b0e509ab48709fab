package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/drover-iot/drover/backfill/schedule"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/processors/alerts"
	"github.com/drover-iot/drover/topics"
)

// overlays are the kustomizations users apply.
var overlays = []string{"overlays/dev", "overlays/staging", "overlays/prod"}

// stagePorts are the admin ports of the long-running stages (README.md),
// which every overlay runs.
var stagePorts = map[string]int32{
	"bridge": 9410, "process": 9471, "sink": 9466, "media": 9474, "schedule": 9475, "console": 9476, "registry": 9482,
}

// extraPorts are the admin ports of long-running commands an overlay may add.
var extraPorts = map[string]int32{"simulate": 9470}

// object is one rendered manifest, decoded strictly.
type object struct {
	Kind, Name string
	Obj        any
	Raw        []byte
}

// kinds maps apiVersion/kind to a constructor of its typed object; any other
// kind is an error.
var kinds = map[string]func() any{
	"v1/ServiceAccount":                      func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"v1/PersistentVolumeClaim":               func() any { return &corev1.PersistentVolumeClaim{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                    func() any { return &appsv1.StatefulSet{} },
	"batch/v1/Job":                           func() any { return &batchv1.Job{} },
	"batch/v1/CronJob":                       func() any { return &batchv1.CronJob{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return &networkingv1.NetworkPolicy{} },
}

// decodeStrict decodes one YAML manifest into its Kubernetes type; unknown
// fields, unknown kinds and trailing data are errors.
func decodeStrict(doc []byte) (object, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return object{}, fmt.Errorf("yaml: %w", err)
	}
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(js, &meta); err != nil {
		return object{}, err
	}
	mk, ok := kinds[meta.APIVersion+"/"+meta.Kind]
	if !ok {
		return object{}, fmt.Errorf("%s %q: unexpected apiVersion/kind %s/%s", meta.Kind, meta.Metadata.Name, meta.APIVersion, meta.Kind)
	}
	obj := mk()
	// sigs.k8s.io/json is what the API server decodes with: case-sensitive
	// field names, and UnmarshalStrict reports unknown and duplicate fields.
	strict, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err != nil {
		return object{}, fmt.Errorf("%s %q: %w", meta.Kind, meta.Metadata.Name, err)
	}
	if len(strict) > 0 {
		return object{}, fmt.Errorf("%s %q: %w", meta.Kind, meta.Metadata.Name, errors.Join(strict...))
	}
	return object{Kind: meta.Kind, Name: meta.Metadata.Name, Obj: obj, Raw: doc}, nil
}

var (
	renderMu    sync.Mutex
	renderCache = map[string][]object{}
)

// render builds a kustomization with krusty and decodes every object.
func render(t *testing.T, dir string) []object {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if objs, ok := renderCache[dir]; ok {
		return objs
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []object
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		o, err := decodeStrict(doc)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		objs = append(objs, o)
	}
	renderCache[dir] = objs
	return objs
}

func TestOverlaysBuildAndDecodeStrictly(t *testing.T) {
	for _, dir := range append([]string{"base"}, overlays...) {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			count := map[string]int{}
			for _, o := range objs {
				count[o.Kind]++
				if o.Kind == "Secret" {
					t.Errorf("%s renders Secret %s: only references to secrets belong here", dir, o.Name)
				}
			}
			want := map[string]int{"Deployment": 6, "StatefulSet": 1, "Job": 3, "CronJob": 2,
				"HorizontalPodAutoscaler": 2, "PodDisruptionBudget": 4, "NetworkPolicy": 6, "Service": 8}
			if dir == "overlays/dev" { // plus the simulator
				want["Deployment"]++
				want["Service"]++
				want["NetworkPolicy"]++
			}
			for k, n := range want {
				if count[k] != n {
					t.Errorf("%s: %d %s objects, want %d", dir, count[k], k, n)
				}
			}
		})
	}
}

// TestDecodeStrictRejects decodes each testdata/*.bad.yaml, whose first
// line "# error: ..." names the error it must produce.
func TestDecodeStrictRejects(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.bad.yaml: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			doc, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(doc), "\n")
			wantErr, ok := strings.CutPrefix(first, "# error: ")
			if !ok {
				t.Fatalf("first line %q: want \"# error: <substring>\"", first)
			}
			_, err = decodeStrict(doc)
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("err = %v, want containing %q", err, wantErr)
			}
		})
	}
	if _, err := decodeStrict([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n")); err != nil {
		t.Fatalf("valid ConfigMap: %v", err)
	}
}

// workload is a pod template with where it came from.
type workload struct {
	Kind, Name string
	Pod        *corev1.PodSpec
	Labels     map[string]string
}

func workloads(objs []object) []workload {
	var ws []workload
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *appsv1.Deployment:
			ws = append(ws, workload{o.Kind, o.Name, &v.Spec.Template.Spec, v.Spec.Template.Labels})
		case *appsv1.StatefulSet:
			ws = append(ws, workload{o.Kind, o.Name, &v.Spec.Template.Spec, v.Spec.Template.Labels})
		case *batchv1.Job:
			ws = append(ws, workload{o.Kind, o.Name, &v.Spec.Template.Spec, v.Spec.Template.Labels})
		case *batchv1.CronJob:
			ws = append(ws, workload{o.Kind, o.Name, &v.Spec.JobTemplate.Spec.Template.Spec, v.Spec.JobTemplate.Spec.Template.Labels})
		}
	}
	return ws
}

func configMaps(objs []object) map[string]*corev1.ConfigMap {
	m := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		if cm, ok := o.Obj.(*corev1.ConfigMap); ok {
			m[cm.Name] = cm
		}
	}
	return m
}

var (
	droverOnce sync.Once
	droverBin  string
	droverErr  error
	helpMu     sync.Mutex
	helpCache  = map[string]string{}
)

// drover builds the real binary once per test process.
func drover(t *testing.T) string {
	t.Helper()
	droverOnce.Do(func() {
		dir, err := os.MkdirTemp("", "drover-deploy-test")
		if err != nil {
			droverErr = err
			return
		}
		droverBin, droverErr = devtest.BuildDrover(dir)
	})
	if droverErr != nil {
		t.Fatal(droverErr)
	}
	return droverBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if droverBin != "" {
		os.RemoveAll(filepath.Dir(droverBin))
	}
	os.Exit(code)
}

// help runs `drover <sub...> --help` in an empty environment and returns its
// output; the command must exist (exit 0, its own usage line).
func help(t *testing.T, sub []string) string {
	t.Helper()
	key := strings.Join(sub, " ")
	helpMu.Lock()
	defer helpMu.Unlock()
	if h, ok := helpCache[key]; ok {
		return h
	}
	cmd := exec.Command(drover(t), append(slices.Clone(sub), "--help")...)
	cmd.Env = []string{"HOME=" + t.TempDir(), "DROVER_DEV_ENV="}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("drover %s --help: %v\n%s", key, err, out)
	}
	if !strings.Contains(string(out), "Usage:\n  drover "+key+" ") {
		t.Fatalf("drover %s --help is not that command's help (no such subcommand?):\n%s", key, out)
	}
	helpCache[key] = string(out)
	return string(out)
}

var flagRE = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)(?: ([a-zA-Z0-9]+))?(?:\s{2,}|$)`)

// flagInfo is one flag of a help text: its pflag type ("" for bool) and
// default.
type flagInfo struct{ Type, Default string }

// helpFlags returns the flags of a help text.
func helpFlags(h string) map[string]flagInfo {
	flags := map[string]flagInfo{}
	for _, line := range strings.Split(h, "\n") {
		m := flagRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		fi := flagInfo{Type: m[2]}
		if i := strings.LastIndex(line, `(default "`); i >= 0 {
			fi.Default = strings.TrimSuffix(line[i+len(`(default "`):], `")`)
		}
		flags[m[1]] = fi
	}
	return flags
}

// checkValue parses a flag value as its pflag type does.
func checkValue(typ, val string) error {
	var err error
	switch typ {
	case "":
		_, err = strconv.ParseBool(val)
	case "int", "int16", "int32", "int64":
		_, err = strconv.ParseInt(val, 10, 64)
	case "float":
		_, err = strconv.ParseFloat(val, 64)
	case "duration":
		_, err = time.ParseDuration(val)
	case "durationSlice":
		for _, v := range strings.Split(val, ",") {
			if _, err = time.ParseDuration(v); err != nil {
				break
			}
		}
	}
	return err
}

func TestHelpFlagsAndValues(t *testing.T) {
	h := "Flags:\n      --admin-addr string   listen (default \":9410\")\n      --downlink            publish (default true)\n  -h, --help                help\n      --workers int         workers\n"
	got := helpFlags(h)
	want := map[string]flagInfo{"admin-addr": {"string", ":9410"}, "downlink": {"", ""}, "help": {"", ""}, "workers": {"int", ""}}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("helpFlags[%s] = %+v, want %+v", k, got[k], v)
		}
	}
	tests := []struct {
		name, typ, val, wantErr string
	}{
		{"bool", "", "true", ""},
		{"bad bool", "", "yes please", "invalid syntax"},
		{"int", "int16", "3", ""},
		{"bad int", "int", "three", "invalid syntax"},
		{"duration", "duration", "30s", ""},
		{"bad duration", "duration", "30", "missing unit"},
		{"duration slice", "durationSlice", "1m,1h", ""},
		{"bad duration slice", "durationSlice", "1m,x", "invalid duration"},
		{"string", "string", "anything", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkValue(tt.typ, tt.val)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// splitArgs separates the subcommand words from the flags (name → value).
func splitArgs(args []string) (sub []string, flags map[string]string, err error) {
	flags = map[string]string{}
	i := 0
	for ; i < len(args) && !strings.HasPrefix(args[i], "-"); i++ {
		sub = append(sub, args[i])
	}
	for ; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			return nil, nil, fmt.Errorf("argument %q: want --flag or --flag=value (positional arguments only before the flags)", a)
		}
		name, val, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok {
			val = "true"
		}
		flags[name] = val
	}
	if len(sub) == 0 {
		return nil, nil, fmt.Errorf("no subcommand in %q", args)
	}
	return sub, flags, nil
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantSub string
		wantErr string
	}{
		{"flags with values", []string{"bridge", "--admin-addr=:9410", "--downlink"}, "bridge", ""},
		{"nested subcommand", []string{"topics", "apply", "--dry-run"}, "topics apply", ""},
		{"no subcommand", []string{"--help"}, "", "no subcommand"},
		{"separate value", []string{"sink", "--group", "x"}, "", `argument "x"`},
		{"short flag", []string{"sink", "-h"}, "", `argument "-h"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, _, err := splitArgs(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || strings.Join(sub, " ") != tt.wantSub {
				t.Fatalf("sub = %q, err = %v; want %q", sub, err, tt.wantSub)
			}
		})
	}
}

// TestIntegrationContainersRunRealCommands execs the built binary: every
// container's args are a real subcommand with real flags, and every DROVER_*
// variable it gets is bound to one of its flags.
func TestIntegrationContainersRunRealCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the drover binary")
	}
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			cms := configMaps(objs)
			used := map[string]map[string]bool{} // ConfigMap → env names some user binds
			for _, w := range workloads(objs) {
				for _, c := range append(slices.Clone(w.Pod.InitContainers), w.Pod.Containers...) {
					where := fmt.Sprintf("%s %s container %s", w.Kind, w.Name, c.Name)
					if len(c.Command) > 0 {
						t.Errorf("%s: sets command %q; the image's entrypoint is drover, use args", where, c.Command)
					}
					sub, flags, err := splitArgs(c.Args)
					if err != nil {
						t.Errorf("%s: %v", where, err)
						continue
					}
					known := helpFlags(help(t, sub))
					for f, v := range flags {
						fi, ok := known[f]
						if !ok {
							t.Errorf("%s: drover %s has no flag --%s", where, strings.Join(sub, " "), f)
						} else if err := checkValue(fi.Type, v); err != nil {
							t.Errorf("%s: --%s=%s: %v", where, f, v, err)
						}
					}
					for _, e := range c.Env {
						if !strings.HasPrefix(e.Name, "DROVER_") {
							continue
						}
						fi, ok := known[flagOfEnv(e.Name)]
						if !ok {
							t.Errorf("%s: env %s binds no flag of drover %s", where, e.Name, strings.Join(sub, " "))
						} else if e.ValueFrom == nil {
							if err := checkValue(fi.Type, e.Value); err != nil {
								t.Errorf("%s: env %s=%s: %v", where, e.Name, e.Value, err)
							}
						}
					}
					for _, ef := range c.EnvFrom {
						if ef.ConfigMapRef == nil {
							continue
						}
						cm, ok := cms[ef.ConfigMapRef.Name]
						if !ok {
							t.Errorf("%s: envFrom ConfigMap %s is not rendered", where, ef.ConfigMapRef.Name)
							continue
						}
						if used[cm.Name] == nil {
							used[cm.Name] = map[string]bool{}
						}
						for k, v := range cm.Data {
							if fi, ok := known[flagOfEnv(k)]; ok {
								used[cm.Name][k] = true
								if err := checkValue(fi.Type, v); err != nil {
									t.Errorf("ConfigMap %s: %s=%s: %v", cm.Name, k, v, err)
								}
							}
						}
					}
				}
			}
			for name, keys := range used {
				for k := range cms[name].Data {
					if !keys[k] {
						t.Errorf("ConfigMap %s: %s binds no flag of any command that reads it", name, k)
					}
				}
			}
		})
	}
}

func flagOfEnv(env string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(env, "DROVER_"), "_", "-"))
}

// TestIntegrationProbesUseRealAdminPorts checks every long-running stage:
// liveness /healthz and readiness /readyz on the container port that
// --admin-addr listens on, which is the stage's real default admin port, and
// a metrics Service scraping that port.
func TestIntegrationProbesUseRealAdminPorts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the drover binary")
	}
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			seen := map[string]bool{}
			for _, w := range workloads(objs) {
				if w.Kind != "Deployment" && w.Kind != "StatefulSet" {
					continue
				}
				for _, c := range w.Pod.Containers {
					where := fmt.Sprintf("%s %s container %s", w.Kind, w.Name, c.Name)
					sub, flags, err := splitArgs(c.Args)
					if err != nil {
						t.Fatalf("%s: %v", where, err)
					}
					stage := strings.Join(sub, " ")
					want, ok := stagePorts[stage]
					if !ok {
						want, ok = extraPorts[stage]
					}
					if !ok {
						t.Errorf("%s: %q is not a long-running stage", where, stage)
						continue
					}
					seen[stage] = true
					// The default is the port on every interface, or on loopback
					// (drover registry, whose admin port serves its API).
					if def := helpFlags(help(t, sub))["admin-addr"].Default; def != fmt.Sprintf(":%d", want) && def != fmt.Sprintf("127.0.0.1:%d", want) {
						t.Errorf("%s: drover %s --admin-addr defaults to %q, README says :%d", where, stage, def, want)
					}
					addr, ok := flags["admin-addr"]
					if !ok {
						t.Errorf("%s: no --admin-addr", where)
						continue
					}
					_, portStr, _ := strings.Cut(addr, ":")
					port, err := strconv.Atoi(portStr)
					if err != nil || int32(port) != want {
						t.Errorf("%s: --admin-addr=%s, want :%d", where, addr, want)
					}
					for _, p := range []struct {
						name, path string
						probe      *corev1.Probe
					}{{"liveness", "/healthz", c.LivenessProbe}, {"readiness", "/readyz", c.ReadinessProbe}} {
						if p.probe == nil || p.probe.HTTPGet == nil {
							t.Errorf("%s: no HTTP %s probe", where, p.name)
							continue
						}
						if p.probe.HTTPGet.Path != p.path {
							t.Errorf("%s: %s probe path %q, want %q", where, p.name, p.probe.HTTPGet.Path, p.path)
						}
						if got := containerPort(c, p.probe.HTTPGet.Port); got != want {
							t.Errorf("%s: %s probe port %s resolves to %d, want %d", where, p.name, p.probe.HTTPGet.Port.String(), got, want)
						}
					}
					checkMetricsService(t, objs, w, c, want)
				}
			}
			for stage := range stagePorts {
				if !seen[stage] {
					t.Errorf("no workload runs drover %s", stage)
				}
			}
		})
	}
}

func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return -1
}

func checkMetricsService(t *testing.T, objs []object, w workload, c corev1.Container, port int32) {
	t.Helper()
	for _, o := range objs {
		svc, ok := o.Obj.(*corev1.Service)
		if !ok || len(svc.Spec.Selector) == 0 || !selects(svc.Spec.Selector, w.Labels) {
			continue
		}
		if svc.Annotations["prometheus.io/scrape"] != "true" || svc.Annotations["prometheus.io/port"] != strconv.Itoa(int(port)) {
			t.Errorf("Service %s: prometheus annotations %v, want scrape on %d", svc.Name, svc.Annotations, port)
		}
		for _, sp := range svc.Spec.Ports {
			if got := containerPort(c, sp.TargetPort); got != port {
				t.Errorf("Service %s: targetPort %s resolves to %d, want %d", svc.Name, sp.TargetPort.String(), got, port)
			}
		}
		return
	}
	t.Errorf("%s %s: no metrics Service selects its pods", w.Kind, w.Name)
}

func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestPodsAreHardened: non-root, read-only root filesystem, no privilege
// escalation, every capability dropped, resource requests and a memory
// limit, no service account token.
func TestPodsAreHardened(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			for _, w := range workloads(render(t, dir)) {
				ps := w.Pod.SecurityContext
				if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
					t.Errorf("%s %s: pod does not set runAsNonRoot", w.Kind, w.Name)
				}
				if w.Pod.AutomountServiceAccountToken == nil || *w.Pod.AutomountServiceAccountToken {
					t.Errorf("%s %s: mounts a service account token", w.Kind, w.Name)
				}
				for _, c := range w.Pod.Containers {
					where := fmt.Sprintf("%s %s container %s", w.Kind, w.Name, c.Name)
					sc := c.SecurityContext
					switch {
					case sc == nil:
						t.Errorf("%s: no securityContext", where)
						continue
					case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
						t.Errorf("%s: root filesystem not read-only", where)
					case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
						t.Errorf("%s: allows privilege escalation", where)
					case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
						t.Errorf("%s: does not drop ALL capabilities", where)
					}
					if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
						t.Errorf("%s: wants cpu and memory requests and a memory limit, has %v", where, c.Resources)
					}
				}
			}
		})
	}
}

// TestFilesAreMounted: every file path a container is given (flag values and
// DROVER_*_FILE / path-valued variables, also from its ConfigMaps) lies
// under one of its volume mounts, and every ConfigMap or Secret volume names
// keys that a rendered ConfigMap has.
func TestFilesAreMounted(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			cms := configMaps(objs)
			for _, w := range workloads(objs) {
				vols := map[string]corev1.Volume{}
				for _, v := range w.Pod.Volumes {
					vols[v.Name] = v
					if v.ConfigMap != nil {
						cm, ok := cms[v.ConfigMap.Name]
						if !ok {
							t.Errorf("%s %s: volume %s: ConfigMap %s is not rendered", w.Kind, w.Name, v.Name, v.ConfigMap.Name)
						}
						for _, it := range v.ConfigMap.Items {
							if _, ok := cm.Data[it.Key]; !ok && cm != nil {
								t.Errorf("%s %s: volume %s: ConfigMap %s has no key %s", w.Kind, w.Name, v.Name, cm.Name, it.Key)
							}
						}
					}
				}
				for _, c := range w.Pod.Containers {
					where := fmt.Sprintf("%s %s container %s", w.Kind, w.Name, c.Name)
					var paths []string
					_, flags, _ := splitArgs(c.Args)
					for _, v := range flags {
						if strings.HasPrefix(v, "/") {
							paths = append(paths, v)
						}
					}
					for _, e := range c.Env {
						if strings.HasPrefix(e.Value, "/") {
							paths = append(paths, e.Value)
						}
					}
					for _, ef := range c.EnvFrom {
						if ef.ConfigMapRef == nil || cms[ef.ConfigMapRef.Name] == nil {
							continue
						}
						for _, v := range cms[ef.ConfigMapRef.Name].Data {
							if strings.HasPrefix(v, "/") {
								paths = append(paths, v)
							}
						}
					}
					for _, p := range paths {
						if !mounted(c, vols, p) {
							t.Errorf("%s: %s lies under no volume mount (the root filesystem is read-only)", where, p)
						}
					}
				}
			}
		})
	}
}

// mounted reports whether path lies under a mount of c; for ConfigMap and
// Secret volumes with items, the file must be one of the items.
func mounted(c corev1.Container, vols map[string]corev1.Volume, path string) bool {
	for _, m := range c.VolumeMounts {
		if path == strings.TrimSuffix(m.MountPath, "/") {
			return true
		}
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		v := vols[m.Name]
		var items []corev1.KeyToPath
		switch {
		case v.ConfigMap != nil:
			items = v.ConfigMap.Items
		case v.Secret != nil:
			items = v.Secret.Items
		default:
			return true
		}
		if len(items) == 0 {
			return true
		}
		for _, it := range items {
			if it.Path == rel {
				return true
			}
		}
	}
	return false
}

// TestConfigMapsParse runs the ConfigMaps' files through drover's own
// parsers, and checks routes and rules are the embedded defaults.
func TestConfigMapsParse(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			cms := configMaps(render(t, dir))
			for _, c := range []struct {
				cm, key string
				parse   func(name string, b []byte) error
			}{
				{"drover-routes", "routes.yaml", func(n string, b []byte) error { _, err := routes.Parse(n, b); return err }},
				{"drover-rules", "rules.yaml", func(n string, b []byte) error { _, err := alerts.ParseRules(n, b); return err }},
				{"drover-jobs", "jobs.yaml", func(n string, b []byte) error { _, err := schedule.Parse(n, b); return err }},
			} {
				cm, ok := findConfigMap(cms, c.cm)
				if !ok {
					t.Errorf("no ConfigMap %s", c.cm)
					continue
				}
				data, ok := cm.Data[c.key]
				if !ok {
					t.Errorf("ConfigMap %s has no %s", cm.Name, c.key)
					continue
				}
				if err := c.parse(cm.Name+"/"+c.key, []byte(data)); err != nil {
					t.Errorf("ConfigMap %s: %v", cm.Name, err)
				}
			}
		})
	}
	routesYAML, err := os.ReadFile("base/config/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(routesYAML, routes.DefaultYAML()) {
		t.Errorf("base/config/routes.yaml differs from the bridge's embedded routes: regenerate with drover bridge --print-routes > deploy/base/config/routes.yaml")
	}
	rules, err := os.ReadFile("base/config/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rules, alerts.DefaultRulesYAML()) {
		t.Errorf("base/config/rules.yaml differs from the embedded alert rules: regenerate with drover alerts rules --defaults > deploy/base/config/rules.yaml")
	}
}

// findConfigMap finds a generated ConfigMap by its name before the hash.
func findConfigMap(cms map[string]*corev1.ConfigMap, prefix string) (*corev1.ConfigMap, bool) {
	for name, cm := range cms {
		if name == prefix || strings.HasPrefix(name, prefix+"-") && !strings.Contains(strings.TrimPrefix(name, prefix+"-"), "-") {
			return cm, true
		}
	}
	return nil, false
}

func TestParsersRejectBadConfigMaps(t *testing.T) {
	tests := []struct {
		name, wantErr string
		parse         func() error
	}{
		{"jobs unknown window", "window", func() error {
			_, err := schedule.Parse("jobs.yaml", []byte("jobs:\n  - name: x\n    schedule: \"5 * * * *\"\n    type: backfill-media\n    window: lastweek\n"))
			return err
		}},
		{"jobs unknown key", "field", func() error {
			_, err := schedule.Parse("jobs.yaml", []byte("jobs:\n  - name: x\n    shedule: \"5 * * * *\"\n"))
			return err
		}},
		{"rules not yaml", "rules.yaml", func() error { _, err := alerts.ParseRules("rules.yaml", []byte("rules: [")); return err }},
		{"routes not yaml", "routes.yaml", func() error { _, err := routes.Parse("routes.yaml", []byte("routes: {")); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.parse()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestScalingAndTargets: PDBs, HPAs and Services select existing pods; the
// processors' HPA stops at the partition count of their inputs.
func TestScalingAndTargets(t *testing.T) {
	cat, err := topics.Default()
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := cat.Lookup(topics.RawSensor)
	if !ok {
		t.Fatalf("catalogue has no %s", topics.RawSensor)
	}
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			ws := workloads(objs)
			selectsSome := func(sel map[string]string) bool {
				for _, w := range ws {
					if (w.Kind == "Deployment" || w.Kind == "StatefulSet") && selects(sel, w.Labels) {
						return true
					}
				}
				return false
			}
			hpas := 0
			for _, o := range objs {
				switch v := o.Obj.(type) {
				case *policyv1.PodDisruptionBudget:
					if v.Spec.Selector == nil || !selectsSome(v.Spec.Selector.MatchLabels) {
						t.Errorf("PodDisruptionBudget %s selects no workload", v.Name)
					}
				case *corev1.Service:
					if !selectsSome(v.Spec.Selector) {
						t.Errorf("Service %s selects no workload", v.Name)
					}
				case *autoscalingv2.HorizontalPodAutoscaler:
					hpas++
					ref := v.Spec.ScaleTargetRef
					found := false
					for _, w := range ws {
						if w.Kind == ref.Kind && w.Name == ref.Name {
							found = true
						}
					}
					if !found {
						t.Errorf("HorizontalPodAutoscaler %s targets missing %s %s", v.Name, ref.Kind, ref.Name)
					}
					if v.Spec.MinReplicas == nil || *v.Spec.MinReplicas > v.Spec.MaxReplicas {
						t.Errorf("HorizontalPodAutoscaler %s: minReplicas %v > maxReplicas %d", v.Name, v.Spec.MinReplicas, v.Spec.MaxReplicas)
					}
					for _, o := range objs {
						if o.Kind == ref.Kind && o.Name == ref.Name && specReplicas(o) != nil {
							t.Errorf("%s %s sets spec.replicas although HorizontalPodAutoscaler %s owns it (kubectl apply would reset it)", ref.Kind, ref.Name, v.Name)
						}
					}
					if ref.Name == "drover-process" && v.Spec.MaxReplicas > raw.Partitions {
						t.Errorf("HorizontalPodAutoscaler %s: maxReplicas %d above the %d partitions of %s", v.Name, v.Spec.MaxReplicas, raw.Partitions, raw.Name)
					}
				}
			}
			if hpas != 2 {
				t.Errorf("%d HorizontalPodAutoscalers, want 2 (bridge, process)", hpas)
			}
		})
	}
}

// TestOverlaySettings checks what distinguishes the overlays.
func TestOverlaySettings(t *testing.T) {
	env := func(objs []object, workload, name string) string {
		for _, w := range workloads(objs) {
			if w.Name != workload {
				continue
			}
			for _, e := range w.Pod.Containers[0].Env {
				if e.Name == name {
					return e.Value
				}
			}
		}
		return "<unset>"
	}
	endpoint := func(objs []object, key string) string {
		cm, _ := findConfigMap(configMaps(objs), "drover-endpoints")
		if cm == nil {
			return "<no ConfigMap>"
		}
		return cm.Data[key]
	}
	tests := []struct {
		name, dir, workload, env, want string
		fromConfigMap                  bool
	}{
		{"dev caps replication", "overlays/dev", "drover-topics-apply", "DROVER_REPLICATION_CAP", "1", false},
		{"dev single-broker tables", "overlays/dev", "drover-process", "DROVER_TABLE_REPLICATION", "1", false},
		{"dev debug logs", "overlays/dev", "", "DROVER_LOG_LEVEL", "debug", true},
		{"staging full replication", "overlays/staging", "drover-topics-apply", "DROVER_REPLICATION_CAP", "0", false},
		{"staging kafka tls", "overlays/staging", "", "DROVER_KAFKA_TLS_CA", "/var/run/secrets/drover/kafka-ca/ca.crt", true},
		{"prod full replication", "overlays/prod", "drover-topics-apply", "DROVER_REPLICATION_CAP", "0", false},
		{"prod tables replicated", "overlays/prod", "drover-process", "DROVER_TABLE_REPLICATION", "3", false},
		{"prod kafka tls", "overlays/prod", "", "DROVER_KAFKA_TLS_CA", "/var/run/secrets/drover/kafka-ca/ca.crt", true},
		{"prod kafka sasl", "overlays/prod", "", "DROVER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", true},
		{"staging kafka sasl", "overlays/staging", "", "DROVER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", true},
		{"prod bridge principal", "overlays/prod", "drover-bridge", "DROVER_KAFKA_SASL_USER", "drover-bridge", false},
		{"prod sasl password file", "overlays/prod", "drover-sink", "DROVER_KAFKA_SASL_PASSWORD_FILE", "/var/run/secrets/drover/kafka-user/password", false},
		{"prod topics-apply applies ACLs", "overlays/prod", "drover-topics-apply", "DROVER_ACLS", "true", false},
		{"staging sink principal", "overlays/staging", "drover-sink", "DROVER_KAFKA_SASL_USER", "drover-sink", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := render(t, tt.dir)
			got := ""
			if tt.fromConfigMap {
				got = endpoint(objs, tt.env)
			} else {
				got = env(objs, tt.workload, tt.env)
			}
			if got != tt.want {
				t.Fatalf("%s %s = %q, want %q", tt.workload, tt.env, got, tt.want)
			}
		})
	}
	// dev runs one replica of everything: a fixed count of 1 (nil is 1), or
	// an HPA starting at 1.
	devObjs := render(t, "overlays/dev")
	minReplicas := map[string]int32{}
	for _, o := range devObjs {
		if h, ok := o.Obj.(*autoscalingv2.HorizontalPodAutoscaler); ok && h.Spec.MinReplicas != nil {
			minReplicas[h.Spec.ScaleTargetRef.Name] = *h.Spec.MinReplicas
		}
	}
	for _, o := range devObjs {
		if o.Kind != "Deployment" && o.Kind != "StatefulSet" {
			continue
		}
		r := specReplicas(o)
		n := int32(1)
		if r != nil {
			n = *r
		}
		if m, ok := minReplicas[o.Name]; ok && r == nil {
			n = m
		}
		if n != 1 {
			t.Errorf("dev: %s runs %d replicas, want 1", o.Name, n)
		}
	}
}

// specReplicas returns the replicas field of a Deployment or StatefulSet.
func specReplicas(o object) *int32 {
	switch v := o.Obj.(type) {
	case *appsv1.Deployment:
		return v.Spec.Replicas
	case *appsv1.StatefulSet:
		return v.Spec.Replicas
	}
	return nil
}

// TestCronJobsAndNetworkPolicies: CronJob schedules and time zones parse;
// the metrics NetworkPolicy admits every stage's admin port, and every pod
// falls under the default-deny policy.
func TestCronJobsAndNetworkPolicies(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			ports := map[int32]bool{}
			var denyAll *networkingv1.NetworkPolicy
			for _, o := range objs {
				switch v := o.Obj.(type) {
				case *batchv1.CronJob:
					if _, err := cron.ParseStandard(v.Spec.Schedule); err != nil {
						t.Errorf("CronJob %s: schedule %q: %v", v.Name, v.Spec.Schedule, err)
					}
					if v.Spec.TimeZone != nil {
						if _, err := time.LoadLocation(*v.Spec.TimeZone); err != nil {
							t.Errorf("CronJob %s: timeZone: %v", v.Name, err)
						}
					}
					if v.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
						t.Errorf("CronJob %s: concurrencyPolicy %q, want Forbid", v.Name, v.Spec.ConcurrencyPolicy)
					}
				case *networkingv1.NetworkPolicy:
					if len(v.Spec.Ingress) == 0 && len(v.Spec.Egress) == 0 && len(v.Spec.PolicyTypes) == 2 {
						denyAll = v
					}
					for _, in := range v.Spec.Ingress {
						for _, p := range in.Ports {
							if p.Port != nil {
								ports[p.Port.IntVal] = true
							}
						}
					}
				}
			}
			for _, o := range objs {
				if d, ok := o.Obj.(*appsv1.Deployment); ok && d.Labels["app.kubernetes.io/component"] == "simulate" {
					if !ports[extraPorts["simulate"]] {
						t.Errorf("no NetworkPolicy admits simulate's admin port %d", extraPorts["simulate"])
					}
				}
			}
			for stage, p := range stagePorts {
				if !ports[p] {
					t.Errorf("no NetworkPolicy admits %s's admin port %d", stage, p)
				}
			}
			if denyAll == nil {
				t.Fatal("no default-deny NetworkPolicy")
			}
			for _, w := range workloads(objs) {
				if !selects(denyAll.Spec.PodSelector.MatchLabels, w.Labels) {
					t.Errorf("%s %s: pods not covered by NetworkPolicy %s", w.Kind, w.Name, denyAll.Name)
				}
			}
		})
	}
}

// TestSecretsAreDocumented: every Secret a pod references (env or volume) is
// listed in README.md's secrets table with the keys used, so operators know
// what to create before applying.
func TestSecretsAreDocumented(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `(drover-[a-z0-9-]+)` \\|")
	documented := map[string]string{} // secret → its table row
	for _, line := range strings.Split(string(readme), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			documented[m[1]] = line
		}
	}
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			refs := map[string][]string{} // secret → keys
			for _, w := range workloads(render(t, dir)) {
				for _, v := range w.Pod.Volumes {
					if v.Secret != nil {
						for _, it := range v.Secret.Items {
							refs[v.Secret.SecretName] = append(refs[v.Secret.SecretName], it.Key)
						}
					}
				}
				for _, c := range w.Pod.Containers {
					for _, e := range c.Env {
						if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
							r := e.ValueFrom.SecretKeyRef
							refs[r.Name] = append(refs[r.Name], r.Key)
						}
					}
				}
			}
			if len(refs) == 0 {
				t.Fatal("no Secret references at all")
			}
			for name, keys := range refs {
				line, ok := documented[name]
				if !ok {
					t.Errorf("Secret %s is referenced but not in README.md's secrets table", name)
					continue
				}
				for _, k := range keys {
					if !strings.Contains(line, "`"+k+"`") {
						t.Errorf("Secret %s: key %s is used but README.md's row does not name it: %s", name, k, line)
					}
				}
			}
		})
	}
}
