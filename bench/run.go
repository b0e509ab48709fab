package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/jackc/pgx/v5"
)

// Sustainability limits: a rate is sustainable when the publisher kept its
// schedule, every message reached the table, and latency stayed bounded
// over the whole step and at its end (no growing backlog).
const (
	// SustainP99 bounds the p99 latency of the whole step and of its last
	// fifth.
	SustainP99 = time.Second
	// SustainRate is the share of the target rate the publisher must reach.
	SustainRate = 0.95
	// SustainSlip bounds how far the publisher may fall behind its schedule.
	SustainSlip = time.Second
)

// Hop is the latency from publish to one point on the way, over the run's
// messages.
type Hop struct {
	Name     string
	N        int
	P50, P99 time.Duration
}

// Result is what one Run measured.
type Result struct {
	Pipeline Pipeline
	Rate     int // target msg/s
	Duration time.Duration

	Sent, Observed int
	PublishErrors  int
	// BrokerDropped counts QoS 1 messages the embedded broker dropped
	// during the run although their publisher got a PUBACK: it queues at
	// most 65535 unacknowledged messages per subscriber (the MQTT packet id
	// space) and drops the rest.
	BrokerDropped int
	// CPUPerMsg is this process's CPU time (user + system) from the first
	// publish until the rows were visible, per message: publisher, broker,
	// pipeline and observers; PostgreSQL runs in its own processes and is
	// not included. 2 cores / CPUPerMsg bounds the rate on an idle machine.
	CPUPerMsg time.Duration
	Achieved  float64 // msg/s actually published
	SlipP99   time.Duration
	SlipMax   time.Duration

	// Publish → row visible, over the observed messages.
	P50, P95, P99, Max time.Duration
	// LateP99 is the p99 over the last fifth of the messages (by publish
	// order): it grows when a backlog builds up.
	LateP99 time.Duration
	// Tenths is the p99 of each tenth of the run (by publish order): where
	// in the run the tail grew.
	Tenths []time.Duration
	Hops   []Hop

	Sustainable bool
	Why         string // why not, when not
}

// String is a one-line summary.
func (r *Result) String() string {
	s := fmt.Sprintf("%s %d msg/s for %s: sent %d, visible %d, broker dropped %d, achieved %.0f msg/s; publish → row visible p50 %s p95 %s p99 %s max %s (last fifth p99 %s); publisher slip p99 %s max %s; process CPU %.1fµs/msg",
		r.Pipeline, r.Rate, r.Duration, r.Sent, r.Observed, r.BrokerDropped, r.Achieved, ms(r.P50), ms(r.P95), ms(r.P99), ms(r.Max), ms(r.LateP99), ms(r.SlipP99), ms(r.SlipMax), float64(r.CPUPerMsg)/1e3)
	if r.Sustainable {
		return s + "; sustainable"
	}
	return s + "; NOT sustainable: " + r.Why
}

// HopString lists the per-hop latencies.
func (r *Result) HopString() string {
	var b strings.Builder
	for i, h := range r.Hops {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s p50 %s p99 %s", h.Name, ms(h.P50), ms(h.P99))
	}
	return b.String()
}

// TenthsString lists the p99 of each tenth of the run.
func (r *Result) TenthsString() string {
	parts := make([]string, len(r.Tenths))
	for i, d := range r.Tenths {
		parts[i] = ms(d)
	}
	return strings.Join(parts, " ")
}

// processCPU is the CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + "ms"
}

// Run publishes rate msg/s for d through pipeline p, waits for the rows
// (up to Options.DrainTimeout after the last publish) and measures. It
// first waits, up to two minutes, until the rows of earlier runs are all
// visible, so a backlog does not carry over.
func (e *Env) Run(ctx context.Context, p Pipeline, rate int, d time.Duration) (*Result, error) {
	if rate < 1 {
		return nil, fmt.Errorf("bench: rate %d: want at least 1 msg/s", rate)
	}
	n := int(float64(rate) * d.Seconds())
	if n < 1 {
		return nil, fmt.Errorf("bench: %d msg/s for %s is no message", rate, d)
	}
	if err := e.waitIdle(ctx, 2*time.Minute); err != nil {
		return nil, err
	}
	t := &track{base: e.seq.Add(int64(n)) - int64(n),
		pub: make([]int64, n), vis: make([]int64, n), kafka: make([]int64, n), recTS: make([]int64, n), slip: make([]int64, n)}
	e.mu.Lock()
	e.cur = t
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.cur = nil
		e.mu.Unlock()
	}()

	dropped0 := e.brokerDropped()
	cpu0 := processCPU()
	first, last := e.publish(ctx, p, t, rate)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Drain: wait for the rows, the observer included.
	deadline := time.Now().Add(e.opts.DrainTimeout)
	for {
		e.mu.Lock()
		missing := 0
		for _, v := range t.vis {
			if v == 0 {
				missing++
			}
		}
		e.mu.Unlock()
		// Messages the broker dropped will never arrive: stop waiting.
		if missing == 0 || int64(missing) <= e.brokerDropped()-dropped0 || time.Now().After(deadline) {
			break
		}
		if err := e.Err(); err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	time.Sleep(50 * time.Millisecond) // the observer's last fetch
	cpu := processCPU() - cpu0
	e.mu.Lock()
	e.cur = nil
	e.mu.Unlock()

	res := &Result{Pipeline: p, Rate: rate, Duration: d, Sent: n - int(e.pubErrSince(t)), PublishErrors: int(e.pubErrSince(t)),
		BrokerDropped: int(e.brokerDropped() - dropped0)}
	if n > 0 {
		res.CPUPerMsg = cpu / time.Duration(n)
	}
	if last > first {
		res.Achieved = float64(n-1) / (float64(last-first) / 1e9)
	}
	return res, e.measure(ctx, p, t, res)
}

func (e *Env) pubErrSince(t *track) int64 {
	var errs int64
	for _, v := range t.pub {
		if v < 0 {
			errs++
		}
	}
	return errs
}

// publish sends the run's messages paced at rate from InFlight workers;
// it returns the first and last publish times (Unix ns).
func (e *Env) publish(ctx context.Context, p Pipeline, t *track, rate int) (first, last int64) {
	n := len(t.pub)
	type job struct {
		i     int
		sched int64
	}
	jobs := make(chan job, max(rate, 1024))
	var wg sync.WaitGroup
	prefix := topicPrefix(p)
	for w := range e.opts.InFlight {
		cm := e.pubs[w%len(e.pubs)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 128)
			for j := range jobs {
				seq := t.base + int64(j.i)
				topic := prefix + "d" + strconv.FormatInt(seq%int64(e.opts.Devices), 10) + "/sensor"
				ns := time.Now().UnixNano()
				// ts is unique per device by construction (the k-th message of a
				// device gets base + k ms), so no reading collides with another
				// on the tables' natural key however the publishes bunch up.
				ts := e.tsBase + seq/int64(e.opts.Devices)
				buf = fmt.Appendf(buf[:0], `{"ts":%d,"metric":%q,"value":%d,"attrs":{"pub_ns":"%d"}}`, ts, Metric, seq, ns)
				t.pub[j.i], t.slip[j.i] = ns, ns-j.sched
				resp, err := cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: topic, Payload: buf})
				if err == nil && resp != nil && resp.ReasonCode >= 0x80 {
					err = fmt.Errorf("reason code 0x%02x", resp.ReasonCode)
				}
				if err != nil {
					t.pub[j.i] = -1
					if e.pubErr.Add(1) <= 5 {
						e.opts.Log.Warn("bench: publish failed", "err", err)
					}
					continue
				}
				e.sent.Add(1)
			}
		}()
	}
	start := time.Now()
	period := float64(time.Second) / float64(rate)
	for i := 0; i < n && ctx.Err() == nil; {
		due := min(n, int(float64(time.Since(start))/period)+1)
		for ; i < due; i++ {
			jobs <- job{i: i, sched: start.UnixNano() + int64(float64(i)*period)}
		}
		if i < n {
			time.Sleep(time.Until(start.Add(time.Duration(float64(i) * period))))
		}
	}
	close(jobs)
	wg.Wait()
	first, last = int64(1<<63-1), int64(0)
	for _, v := range t.pub {
		if v > 0 {
			first, last = min(first, v), max(last, v)
		}
	}
	return first, last
}

// waitIdle waits until every message published so far is visible (or
// was dropped by the broker).
func (e *Env) waitIdle(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for e.seen.Load()+e.brokerDropped() < e.sent.Load() {
		if time.Now().After(deadline) {
			e.opts.Log.Warn("bench: earlier rows still missing; going on", "sent", e.sent.Load(), "visible", e.seen.Load())
			return nil
		}
		if err := e.Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// measure reads the run's rows back (publish time as carried in the
// payload, ingested_at, written_at) and computes the result.
func (e *Env) measure(ctx context.Context, p Pipeline, t *track, res *Result) error {
	rows, err := e.query.Query(ctx, `SELECT value::bigint, (attrs->>'pub_ns')::bigint,
		(extract(epoch FROM ingested_at) * 1e6)::bigint, (extract(epoch FROM written_at) * 1e6)::bigint
		FROM `+table(p)+` WHERE metric = $1 AND value >= $2 AND value < $3`,
		Metric, t.base, t.base+int64(len(t.pub)))
	if err != nil {
		return fmt.Errorf("bench: reading the rows back: %w", err)
	}
	n := len(t.pub)
	payloadPub := make([]int64, n)
	ingested := make([]int64, n)
	written := make([]int64, n)
	var bad int
	for rows.Next() {
		var seq, pub, ing, wr int64
		if err := rows.Scan(&seq, &pub, &ing, &wr); err != nil {
			rows.Close()
			return err
		}
		i := int(seq - t.base)
		if pub != t.pub[i] {
			bad++
		}
		payloadPub[i], ingested[i], written[i] = pub, ing*1000, wr*1000
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if bad > 0 {
		return fmt.Errorf("bench: %d rows carry a publish time other than the one published", bad)
	}

	var lat, late, slip []time.Duration
	tenths := make([][]time.Duration, 10)
	hopSamples := map[string][]time.Duration{}
	lateFrom := n - n/5
	for i := range n {
		if t.pub[i] > 0 {
			slip = append(slip, time.Duration(t.slip[i]))
		}
		if t.vis[i] == 0 || payloadPub[i] == 0 {
			continue
		}
		pub := payloadPub[i]
		d := time.Duration(t.vis[i] - pub)
		lat = append(lat, d)
		if i >= lateFrom {
			late = append(late, d)
		}
		tenths[i*10/n] = append(tenths[i*10/n], d)
		hopSamples["bridge received (ingested_at, ms)"] = append(hopSamples["bridge received (ingested_at, ms)"], time.Duration(ingested[i]-pub))
		if t.recTS[i] != 0 {
			hopSamples["Kafka record timestamp (ms)"] = append(hopSamples["Kafka record timestamp (ms)"], time.Duration(t.recTS[i]-pub))
			hopSamples["readable in raw.sensor (observer)"] = append(hopSamples["readable in raw.sensor (observer)"], time.Duration(t.kafka[i]-pub))
		}
		hopSamples["write transaction started (written_at)"] = append(hopSamples["write transaction started (written_at)"], time.Duration(written[i]-pub))
		hopSamples["row visible (NOTIFY)"] = append(hopSamples["row visible (NOTIFY)"], d)
	}
	res.Observed = len(lat)
	for _, s := range [][]time.Duration{lat, late, slip} {
		slices.Sort(s)
	}
	res.P50, res.P95, res.P99 = Percentile(lat, 0.50), Percentile(lat, 0.95), Percentile(lat, 0.99)
	res.LateP99 = Percentile(late, 0.99)
	for _, s := range tenths {
		slices.Sort(s)
		res.Tenths = append(res.Tenths, Percentile(s, 0.99))
	}
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	res.SlipP99 = Percentile(slip, 0.99)
	if len(slip) > 0 {
		res.SlipMax = slip[len(slip)-1]
	}
	for _, name := range []string{"bridge received (ingested_at, ms)", "Kafka record timestamp (ms)",
		"readable in raw.sensor (observer)", "write transaction started (written_at)", "row visible (NOTIFY)"} {
		s := hopSamples[name]
		if len(s) == 0 {
			continue
		}
		slices.Sort(s)
		res.Hops = append(res.Hops, Hop{Name: name, N: len(s), P50: Percentile(s, 0.5), P99: Percentile(s, 0.99)})
	}
	var why []string
	if res.Achieved < SustainRate*float64(res.Rate) {
		why = append(why, fmt.Sprintf("publisher reached %.0f of %d msg/s", res.Achieved, res.Rate))
	}
	if res.SlipMax > SustainSlip {
		why = append(why, "publisher fell "+ms(res.SlipMax)+" behind schedule")
	}
	if res.Observed < res.Sent {
		why = append(why, fmt.Sprintf("%d of %d rows not visible %s after the last publish", res.Sent-res.Observed, res.Sent, e.opts.DrainTimeout))
	}
	if res.P99 >= SustainP99 {
		why = append(why, "p99 "+ms(res.P99)+" ≥ "+ms(SustainP99))
	}
	if res.LateP99 >= SustainP99 {
		why = append(why, "last fifth p99 "+ms(res.LateP99)+" ≥ "+ms(SustainP99)+" (backlog growing)")
	}
	if res.BrokerDropped > 0 {
		why = append(why, fmt.Sprintf("the MQTT broker dropped %d messages (a subscriber's backlog passed 65535)", res.BrokerDropped))
	}
	if res.PublishErrors > 0 {
		why = append(why, fmt.Sprintf("%d publish errors", res.PublishErrors))
	}
	res.Sustainable, res.Why = len(why) == 0, strings.Join(why, "; ")
	return nil
}

// Percentile returns the q-quantile (0..1) of sorted by the nearest-rank
// method; 0 for no samples.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Search finds the highest sustainable rate: it starts at from (a rate
// already measured, with result fromRes), steps up by step while rates are
// sustainable (down while they are not), up to ceiling, then tries the
// midpoint between the best sustainable and the first unsustainable rate
// once. Each step runs for d. It returns the best rate (0 if none) and
// every step's result.
func (e *Env) Search(ctx context.Context, from int, fromRes *Result, step, ceiling int, d time.Duration) (int, []*Result, error) {
	var all []*Result
	best, fail := 0, 0
	if fromRes.Sustainable {
		best = from
		for r := from + step; r <= ceiling; r += step {
			res, err := e.Run(ctx, Drover, r, d)
			if err != nil {
				return best, all, err
			}
			e.opts.Log.Info("bench: search step", "result", res.String())
			all = append(all, res)
			if !res.Sustainable {
				fail = r
				break
			}
			best = r
		}
	} else {
		fail = from
		for r := from - step; r >= step; r -= step {
			res, err := e.Run(ctx, Drover, r, d)
			if err != nil {
				return best, all, err
			}
			e.opts.Log.Info("bench: search step", "result", res.String())
			all = append(all, res)
			if res.Sustainable {
				best = r
				break
			}
			fail = r
		}
	}
	if best > 0 && fail > best+step/4 {
		mid := (best + fail) / 2
		res, err := e.Run(ctx, Drover, mid, d)
		if err != nil {
			return best, all, err
		}
		e.opts.Log.Info("bench: search step", "result", res.String())
		all = append(all, res)
		if res.Sustainable {
			best = mid
		}
	}
	return best, all, nil
}

// runBare is the baseline pipeline: a paho subscriber (automatic acks)
// parses each JSON message and a writer COPYs the rows into
// bench_bare_readings in batches of BatchSize or every FlushInterval.
func (e *Env) runBare(ctx context.Context) error {
	u, err := url.Parse(e.ep.MQTTURL)
	if err != nil {
		return err
	}
	rowsCh := make(chan []any, 65536)
	type msg struct {
		TS     int64             `json:"ts"`
		Metric string            `json:"metric"`
		Value  float64           `json:"value"`
		Attrs  map[string]string `json:"attrs"`
	}
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/bare/bare/#", QoS: 1}}}); err != nil {
					e.opts.Log.Warn("bench: bare subscribe", "err", err)
				}
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: "bench-bare-sub",
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				now := time.Now()
				parts := strings.Split(pr.Packet.Topic, "/") // bare/{tenant}/{device}/sensor
				var m msg
				if len(parts) != 4 || json.Unmarshal(pr.Packet.Payload, &m) != nil {
					return true, nil
				}
				ts := time.UnixMilli(m.TS)
				id := fmt.Sprintf("%s/%s/%s/%d", parts[1], parts[2], m.Metric, m.TS)
				select {
				case rowsCh <- []any{ts, parts[1], parts[2], m.Metric, m.Value, nil, now, "sensor", id, m.Attrs}:
				case <-ctx.Done():
				}
				return true, nil
			}},
		},
	})
	if err != nil {
		return err
	}
	c, err := e.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	cols := []string{"ts", "tenant", "device_id", "metric", "value", "unit", "ingested_at", "source", "event_id", "attrs"}
	var batch [][]any
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() error {
		timer.Stop()
		if len(batch) == 0 {
			return nil
		}
		_, err := c.CopyFrom(ctx, pgx.Identifier{"bench_bare_readings"}, cols, pgx.CopyFromRows(batch))
		batch = batch[:0]
		return err
	}
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = cm.Disconnect(dctx)
			cancel()
			return ctx.Err()
		case r := <-rowsCh:
			if len(batch) == 0 {
				timer.Reset(e.opts.FlushInterval)
			}
			batch = append(batch, r)
			if len(batch) >= e.opts.BatchSize {
				if err := flush(); err != nil && !errors.Is(err, context.Canceled) {
					return fmt.Errorf("bench: bare copy: %w", err)
				}
			}
		case <-timer.C:
			if err := flush(); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("bench: bare copy: %w", err)
			}
		}
	}
}
