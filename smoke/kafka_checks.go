package smoke

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/drover-iot/drover/bridge/simulate"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// reasonStage is the bridge stage of each dead-letter reason
// (bridge/README.md, "Dead-letter reasons").
var reasonStage = map[simulate.Class]string{
	simulate.ClassEmptyPayload: "decode", simulate.ClassTooLarge: "decode", simulate.ClassNotUTF8: "decode",
	simulate.ClassNotJSON: "decode", simulate.ClassWrongShape: "decode", simulate.ClassMissingField: "decode",
	simulate.ClassInvalidTS: "decode", simulate.ClassSenMLMissingName: "decode", simulate.ClassSenMLInvalidName: "decode",
	simulate.ClassSenMLUnknownUnit: "decode", simulate.ClassSenMLUnsupported: "decode",
	simulate.ClassEventInvalidName: "decode", simulate.ClassEventInvalidSeverity: "decode", simulate.ClassEventMessageTooLong: "decode",
	simulate.ClassNotFinite: "validate", simulate.ClassOutOfRange: "validate", simulate.ClassTSFuture: "validate",
	simulate.ClassTSPast: "validate", simulate.ClassEmptyMetric: "validate", simulate.ClassDeviceMismatch: "validate",
	simulate.ClassNoRecords: "validate", simulate.ClassDuplicateTimestamp: "validate", simulate.ClassInvalidMetric: "validate",
	simulate.ClassDuplicateKey: "decode",
	simulate.ClassUnknownTopic: "route", simulate.ClassUnknownChannel: "route", simulate.ClassBadIdentity: "route",
}

// byFixture returns the records (of topics ts) that came from the named
// fixture message.
func byFixture(col *collector, name string, ts ...string) []*record {
	var out []*record
	for _, t := range ts {
		for _, r := range col.snapshot(t) {
			if r.Headers["mqtt.user."+PropFixture] == name {
				out = append(out, r)
			}
		}
	}
	return out
}

func checkKafka(w *waiter, c Config, p *plan, col *collector) {
	raw := rawTopics()
	for _, f := range p.fixtures {
		if !f.Valid {
			continue
		}
		w.check("raw: "+f.Name+" → "+f.ExpectTopic, func() string {
			rs := byFixture(col, f.Name, raw...)
			if len(rs) != f.Records {
				return fmt.Sprintf("%d records on raw.* topics, want %d on %s", len(rs), f.Records, f.ExpectTopic)
			}
			for _, r := range rs {
				if d := validRecord(p, f, r); d != "" {
					return d
				}
			}
			if dl := byFixture(col, f.Name, topics.DLQ); len(dl) > 0 {
				return fmt.Sprintf("also dead-lettered: %s", dl[0].Value.(*schemas.DeadLetter).Reason)
			}
			return ""
		})
	}
	for _, f := range p.fixtures {
		if f.Valid {
			continue
		}
		stage := reasonStage[f.Class]
		w.check(fmt.Sprintf("dlq: %s → %s/%s", f.Name, stage, f.Class), func() string {
			rs := byFixture(col, f.Name, topics.DLQ)
			if len(rs) != 1 {
				return fmt.Sprintf("%d dead letters, want 1", len(rs))
			}
			if leaked := byFixture(col, f.Name, raw...); len(leaked) > 0 {
				return fmt.Sprintf("%d records leaked to %s", len(leaked), leaked[0].Topic)
			}
			r := rs[0]
			if r.Err != nil {
				return "undecodable: " + r.Err.Error()
			}
			d := r.Value.(*schemas.DeadLetter)
			switch {
			case d.Reason != string(f.Class):
				return fmt.Sprintf("reason %q, want %q (%s)", d.Reason, f.Class, d.Message)
			case stage != "" && d.Stage != stage:
				return fmt.Sprintf("stage %q, want %q", d.Stage, stage)
			case r.Headers["drover.reason"] != d.Reason || r.Headers["drover.stage"] != d.Stage:
				return fmt.Sprintf("headers drover.reason=%q drover.stage=%q disagree with the record", r.Headers["drover.reason"], r.Headers["drover.stage"])
			case d.Source != f.Topic:
				return fmt.Sprintf("source %q, want the MQTT topic %q", d.Source, f.Topic)
			case d.PayloadSize != int64(len(f.Payload)):
				return fmt.Sprintf("payload_size %d, want %d", d.PayloadSize, len(f.Payload))
			case !d.Truncated && !bytes.Equal(d.Payload, f.Payload):
				return "payload differs from the bytes sent"
			case d.Truncated && !bytes.HasPrefix(f.Payload, d.Payload):
				return "truncated payload is not a prefix of the bytes sent"
			case d.Message == "" || d.ID == "":
				return "empty id or message"
			}
			return ""
		})
	}

	media, _ := topics.MediaTopic("image2d")
	w.check("media: S3 object → "+media, func() string {
		for _, r := range col.snapshot(media) {
			m, ok := r.Value.(*schemas.MediaObject)
			if !ok || r.Err != nil || m.Key != p.objKey {
				continue
			}
			switch {
			case r.Key != identity.Key(p.tenant, p.camera) || m.DeviceID != p.camera || m.Tenant != p.tenant:
				return fmt.Sprintf("key %q tenant %q device %q, want %q/%q", r.Key, m.Tenant, m.DeviceID, p.tenant, p.camera)
			case m.Kind != "image2d" || m.Bucket != c.withDefaults().S3Bucket || m.Size <= 0 || m.Replayed:
				return fmt.Sprintf("kind %q bucket %q size %d replayed %v", m.Kind, m.Bucket, m.Size, m.Replayed)
			}
			return ""
		}
		return "no record for s3 object " + p.objKey
	})

	checkFeatures(w, p, col)
	checkAlerts(w, c, p, col)

	for _, dev := range []string{p.dev, p.fever, p.offline} {
		w.check("state.latest: "+dev, func() string {
			var st *schemas.DeviceState
			for _, r := range col.snapshot(topics.StateLatest) {
				if s, ok := r.Value.(*schemas.DeviceState); ok && r.Err == nil && s.DeviceID == dev {
					st = s
				}
			}
			if st == nil {
				return "no state record"
			}
			if st.Tenant != p.tenant || st.LastSeen.IsZero() {
				return fmt.Sprintf("tenant %q last_seen %v", st.Tenant, st.LastSeen)
			}
			switch dev {
			case p.dev:
				if st.Lat == nil || st.Lon == nil || st.Firmware == nil || *st.Firmware != "1.4.2" {
					return fmt.Sprintf("want a position and firmware 1.4.2 (lat %v firmware %v)", st.Lat, st.Firmware)
				}
				if _, ok := st.Metrics["temperature"]; !ok {
					return fmt.Sprintf("no temperature in metrics %v", st.Metrics)
				}
				if v, ok := st.Metrics["event.tamper"]; !ok || v != 1 {
					return fmt.Sprintf("event.tamper %v (present %v), want the last event's value 1 in metrics", v, ok)
				}
			case p.fever:
				if v := st.Metrics["temperature"]; v != feverNormal {
					return fmt.Sprintf("temperature %v, want the latest reading %v", v, feverNormal)
				}
			case p.offline:
				if st.Battery == nil || *st.Battery != 66 {
					return fmt.Sprintf("battery %v, want 66", st.Battery)
				}
			}
			return ""
		})
	}
}

// validRecord checks one raw record of a valid fixture.
func validRecord(p *plan, f simulate.Fixture, r *record) string {
	if r.Topic != f.ExpectTopic {
		return fmt.Sprintf("record on %s, want %s", r.Topic, f.ExpectTopic)
	}
	if r.Err != nil {
		return "undecodable: " + r.Err.Error()
	}
	if r.Headers["mqtt.topic"] != f.Topic {
		return fmt.Sprintf("header mqtt.topic %q, want %q", r.Headers["mqtt.topic"], f.Topic)
	}
	if r.Headers["mqtt.user."+PropRun] != p.run {
		return "user property " + PropRun + " not carried as a header"
	}
	wantDev := p.dev
	if strings.HasPrefix(f.Topic, "wildfi/") {
		wantDev = p.wildfi
	}
	var tenant, dev, id string
	var ts, ing time.Time
	switch v := r.Value.(type) {
	case *schemas.SensorReading:
		tenant, dev, id, ts, ing = v.Tenant, v.DeviceID, v.EventID, v.TS, v.IngestedAt
		if v.Metric == "" || math.IsNaN(v.Value) || math.IsInf(v.Value, 0) || v.Source == "" || v.Replayed {
			return fmt.Sprintf("metric %q value %v source %q replayed %v", v.Metric, v.Value, v.Source, v.Replayed)
		}
	case *schemas.GPSFix:
		tenant, dev, id, ts, ing = v.Tenant, v.DeviceID, v.EventID, v.TS, v.IngestedAt
		if v.Lat < 52 || v.Lat > 53 || v.Lon < -8 || v.Lon > -7 || v.Replayed {
			return fmt.Sprintf("lat %v lon %v replayed %v", v.Lat, v.Lon, v.Replayed)
		}
	case *schemas.MediaObject:
		tenant, dev, id, ts, ing = v.Tenant, v.DeviceID, v.EventID, v.TS, v.IngestedAt
		if v.Kind == "" || !strings.HasPrefix(v.Key, v.Kind+"/") || v.Size != 1024 || v.SHA256 == nil || v.ContentType == "" {
			return fmt.Sprintf("kind %q key %q size %d sha256 %v content type %q", v.Kind, v.Key, v.Size, v.SHA256, v.ContentType)
		}
	default:
		return fmt.Sprintf("unexpected record type %T", v)
	}
	switch {
	case dev != wantDev || identity.DeviceOf(r.Key) != wantDev: // keys are TENANT/DEVICE
		return fmt.Sprintf("device %q key %q, want %q", dev, r.Key, wantDev)
	case wantDev == p.dev && tenant != p.tenant:
		return fmt.Sprintf("tenant %q, want %q", tenant, p.tenant)
	case r.Headers["drover.tenant"] != tenant:
		return fmt.Sprintf("header drover.tenant %q, record tenant %q", r.Headers["drover.tenant"], tenant)
	case id == "":
		return "empty event_id"
	case ts.Sub(p.now).Abs() > time.Minute:
		return fmt.Sprintf("ts %v, want about %v", ts, p.now)
	case ing.IsZero():
		return "empty ingested_at"
	}
	return fieldExpectations(f.Name, r.Value)
}

// fieldExpectations pins the decoded values of the fixtures whose payload
// names them outright.
func fieldExpectations(name string, v any) string {
	eq := func(what string, got, want float64) string {
		if math.Abs(got-want) > 1e-9 {
			return fmt.Sprintf("%s %v, want %v", what, got, want)
		}
		return ""
	}
	switch name {
	case "sensor/metric-rfc3339":
		s := v.(*schemas.SensorReading)
		if s.Metric != "temperature" || s.Unit == nil || *s.Unit != "Cel" {
			return fmt.Sprintf("metric %q unit %v, want temperature Cel", s.Metric, s.Unit)
		}
		return eq("value", s.Value, 38.6)
	case "sensor/metric-epoch-ms":
		s := v.(*schemas.SensorReading)
		if s.Metric != "temperature" {
			return fmt.Sprintf("metric %q", s.Metric)
		}
		return eq("value", s.Value, 38.4)
	case "gps/full":
		g := v.(*schemas.GPSFix)
		if g.Alt == nil || g.Satellites == nil || *g.Satellites != 9 {
			return fmt.Sprintf("alt %v satellites %v", g.Alt, g.Satellites)
		}
		if d := eq("lat", g.Lat, 52.4712) + eq("lon", g.Lon, -7.8601) + eq("alt", *g.Alt, 87.5); d != "" {
			return d
		}
	case "events/tamper":
		s := v.(*schemas.SensorReading)
		if s.Metric != "event.tamper" || s.Source != "events" || s.Unit != nil || len(s.Attrs) != 3 ||
			s.Attrs["severity"] != "warning" || s.Attrs["message"] != "case opened" || s.Attrs["zone"] != "b" {
			return fmt.Sprintf("metric %q source %q unit %v attrs %v, want event.tamper from events with severity, message and zone", s.Metric, s.Source, s.Unit, s.Attrs)
		}
		return eq("value", s.Value, 1)
	case "events/array":
		s := v.(*schemas.SensorReading)
		want := map[string]string{"event.button": "info", "event.collar_removed": "critical"}
		if sev, ok := want[s.Metric]; !ok || s.Attrs["severity"] != sev || s.Source != "events" {
			return fmt.Sprintf("metric %q severity %q source %q, want event.button/info or event.collar_removed/critical", s.Metric, s.Attrs["severity"], s.Source)
		}
		return eq("value", s.Value, 1)
	case "gps/minimal":
		g := v.(*schemas.GPSFix)
		if g.Alt != nil || g.HDOP != nil || g.Satellites != nil {
			return "optional fields set although the payload has none"
		}
	}
	return ""
}

func checkFeatures(w *waiter, p *plan, col *collector) {
	w.check(fmt.Sprintf("features: 1m temperature window of %s at %s", p.fever, p.base.Format("15:04")), func() string {
		var f *schemas.Feature
		for _, r := range col.snapshot(topics.Features) {
			if x, ok := r.Value.(*schemas.Feature); ok && r.Err == nil && x.DeviceID == p.fever &&
				x.Metric == "temperature" && x.WindowSizeMS == 60000 && x.WindowStart.Equal(p.base) {
				f = x
			}
		}
		if f == nil {
			return "no window record"
		}
		if f.Count != 2 || f.Min == nil || f.Max == nil || f.Mean == nil || f.First == nil || f.Last == nil {
			return fmt.Sprintf("count %d (want 2) or an aggregate missing", f.Count)
		}
		if !f.WindowEnd.Equal(p.base.Add(time.Minute)) {
			return fmt.Sprintf("window_end %v", f.WindowEnd)
		}
		const eps = 1e-9
		if math.Abs(*f.Min-feverValueA) > eps || math.Abs(*f.Max-feverValueB) > eps ||
			math.Abs(*f.Mean-(feverValueA+feverValueB)/2) > eps || math.Abs(*f.First-feverValueA) > eps || math.Abs(*f.Last-feverValueB) > eps {
			return fmt.Sprintf("min %v max %v mean %v first %v last %v", *f.Min, *f.Max, *f.Mean, *f.First, *f.Last)
		}
		return ""
	})
}

// alertsOf returns the alert records of a device and rule.
func alertsOf(col *collector, dev, rule string) []*schemas.Alert {
	var out []*schemas.Alert
	for _, r := range col.snapshot(topics.Alerts) {
		if a, ok := r.Value.(*schemas.Alert); ok && r.Err == nil && a.DeviceID == dev && (rule == "" || a.Rule == rule) {
			out = append(out, a)
		}
	}
	return out
}

func checkAlerts(w *waiter, c Config, p *plan, col *collector) {
	fireFrom, fireTo := p.base.Add(10*time.Minute), p.base.Add(time.Duration(feverHigh)*feverStep)
	resolveAt := p.base.Add(time.Duration(feverHigh) * feverStep)
	var firedID string
	w.check("alerts: fever fires for "+p.fever, func() string {
		var fired []*schemas.Alert
		for _, a := range alertsOf(col, p.fever, "fever") {
			if a.State == "firing" {
				fired = append(fired, a)
			}
		}
		if len(fired) != 1 {
			return fmt.Sprintf("%d firing records, want 1", len(fired))
		}
		a := fired[0]
		if a.FiredAt.Before(fireFrom) || !a.FiredAt.Before(fireTo) {
			return fmt.Sprintf("fired_at %v, want in [%v, %v)", a.FiredAt, fireFrom, fireTo)
		}
		if a.Tenant != p.tenant || a.Threshold == nil || *a.Threshold != 39.5 || a.Value == nil || *a.Value <= 39.5 {
			return fmt.Sprintf("tenant %q threshold %v value %v", a.Tenant, a.Threshold, a.Value)
		}
		firedID = a.AlertID
		return ""
	})
	w.check("alerts: fever resolves for "+p.fever, func() string {
		var res []*schemas.Alert
		for _, a := range alertsOf(col, p.fever, "fever") {
			if a.State == "resolved" {
				res = append(res, a)
			}
		}
		if len(res) != 1 {
			return fmt.Sprintf("%d resolved records, want 1", len(res))
		}
		a := res[0]
		if firedID != "" && a.AlertID != firedID {
			return fmt.Sprintf("alert_id %s, the firing one was %s", a.AlertID, firedID)
		}
		if a.ResolvedAt == nil || !a.ResolvedAt.Equal(resolveAt) {
			return fmt.Sprintf("resolved_at %v, want %v", a.ResolvedAt, resolveAt)
		}
		return ""
	})
	name := "alerts: offline fires for " + p.offline
	if c.OfflineAfter <= 0 {
		w.skip(name, "the stack's offline threshold is unknown (default rule: 30m); pass --offline-after when the stack runs a short one")
		return
	}
	w.check(name+fmt.Sprintf(" (after %v)", c.OfflineAfter), func() string {
		for _, a := range alertsOf(col, p.offline, "") {
			if a.Kind == "offline" && a.State == "firing" {
				if a.FiredAt.Before(p.now.Add(c.OfflineAfter - time.Minute)) {
					return fmt.Sprintf("fired_at %v, earlier than last heard + %v", a.FiredAt, c.OfflineAfter)
				}
				return ""
			}
		}
		return "no offline alert yet"
	})
}
