package console

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Snapshot is the pipeline page: the topology with live values.
type Snapshot struct {
	At       time.Time     `json:"at"`
	Topology Topology      `json:"topology"`
	Stages   []StageStatus `json:"stages"`
	Topics   []TopicStat   `json:"topics"`
	Groups   []GroupStat   `json:"groups"`
	// Edges are the Topology's edges with their rates, in the same order.
	Edges       []EdgeStat  `json:"edges"`
	DeadLetters DLQRate     `json:"dead_letters"`
	Tables      []TableStat `json:"tables"`
	// Problems are the sources that could not be read this time.
	Problems []string `json:"problems,omitempty"`
}

// TopicStat is one topic's offsets summed over its partitions.
type TopicStat struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
	Start      int64  `json:"start"`
	End        int64  `json:"end"`
	// Records is End minus Start (an upper bound on a compacted topic).
	Records int64 `json:"records"`
	// Rate is records produced per second since the previous snapshot
	// (nil on the first).
	Rate *float64 `json:"rate"`
}

// GroupStat is one consumer group.
type GroupStat struct {
	Group   string `json:"group"`
	State   string `json:"state"`
	Members int    `json:"members"`
	// Lag is the sum over the group's partitions of end minus committed.
	Lag int64 `json:"lag"`
	// Committed is the sum of committed offsets per topic, TopicLag the
	// lag per topic.
	Committed map[string]int64 `json:"committed"`
	TopicLag  map[string]int64 `json:"topic_lag"`
	// Rates are records consumed (committed) per second, per topic.
	Rates map[string]float64 `json:"rates,omitempty"`
	Error string             `json:"error,omitempty"`
}

// EdgeStat is an edge's rate in records per second (nil = not known).
type EdgeStat struct {
	Rate *float64 `json:"rate"`
	Lag  *int64   `json:"lag,omitempty"`
}

// sample is what the next snapshot needs from the previous one for rates.
type sample struct {
	at        time.Time
	ends      map[string]int64
	committed map[string]map[string]int64
	metrics   map[string]map[string]float64
	tables    map[string]TableStat
}

// pipeline computes snapshots; it keeps the previous sample for rates.
// Its methods are not safe for concurrent use (the hub calls them).
type pipeline struct {
	s    *Server
	topo Topology
	prev *sample
	dlq  *dlqWindow
	// topics and groups are listed at most once a minute.
	listedAt time.Time
	names    []string
	groups   []string
	starts   kadm.ListedOffsets
}

func newPipeline(s *Server) *pipeline {
	return &pipeline{s: s, topo: DefaultTopology(), dlq: newDLQWindow(s)}
}

// snapshot reads everything once and computes rates against the previous
// call.
func (p *pipeline) snapshot(ctx context.Context) Snapshot {
	p.s.metrics.snapshot.Inc()
	now := p.s.cfg.Now()
	snap := Snapshot{At: now, Topology: p.topo}
	cur := &sample{at: now, ends: map[string]int64{}, committed: map[string]map[string]int64{}, metrics: map[string]map[string]float64{}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	problem := func(what string, err error) {
		mu.Lock()
		snap.Problems = append(snap.Problems, what+": "+err.Error())
		mu.Unlock()
	}
	wg.Add(3)
	go func() { defer wg.Done(); snap.Stages = p.s.probeStages(ctx, p.s.cfg.Stages) }()
	go func() {
		defer wg.Done()
		if err := p.readKafka(ctx, &snap, cur); err != nil {
			problem("kafka", err)
		}
		dl, err := p.dlq.rate(ctx, now)
		if err != nil {
			problem("dead letters", err)
		}
		snap.DeadLetters = dl
	}()
	go func() {
		defer wg.Done()
		t, err := p.s.tableCounts(ctx)
		if err != nil {
			problem("database", err)
		}
		snap.Tables = t
	}()
	wg.Wait()
	p.rates(&snap, cur)
	p.prev = cur
	return snap
}

func (p *pipeline) readKafka(ctx context.Context, snap *Snapshot, cur *sample) error {
	adm := p.s.adm
	if p.names == nil || p.s.cfg.Now().Sub(p.listedAt) > time.Minute {
		tds, err := adm.ListTopics(ctx)
		if err != nil {
			return fmt.Errorf("listing topics: %w", err)
		}
		gs, err := adm.ListGroups(ctx)
		if err != nil {
			return fmt.Errorf("listing groups: %w", err)
		}
		p.names, p.groups = tds.Names(), gs.Groups()
		slices.Sort(p.names)
		slices.Sort(p.groups)
		if p.starts, err = adm.ListStartOffsets(ctx, p.names...); err != nil {
			return fmt.Errorf("listing start offsets: %w", err)
		}
		p.listedAt = p.s.cfg.Now()
	}
	ends, err := adm.ListEndOffsets(ctx, p.names...)
	if err != nil {
		return fmt.Errorf("listing end offsets: %w", err)
	}
	byTopic := map[string]*TopicStat{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		t := byTopic[o.Topic]
		if t == nil {
			t = &TopicStat{Name: o.Topic}
			byTopic[o.Topic] = t
		}
		t.Partitions++
		t.End += o.Offset
		if s, ok := p.starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
			t.Start += min(s.Offset, o.Offset)
		}
	})
	for _, name := range slices.Sorted(maps.Keys(byTopic)) {
		t := byTopic[name]
		t.Records = t.End - t.Start
		cur.ends[name] = t.End
		snap.Topics = append(snap.Topics, *t)
	}
	return p.readGroups(ctx, snap, cur, ends)
}

func (p *pipeline) readGroups(ctx context.Context, snap *Snapshot, cur *sample, ends kadm.ListedOffsets) error {
	if len(p.groups) == 0 {
		return nil
	}
	adm := p.s.adm
	described, err := adm.DescribeGroups(ctx, p.groups...)
	if err != nil && !errors.Is(err, kadm.ErrEmpty) {
		return fmt.Errorf("describing groups: %w", err)
	}
	fetched := adm.FetchManyOffsets(ctx, p.groups...)
	for _, g := range p.groups {
		gs := GroupStat{Group: g, Committed: map[string]int64{}, TopicLag: map[string]int64{}}
		d := described[g]
		gs.State, gs.Members = d.State, len(d.Members)
		fr := fetched[g]
		if fr.Err != nil {
			gs.Error = fr.Err.Error()
			snap.Groups = append(snap.Groups, gs)
			continue
		}
		lag := kadm.CalculateGroupLagWithStartOffsets(d, fr.Fetched, p.starts, ends)
		for _, l := range lag.Sorted() {
			if l.Err != nil || l.Commit.At < 0 {
				continue
			}
			gs.Committed[l.Topic] += l.Commit.At
			gs.Lag += max(l.Lag, 0)
			gs.TopicLag[l.Topic] += max(l.Lag, 0)
		}
		cur.committed[g] = gs.Committed
		snap.Groups = append(snap.Groups, gs)
	}
	return nil
}

// rates fills the per-second rates of topics, groups, stages, tables and
// edges from the difference to the previous sample.
func (p *pipeline) rates(snap *Snapshot, cur *sample) {
	for _, st := range snap.Stages {
		cur.metrics[st.Name] = st.Metrics
	}
	cur.tables = map[string]TableStat{}
	defer func() {
		for _, t := range snap.Tables {
			cur.tables[t.Name] = t
		}
	}()
	prev := p.prev
	var dt float64
	if prev != nil {
		dt = cur.at.Sub(prev.at).Seconds()
	}
	if prev == nil || dt <= 0 {
		snap.Edges = make([]EdgeStat, len(p.topo.Edges))
		p.edgeLags(snap)
		return
	}
	rate := func(now, before int64) *float64 {
		r := max(float64(now-before), 0) / dt
		return &r
	}
	for i, t := range snap.Topics {
		if b, ok := prev.ends[t.Name]; ok {
			snap.Topics[i].Rate = rate(t.End, b)
		}
	}
	for i, g := range snap.Groups {
		for topic, c := range g.Committed {
			if b, ok := prev.committed[g.Group][topic]; ok {
				if snap.Groups[i].Rates == nil {
					snap.Groups[i].Rates = map[string]float64{}
				}
				snap.Groups[i].Rates[topic] = *rate(c, b)
			}
		}
	}
	for i, st := range snap.Stages {
		before := prev.metrics[st.Name]
		for k, v := range st.Metrics {
			if b, ok := before[k]; ok && isCounter(k) {
				if snap.Stages[i].Rates == nil {
					snap.Stages[i].Rates = map[string]float64{}
				}
				snap.Stages[i].Rates[k] = max(v-b, 0) / dt
			}
		}
	}
	for i, t := range snap.Tables {
		b, ok := prev.tables[t.Name]
		switch {
		case ok && b.at.Equal(t.at): // the same count: keep its rate
			snap.Tables[i].Rate = b.Rate
		case ok && b.Exact && t.Exact && t.at.After(b.at):
			r := max(float64(t.Rows-b.Rows), 0) / t.at.Sub(b.at).Seconds()
			snap.Tables[i].Rate = &r
		}
	}
	snap.Edges = make([]EdgeStat, len(p.topo.Edges))
	for i, e := range p.topo.Edges {
		snap.Edges[i].Rate = p.edgeRate(snap, e)
	}
	p.edgeLags(snap)
}

func isCounter(name string) bool {
	return len(name) > 6 && name[len(name)-6:] == "_total" || name == "process_cpu_seconds_total"
}

func (p *pipeline) node(id string) Node {
	for _, n := range p.topo.Nodes {
		if n.ID == id {
			return n
		}
	}
	return Node{}
}

// edgeRate is an edge's records per second: the group's consumption of the
// From topics, the production into the To topics, or a stage counter.
func (p *pipeline) edgeRate(snap *Snapshot, e Edge) *float64 {
	var sum float64
	found := false
	switch {
	case e.Group != "":
		for _, g := range snap.Groups {
			if g.Group != e.Group {
				continue
			}
			for _, t := range p.node(e.From).Topics {
				if r, ok := g.Rates[t]; ok {
					sum, found = sum+r, true
				}
			}
		}
	case e.Metric != "":
		for _, id := range []string{e.From, e.To} {
			stage := p.node(id).Stage
			for _, st := range snap.Stages {
				if r, ok := st.Rates[e.Metric]; ok && st.Name == stage && !found {
					sum, found = r, true
				}
			}
		}
	case p.node(e.To).Kind == "topic":
		for _, t := range snap.Topics {
			if slices.Contains(p.node(e.To).Topics, t.Name) && t.Rate != nil {
				sum, found = sum+*t.Rate, true
			}
		}
	}
	if !found {
		return nil
	}
	return &sum
}

// edgeLags sets the lag of every group edge: the group's lag on the From
// topics.
func (p *pipeline) edgeLags(snap *Snapshot) {
	for i, e := range p.topo.Edges {
		if e.Group == "" {
			continue
		}
		for _, g := range snap.Groups {
			if g.Group != e.Group {
				continue
			}
			var lag int64
			found := false
			for _, t := range p.node(e.From).Topics {
				if l, ok := g.TopicLag[t]; ok {
					lag, found = lag+l, true
				}
			}
			if found {
				snap.Edges[i].Lag = &lag
			}
		}
	}
}
