package smoke

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/sparkplug"
	"github.com/drover-iot/drover/ingest/sparkplug/spb"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// The Sparkplug B fixture: an edge node's NBIRTH names the metric and its
// alias, its NDATA carries only the alias and sparkplugValue.
const (
	sparkplugMetric = "smoke.sparkplug"
	sparkplugValue  = 42.0
)

// sparkplugMessages are the edge node's NBIRTH and NDATA, in that order.
func sparkplugMessages(tenant, edge string, now time.Time) []message {
	metric := func(name string, v float64) *spb.Payload_Metric {
		m := &spb.Payload_Metric{Alias: proto.Uint64(1), Value: &spb.Payload_Metric_DoubleValue{DoubleValue: v}}
		if name != "" {
			m.Name, m.Datatype = proto.String(name), proto.Uint32(sparkplug.TypeDouble)
		}
		return m
	}
	payload := func(seq uint64, ms ...*spb.Payload_Metric) []byte {
		ts := now.Add(time.Duration(seq) * time.Millisecond) // one row per message
		b, err := proto.Marshal(&spb.Payload{Timestamp: proto.Uint64(uint64(ts.UnixMilli())), Seq: proto.Uint64(seq), Metrics: ms})
		if err != nil {
			panic(err) // a fixed, valid message
		}
		return b
	}
	bdSeq := &spb.Payload_Metric{Name: proto.String(sparkplug.BdSeqMetric), Datatype: proto.Uint32(sparkplug.TypeUInt64),
		Value: &spb.Payload_Metric_LongValue{LongValue: 0}}
	topic := func(t sparkplug.MessageType) string {
		return sparkplug.Topic{Group: tenant, Type: t, Edge: edge}.String()
	}
	return []message{
		{Name: "sparkplug/NBIRTH", Topic: topic(sparkplug.NBIRTH), Payload: payload(0, bdSeq, metric(sparkplugMetric, 1))},
		{Name: "sparkplug/NDATA", Topic: topic(sparkplug.NDATA), Payload: payload(1, metric("", sparkplugValue))},
	}
}

// httpValue is the value of the reading posted through the HTTP door.
const httpValue = 7.0

// httpPath is the HTTP door's path of the run's HTTP device's readings.
func httpPath(p *plan) string { return "/v1/devices/" + p.tenant + "/" + p.http + "/sensor" }

// postHTTP posts one reading through the HTTP door (drover http), as the
// run's HTTP device with its registry secret: 202 means Kafka has it.
func postHTTP(ctx context.Context, c Config, p *plan, cl *Checklist) {
	name := "http: POST " + httpPath(p) + " → 202"
	c.HTTPURL = strings.TrimSuffix(c.HTTPURL, "/")
	switch {
	case c.HTTPURL == "":
		cl.Add(Result{Name: name, Status: Skip, Detail: "no DROVER_HTTP_URL: the stack runs no HTTP door"})
		return
	case p.secrets[p.http] == "":
		cl.Add(Result{Name: name, Status: Skip, Detail: "the run registered no devices (no device registry), and the door admits registered devices only"})
		return
	}
	start := time.Now()
	body := fmt.Sprintf(`{"ts":%d,"metric":%q,"value":%v}`, p.now.UnixMilli(), httpMetric, httpValue)
	var status, detail string
	// The door's registry view may learn of the run's devices a moment
	// after they were registered: 401 is retried for up to 20 s.
	for attempt := 0; attempt < 40; attempt++ {
		var code int
		code, detail = postOnce(ctx, c.HTTPURL+httpPath(p), p.secrets[p.http], body)
		if code == http.StatusAccepted {
			cl.Add(Result{Name: name, Status: Pass, Took: time.Since(start)})
			return
		}
		status = fmt.Sprint(code)
		if code != http.StatusUnauthorized {
			break
		}
		select {
		case <-ctx.Done():
			attempt = 40
		case <-time.After(500 * time.Millisecond):
		}
	}
	cl.Add(Result{Name: name, Status: Fail, Detail: status + " " + detail})
}

// postOnce posts body with the device's secret and returns the status code
// and the answer (or the error).
func postOnce(ctx context.Context, url, secret, body string) (int, string) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(answer)
}

// httpMetric is the metric of the reading posted through the HTTP door.
const httpMetric = "smoke.http"

// checkDoors checks what came through the doors other than plain device
// topics on MQTT: the Sparkplug B NDATA, resolved through its NBIRTH's
// alias, and the HTTP door's reading.
func checkDoors(w *waiter, c Config, p *plan, col *collector) {
	if c.HTTPURL != "" && p.secrets[p.http] != "" {
		w.check(fmt.Sprintf("http: the reading posted as %s → %s (door http)", p.http, topics.RawSensor), func() string {
			for _, r := range col.snapshot(topics.RawSensor) {
				v, ok := r.Value.(*schemas.SensorReading)
				if !ok || v.DeviceID != p.http || v.Metric != httpMetric {
					continue
				}
				if v.Value != httpValue || v.Tenant != p.tenant || r.Headers[ingest.HeaderDoor] != "http" {
					return fmt.Sprintf("reading %+v headers %v: want value %v, tenant %s, header %s=http", v, r.Headers, httpValue, p.tenant, ingest.HeaderDoor)
				}
				return ""
			}
			return fmt.Sprintf("no reading %s of %s", httpMetric, p.http)
		})
	}
	w.check(fmt.Sprintf("sparkplug: NDATA of edge node %s resolved through its NBIRTH → %s", p.edge, topics.RawSensor), func() string {
		n := 0
		for _, r := range col.snapshot(topics.RawSensor) {
			v, ok := r.Value.(*schemas.SensorReading)
			if !ok || v.DeviceID != p.edge || v.Metric != sparkplugMetric {
				continue
			}
			if v.Source != sparkplug.Source || v.Tenant != p.tenant {
				return fmt.Sprintf("reading %+v: want source %s, tenant %s", v, sparkplug.Source, p.tenant)
			}
			if v.Value == sparkplugValue {
				n++
			}
		}
		if n != 1 {
			return fmt.Sprintf("%d readings %s = %v of %s, want 1", n, sparkplugMetric, sparkplugValue, p.edge)
		}
		for _, r := range col.snapshot(topics.DLQ) {
			if d, ok := r.Value.(*schemas.DeadLetter); ok && d.DeviceID != nil && *d.DeviceID == p.edge {
				return fmt.Sprintf("a dead letter for the edge node: %s (%s)", d.Reason, d.Message)
			}
		}
		return ""
	})
}
