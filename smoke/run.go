package smoke

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/bridge/simulate"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// ErrFailed is returned by Run when at least one check failed.
var ErrFailed = errors.New("smoke checks failed")

// reachWait bounds each endpoint's reachability probe.
const reachWait = 10 * time.Second

// plan is what one run publishes and expects.
type plan struct {
	run      string
	tenant   string
	dev      string            // fixture device
	wildfi   string            // the fixture device as a WildFi collar
	fever    string            // temperature series device
	offline  string            // heartbeat-once device
	camera   string            // S3 object device
	edge     string            // Sparkplug B edge node
	http     string            // the HTTP door's device
	coap     string            // the CoAP door's device
	lora     string            // the LoRaWAN device (webhook of the HTTP door)
	loraEUI  string            // its DevEUI
	ctl      string            // the control channel's device (a command, a shadow delta)
	secrets  map[string]string // device → registry secret, when the run registered them
	devices  []string
	now      time.Time
	base     time.Time // start of the fever series, a minute boundary
	fixtures []simulate.Fixture
	msgs     []message
	objKey   string
}

// Fever series: a reading every 30 s from base; above the threshold for
// feverHigh readings, then below the hysteresis band.
const (
	feverStep   = 30 * time.Second
	feverHigh   = 24 // 12 minutes above 39.5 °C
	feverLow    = 6
	feverValueA = 40.0
	feverValueB = 40.2
	feverNormal = 38.5
)

func newPlan(c Config) *plan {
	now := c.Now().UTC()
	p := &plan{run: c.RunID, tenant: c.Tenant, now: now}
	prefix := "smoke-" + c.RunID
	p.dev, p.fever, p.offline, p.camera = prefix+"-dev", prefix+"-fever", prefix+"-offline", prefix+"-cam"
	p.wildfi, p.edge, p.http, p.ctl = "wildfi-"+p.dev, prefix+"-edge", prefix+"-http", prefix+"-ctl"
	p.coap, p.lora, p.loraEUI = prefix+"-coap", prefix+"-lora", devEUI(c.Tenant, c.RunID)
	p.devices = []string{p.dev, p.wildfi, p.fever, p.offline, p.camera, p.edge, p.http, p.coap, p.lora, p.ctl}
	p.base = now.Truncate(time.Minute).Add(-30 * time.Minute)
	p.fixtures = simulate.FixturesAt(now, c.Tenant, p.dev)
	for _, f := range p.fixtures {
		p.msgs = append(p.msgs, message{Name: f.Name, Topic: f.Topic, Payload: f.Payload})
	}
	for k := 0; k < feverHigh+feverLow; k++ {
		v := feverValueA
		if k%2 == 1 {
			v = feverValueB
		}
		if k >= feverHigh {
			v = feverNormal
		}
		ts := p.base.Add(time.Duration(k) * feverStep)
		p.msgs = append(p.msgs, message{
			Name:    "fever/" + strconv.Itoa(k),
			Topic:   "devices/" + c.Tenant + "/" + p.fever + "/sensor",
			Payload: fmt.Appendf(nil, `{"ts":%d,"metric":"temperature","value":%g,"unit":"Cel"}`, ts.UnixMilli(), v),
		})
	}
	p.msgs = append(p.msgs, message{
		Name:    "offline/heartbeat",
		Topic:   "devices/" + c.Tenant + "/" + p.offline + "/heartbeat",
		Payload: fmt.Appendf(nil, `{"ts":%d,"battery":66.0}`, now.UnixMilli()),
	})
	p.msgs = append(p.msgs, sparkplugMessages(c.Tenant, p.edge, now)...)
	p.objKey = fmt.Sprintf("image2d/%s/%s/%s/smoke-%s.jpg", c.Tenant, p.camera, now.Format("2006/01/02"), c.RunID)
	return p
}

func (p *plan) isDevice(id string) bool {
	for _, d := range p.devices {
		if d == id {
			return true
		}
	}
	return false
}

// keep decides whether a Kafka record belongs to this run.
func (p *plan) keep(r *record) bool {
	if r.Headers["mqtt.user."+PropRun] == p.run {
		return true
	}
	return p.isDevice(identity.DeviceOf(r.Key)) || p.isDevice(deviceOf(r.Value)) // keys are TENANT/DEVICE
}

func deviceOf(v any) string {
	switch x := v.(type) {
	case *schemas.SensorReading:
		return x.DeviceID
	case *schemas.GPSFix:
		return x.DeviceID
	case *schemas.MediaObject:
		return x.DeviceID
	case *schemas.Feature:
		return x.DeviceID
	case *schemas.Alert:
		return x.DeviceID
	case *schemas.DeviceState:
		return x.DeviceID
	case *schemas.DeadLetter:
		if x.DeviceID != nil {
			return *x.DeviceID
		}
	}
	return ""
}

// Run runs the smoke suite against the stack in c, printing the checklist to
// out as it goes. It returns ErrFailed (wrapped) when a check failed, or
// another error when the run could not go on (an unreachable endpoint); the
// checklist printed so far stands in both cases.
func Run(ctx context.Context, c Config, out io.Writer, log *slog.Logger) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c = c.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cl := NewChecklist(out)
	p := newPlan(c)
	fmt.Fprintf(out, "smoke run %s: tenant %s, devices %s\n", p.run, p.tenant, strings.Join(p.devices, ", "))
	err := run(ctx, parent, c, p, cl, log)
	cl.Summary()
	if err != nil {
		return err
	}
	if failed := cl.Failed(); len(failed) > 0 {
		return fmt.Errorf("%w: %s", ErrFailed, strings.Join(failed, "; "))
	}
	return nil
}

// run does the work of Run. ctx carries the run's deadline; parent outlives
// it (until SIGTERM), so that the checks still evaluated after the deadline
// can read Kafka and query the database and report what they see.
func run(ctx, parent context.Context, c Config, p *plan, cl *Checklist, log *slog.Logger) error {
	// Reachability first: fail fast naming the endpoint.
	reg, err := sr.NewClient(sr.URLs(c.SchemaRegistryURL))
	if err != nil {
		return reach(cl, "schema registry "+c.SchemaRegistryURL, err)
	}
	rctx, rcancel := context.WithTimeout(ctx, reachWait)
	subjects, err := reg.Subjects(rctx)
	rcancel()
	if err != nil {
		return reach(cl, "schema registry "+c.SchemaRegistryURL, err)
	}
	cl.Add(Result{Name: "reach schema registry " + c.SchemaRegistryURL, Status: Pass})

	serde, err := schemas.NewSerde(reg)
	if err != nil {
		return err
	}
	col, err := startCollector(parent, c.KafkaBrokers, serde, p.keep)
	if err != nil {
		return reach(cl, "kafka "+strings.Join(c.KafkaBrokers, ","), err)
	}
	defer col.close()
	cl.Add(Result{Name: "reach kafka " + strings.Join(c.KafkaBrokers, ","), Status: Pass})

	pctx, pcancel := context.WithTimeout(ctx, reachWait)
	db, err := pgx.Connect(pctx, c.DatabaseURL)
	pcancel()
	if err != nil {
		return reach(cl, "database "+redact(c.DatabaseURL), err)
	}
	defer func() { _ = db.Close(context.Background()) }()
	cl.Add(Result{Name: "reach database " + redact(c.DatabaseURL), Status: Pass})

	s3c, err := s3Client(ctx, c)
	if err == nil {
		sctx, scancel := context.WithTimeout(ctx, reachWait)
		_, err = s3c.HeadBucket(sctx, &s3.HeadBucketInput{Bucket: aws.String(c.S3Bucket)})
		scancel()
	}
	if err != nil {
		return reach(cl, "s3 "+c.S3Endpoint+" bucket "+c.S3Bucket, err)
	}
	cl.Add(Result{Name: "reach s3 " + c.S3Endpoint + " bucket " + c.S3Bucket, Status: Pass})

	if n, err := registerDevices(ctx, c, serde, p, log); err != nil {
		cl.Add(Result{Name: "registry: register the run's devices", Status: Fail, Detail: err.Error()})
		return err
	} else if n > 0 {
		cl.Add(Result{Name: fmt.Sprintf("registry: registered the run's %d devices (tenant %s)", n, p.tenant), Status: Pass})
	}

	cm, err := dialMQTT(ctx, c.MQTTURL, "drover-smoke-"+p.run, c.MQTTUser, c.MQTTPassword, reachWait)
	if err != nil {
		return reach(cl, "mqtt "+c.MQTTURL, err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		_ = cm.Disconnect(dctx)
	}()
	cl.Add(Result{Name: "reach mqtt " + c.MQTTURL, Status: Pass})

	checkRegistry(cl, subjects)

	start := time.Now()
	if err := publish(ctx, cm, p.run, p.msgs); err != nil {
		cl.Add(Result{Name: "mqtt: publish the run's messages (QoS 1)", Status: Fail, Detail: err.Error()})
		return err
	}
	cl.Add(Result{Name: fmt.Sprintf("mqtt: published %d messages (QoS 1, all acknowledged)", len(p.msgs)), Status: Pass, Took: time.Since(start)})
	body := fmt.Appendf(nil, "drover smoke %s\n", p.run)
	if err := putObject(ctx, s3c, c.S3Bucket, p.objKey, "image/jpeg", body); err != nil {
		cl.Add(Result{Name: "s3: put object", Status: Fail, Detail: err.Error()})
		return err
	}
	cl.Add(Result{Name: "s3: put s3://" + c.S3Bucket + "/" + p.objKey, Status: Pass})
	postHTTP(ctx, c, p, cl)
	postCoAP(ctx, c, p, cl)
	postLoRaWAN(ctx, c, p, cl)
	log.Info("smoke run published", "run", p.run, "messages", len(p.msgs))

	w := &waiter{ctx: ctx, parent: parent, cl: cl}
	checkKafka(w, c, p, col)
	checkDoors(w, c, p, col)
	checkLPWAN(w, c, p, col)
	checkDatabase(w, p, col, db)
	checkControl(w, c, p, serde, log)
	return nil
}

func reach(cl *Checklist, what string, err error) error {
	cl.Add(Result{Name: "reach " + what, Status: Fail, Detail: err.Error()})
	return fmt.Errorf("%s unreachable: %w", what, err)
}

// redact hides a URL's password.
func redact(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.Index(u[i+3:], "@"); j >= 0 {
			cred := u[i+3 : i+3+j]
			if k := strings.Index(cred, ":"); k >= 0 {
				return u[:i+3] + cred[:k] + ":***" + u[i+3+j:]
			}
		}
	}
	return u
}

func checkRegistry(cl *Checklist, subjects []string) {
	have := map[string]bool{}
	for _, s := range subjects {
		have[s] = true
	}
	var missing []string
	ts := schemas.Topics()
	for _, t := range ts {
		if !have[schemas.Subject(t)] {
			missing = append(missing, schemas.Subject(t))
		}
	}
	r := Result{Name: fmt.Sprintf("registry: a schema for every topic (%d subjects)", len(ts)), Status: Pass}
	if len(missing) > 0 {
		r.Status, r.Detail = Fail, "missing "+strings.Join(missing, ", ")
	}
	cl.Add(r)
}

// waiter polls checks until they pass or the run's deadline passes.
type waiter struct {
	ctx    context.Context // the run's deadline
	parent context.Context // for queries, also after the deadline
	cl     *Checklist
	db     *pgx.Conn
}

// check polls fn every 250 ms until it returns "" (pass) or the deadline;
// the last complaint is the failure's detail.
func (w *waiter) check(name string, fn func() string) bool {
	start := time.Now()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		detail := fn()
		if detail == "" {
			w.cl.Add(Result{Name: name, Status: Pass, Took: time.Since(start)})
			return true
		}
		select {
		case <-w.ctx.Done():
			why := " (deadline passed)"
			if errors.Is(w.ctx.Err(), context.Canceled) {
				why = " (cancelled)"
			}
			w.cl.Add(Result{Name: name, Status: Fail, Detail: detail + why, Took: time.Since(start)})
			return false
		case <-t.C:
		}
	}
}

func (w *waiter) skip(name, why string) { w.cl.Add(Result{Name: name, Status: Skip, Detail: why}) }

// rawTopics lists every raw.* topic.
func rawTopics() []string {
	ts := []string{topics.RawSensor, topics.RawGPS}
	for _, k := range mediaKinds {
		t, _ := topics.MediaTopic(k)
		ts = append(ts, t)
	}
	return ts
}

// registerDevices registers the run's devices (and its tenant) in the
// device registry when the stack has one (devices.registry exists), so
// the bridge, which enforces the registry, admits their messages. It
// returns how many it registered (0 without a registry).
func registerDevices(ctx context.Context, c Config, serde *schemas.Serde, p *plan, log *slog.Logger) (int, error) {
	kopts := []kgo.Opt{kgo.SeedBrokers(c.KafkaBrokers...)}
	ok, err := registry.TopicExists(ctx, kopts, topics.DevicesRegistry)
	if err != nil || !ok {
		return 0, err
	}
	view, err := registry.NewView(kopts, serde, registry.WithLogger(log))
	if err != nil {
		return 0, err
	}
	vctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- view.Run(vctx) }()
	defer func() { stop(); <-done }()
	wctx, cancel := context.WithTimeout(ctx, reachWait)
	defer cancel()
	if err := view.WaitReady(wctx); err != nil {
		return 0, err
	}
	producer, err := kgo.NewClient(kopts...)
	if err != nil {
		return 0, err
	}
	defer producer.Close()
	store := registry.NewStore(view, producer, serde, registry.WithActor("drover smoke"))
	if _, ok := view.Tenant(p.tenant); !ok {
		if _, err := store.AddTenant(ctx, p.tenant, ""); err != nil && !errors.Is(err, registry.ErrExists) {
			return 0, err
		}
	}
	var nds []registry.NewDevice
	for _, d := range p.devices {
		typ := "collar"
		if d == p.wildfi {
			typ = registry.TypeWildFi
		}
		nd := registry.NewDevice{Tenant: p.tenant, ID: d, Type: typ}
		if d == p.lora {
			nd.AltIDs = map[string]string{registry.AltDevEUI: p.loraEUI}
		}
		nds = append(nds, nd)
	}
	added, err := store.AddDevices(ctx, nds, false)
	if err != nil {
		return 0, err
	}
	p.secrets = map[string]string{}
	for _, a := range added {
		p.secrets[a.Device.ID] = a.Secret
	}
	return len(nds), nil
}
