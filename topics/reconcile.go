package topics

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ChangeKind is what a Change does, or reports.
type ChangeKind int

// Change kinds, in the order a Plan lists them for one topic. The first
// three are applied by Apply; the Drift kinds are reported only.
const (
	// CreateTopic: the topic is missing; create it as the catalogue says.
	CreateTopic ChangeKind = iota + 1
	// RaisePartitions: the topic has fewer partitions than the catalogue.
	RaisePartitions
	// AlterConfig: a config the catalogue names differs on the cluster; set
	// it with IncrementalAlterConfigs (other keys are left alone).
	AlterConfig
	// DriftPartitions: the topic has more partitions than the catalogue.
	// Kafka cannot remove partitions, so this is never "fixed".
	DriftPartitions
	// DriftReplication: the replication factor differs. Changing it is a
	// partition reassignment (kafka-reassign-partitions.sh or kadm
	// AlterPartitionAssignments), which moves data and is left to an operator.
	DriftReplication
)

var kindNames = map[ChangeKind]string{
	CreateTopic:      "create",
	RaisePartitions:  "raise",
	AlterConfig:      "alter",
	DriftPartitions:  "drift",
	DriftReplication: "drift",
}

// String returns the verb a plan line starts with.
func (k ChangeKind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "ChangeKind(" + strconv.Itoa(int(k)) + ")"
}

// Change is one difference between the catalogue and the cluster.
type Change struct {
	Kind ChangeKind
	// Topic is the catalogue entry (the desired state).
	Topic Topic
	// Key is the config name, for AlterConfig.
	Key string
	// From is the value on the cluster ("" when a config is unset, or for
	// CreateTopic); To is the catalogue's value.
	From, To string
}

// Actionable reports whether Apply acts on the change (create, raise,
// alter); drift is reported only.
func (c Change) Actionable() bool {
	return c.Kind == CreateTopic || c.Kind == RaisePartitions || c.Kind == AlterConfig
}

// String renders the change as one plan line.
func (c Change) String() string {
	name := c.Topic.Name
	switch c.Kind {
	case CreateTopic:
		var cfg []string
		for _, k := range slices.Sorted(maps.Keys(c.Topic.Configs)) {
			cfg = append(cfg, k+"="+c.Topic.Configs[k])
		}
		s := fmt.Sprintf("create %s: %d partitions, replication %d", name, c.Topic.Partitions, c.Topic.Replication)
		if len(cfg) > 0 {
			s += ", " + strings.Join(cfg, " ")
		}
		return s
	case RaisePartitions:
		return fmt.Sprintf("raise  %s: partitions %s → %s (keys hash to new partitions from now on)", name, c.From, c.To)
	case AlterConfig:
		from := c.From
		if from == "" {
			from = "(unset)"
		}
		return fmt.Sprintf("alter  %s: %s %s → %s", name, c.Key, from, c.To)
	case DriftPartitions:
		return fmt.Sprintf("drift  %s: partitions %s on the cluster > %s in the catalogue; not shrunk (Kafka cannot remove partitions: raise the catalogue or recreate the topic)", name, c.From, c.To)
	case DriftReplication:
		return fmt.Sprintf("drift  %s: replication %s on the cluster ≠ %s in the catalogue; not changed (changing replication is a partition reassignment, e.g. kafka-reassign-partitions.sh)", name, c.From, c.To)
	}
	return fmt.Sprintf("%v %s", c.Kind, name)
}

// Plan is what Diff found: changes in a stable order (topic name, then
// kind, then config key) and the cluster's topics the catalogue does not
// know (Unmanaged, sorted; informational, not drift).
type Plan struct {
	Changes   []Change
	Unmanaged []string
	// Brokers is the number of live brokers Diff saw.
	Brokers int
}

// Empty reports whether the cluster matches the catalogue: no change to
// apply and no drift to report. Unmanaged topics do not count.
func (p Plan) Empty() bool { return len(p.Changes) == 0 }

// Actions returns the changes Apply makes.
func (p Plan) Actions() []Change {
	return slices.DeleteFunc(slices.Clone(p.Changes), func(c Change) bool { return !c.Actionable() })
}

// Drift returns the differences Apply reports but does not fix.
func (p Plan) Drift() []Change {
	return slices.DeleteFunc(slices.Clone(p.Changes), Change.Actionable)
}

// String renders the plan, one line per change, then one per unmanaged
// topic; "no changes" when the plan is empty.
func (p Plan) String() string {
	var b strings.Builder
	for _, c := range p.Changes {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	for _, t := range p.Unmanaged {
		fmt.Fprintf(&b, "unmanaged %s: not in the catalogue; left alone\n", t)
	}
	if p.Empty() {
		b.WriteString("no changes: the cluster matches the catalogue\n")
	}
	return b.String()
}

// ErrNotEnoughBrokers is returned (wrapped) by Apply when a topic to create
// asks for more replicas than the cluster has live brokers. Cap the
// catalogue with WithReplicationCap for a smaller (dev) cluster.
var ErrNotEnoughBrokers = errors.New("not enough live brokers for the replication factor")

// Diff compares the cluster with the catalogue and returns what differs. It
// only reads (Metadata and DescribeConfigs). Errors name the topic they
// concern. Apply a replication cap to cat before calling Diff on a cluster
// with fewer brokers than the catalogue's replication.
func Diff(ctx context.Context, adm *kadm.Client, cat *Catalogue) (Plan, error) {
	// kadm serves Metadata from kgo's cache (MetadataMinAge, 5s by default),
	// so a Diff right after an Apply would see the topics as they were.
	// Asking for authorized operations makes kadm issue a fresh request.
	md, err := adm.Metadata(kadm.WithAuthorizedOps(ctx))
	if err != nil {
		return Plan{}, fmt.Errorf("listing topics: %w", err)
	}
	plan := Plan{Brokers: len(md.Brokers)}
	var existing []string
	for _, t := range cat.Topics {
		d, ok := md.Topics[t.Name]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			plan.Changes = append(plan.Changes, Change{Kind: CreateTopic, Topic: t.clone()})
			continue
		}
		if d.Err != nil {
			return Plan{}, fmt.Errorf("topic %q: metadata: %w", t.Name, d.Err)
		}
		existing = append(existing, t.Name)
		plan.Changes = append(plan.Changes, partitionChanges(t, d)...)
	}
	for name, d := range md.Topics {
		if _, ok := cat.Lookup(name); !ok && !d.IsInternal && name != "" {
			plan.Unmanaged = append(plan.Unmanaged, name)
		}
	}
	slices.Sort(plan.Unmanaged)

	if len(existing) > 0 {
		rcs, err := adm.DescribeTopicConfigs(ctx, existing...)
		if err != nil && len(rcs) == 0 {
			return Plan{}, fmt.Errorf("describing configs of %d topics: %w", len(existing), err)
		}
		for _, name := range existing {
			t, _ := cat.Lookup(name)
			rc, rerr := rcs.On(name, nil)
			if rerr == nil {
				rerr = rc.Err
			}
			if rerr != nil {
				if rc.ErrMessage != "" {
					rerr = fmt.Errorf("%w: %s", rerr, rc.ErrMessage)
				}
				return Plan{}, fmt.Errorf("topic %q: describing configs: %w", name, rerr)
			}
			plan.Changes = append(plan.Changes, configChanges(t, rc)...)
		}
	}
	sortChanges(plan.Changes)
	return plan, nil
}

func partitionChanges(t Topic, d kadm.TopicDetail) []Change {
	var out []Change
	have := int32(len(d.Partitions))
	switch {
	case have < t.Partitions:
		out = append(out, Change{Kind: RaisePartitions, Topic: t.clone(), From: itoa(have), To: itoa(t.Partitions)})
	case have > t.Partitions:
		out = append(out, Change{Kind: DriftPartitions, Topic: t.clone(), From: itoa(have), To: itoa(t.Partitions)})
	}
	// Replication: the replica count of every partition; report the
	// distinct counts when any differs from the catalogue.
	counts := map[int]bool{}
	for _, p := range d.Partitions {
		counts[len(p.Replicas)] = true
	}
	if len(counts) > 0 && (len(counts) > 1 || !counts[int(t.Replication)]) {
		var cs []string
		for _, n := range slices.Sorted(maps.Keys(counts)) {
			cs = append(cs, strconv.Itoa(n))
		}
		out = append(out, Change{Kind: DriftReplication, Topic: t.clone(), From: strings.Join(cs, "/"), To: itoa(t.Replication)})
	}
	return out
}

func configChanges(t Topic, rc kadm.ResourceConfig) []Change {
	have := map[string]string{}
	for _, c := range rc.Configs {
		if c.Value != nil {
			have[c.Key] = *c.Value
		}
	}
	var out []Change
	for _, k := range slices.Sorted(maps.Keys(t.Configs)) {
		want := t.Configs[k]
		got, ok := have[k]
		if ok && sameConfig(k, got, want) {
			continue
		}
		out = append(out, Change{Kind: AlterConfig, Topic: t.clone(), Key: k, From: got, To: want})
	}
	return out
}

// sameConfig compares a cluster value with the catalogue's, treating
// cleanup.policy as a set and integers by value.
func sameConfig(key, got, want string) bool {
	got, want = strings.TrimSpace(got), strings.TrimSpace(want)
	if key == CleanupPolicy {
		return normPolicy(got) == normPolicy(want)
	}
	if got == want {
		return true
	}
	g, err1 := strconv.ParseInt(got, 10, 64)
	w, err2 := strconv.ParseInt(want, 10, 64)
	return err1 == nil && err2 == nil && g == w
}

func sortChanges(cs []Change) {
	slices.SortStableFunc(cs, func(a, b Change) int {
		if c := strings.Compare(a.Topic.Name, b.Topic.Name); c != 0 {
			return c
		}
		if a.Kind != b.Kind {
			return int(a.Kind) - int(b.Kind)
		}
		return strings.Compare(a.Key, b.Key)
	})
}

func itoa[T int16 | int32](n T) string { return strconv.Itoa(int(n)) }

// Report is what Apply did (or, on a dry run, what the cluster accepted to
// do): Applied are the actions that succeeded, Failed those that did not
// (their errors are in Apply's error), Drift the differences left alone.
type Report struct {
	DryRun  bool
	Applied []Change
	Failed  []Change
	Drift   []Change
}

// String renders the report, one line per change.
func (r Report) String() string {
	var b strings.Builder
	done := "applied"
	if r.DryRun {
		done = "dry run, would apply"
	}
	for _, c := range r.Applied {
		fmt.Fprintf(&b, "%s: %s\n", done, c)
	}
	for _, c := range r.Failed {
		fmt.Fprintf(&b, "failed: %s\n", c)
	}
	for _, c := range r.Drift {
		fmt.Fprintf(&b, "not applied: %s\n", c)
	}
	if len(r.Applied)+len(r.Failed)+len(r.Drift) == 0 {
		b.WriteString("nothing to do: the cluster matches the catalogue\n")
	}
	return b.String()
}

// Apply makes the cluster match the plan's actions: it creates missing
// topics, raises partition counts and sets the configs that differ. It never
// deletes a topic, removes partitions or changes replication; those are
// reported in Report.Drift. With dryRun, every action is sent as a
// validate-only request, so the cluster checks it and nothing changes.
//
// Apply carries on past a failing topic and returns every failure joined,
// each wrapped with its topic name. Applying the plan of a fresh Diff again
// after a successful Apply is a no-op: that Diff is empty (drift aside).
func Apply(ctx context.Context, adm *kadm.Client, plan Plan, dryRun bool) (Report, error) {
	rep := Report{DryRun: dryRun, Drift: plan.Drift()}
	actions := plan.Actions()

	// Refuse up front, before changing anything, to create topics the
	// cluster cannot host.
	if plan.Brokers > 0 {
		var short []string
		for _, c := range actions {
			if c.Kind == CreateTopic && int(c.Topic.Replication) > plan.Brokers {
				short = append(short, c.Topic.Name)
			}
		}
		if len(short) > 0 {
			return rep, fmt.Errorf("%w: %d topic(s) want replication above the %d live broker(s) (first: %q); cap the catalogue's replication", ErrNotEnoughBrokers, len(short), plan.Brokers, short[0])
		}
	}

	var errs []error
	record := func(cs []Change, err error) {
		if err != nil {
			rep.Failed = append(rep.Failed, cs...)
			errs = append(errs, fmt.Errorf("topic %q: %s: %w", cs[0].Topic.Name, cs[0].Kind, err))
			return
		}
		rep.Applied = append(rep.Applied, cs...)
	}

	// Actions are sorted by topic then kind, so one topic's config changes
	// are adjacent: send them in one request.
	for i := 0; i < len(actions); {
		c := actions[i]
		switch c.Kind {
		case CreateTopic:
			record(actions[i:i+1], create(ctx, adm, c.Topic, dryRun))
			i++
		case RaisePartitions:
			record(actions[i:i+1], raise(ctx, adm, c.Topic, dryRun))
			i++
		case AlterConfig:
			j := i + 1
			for j < len(actions) && actions[j].Kind == AlterConfig && actions[j].Topic.Name == c.Topic.Name {
				j++
			}
			record(actions[i:j], alter(ctx, adm, c.Topic.Name, actions[i:j], dryRun))
			i = j
		default:
			i++
		}
	}
	return rep, errors.Join(errs...)
}

func withMessage(err error, msg string) error {
	if err != nil && msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

func create(ctx context.Context, adm *kadm.Client, t Topic, dryRun bool) error {
	cfg := make(map[string]*string, len(t.Configs))
	for k, v := range t.Configs {
		cfg[k] = kadm.StringPtr(v)
	}
	do := adm.CreateTopics
	if dryRun {
		do = adm.ValidateCreateTopics
	}
	rs, err := do(ctx, t.Partitions, t.Replication, cfg, t.Name)
	if err != nil {
		return err
	}
	r, err := rs.On(t.Name, nil)
	if err != nil {
		return fmt.Errorf("no answer for the topic: %w", err)
	}
	return withMessage(r.Err, r.ErrMessage)
}

func raise(ctx context.Context, adm *kadm.Client, t Topic, dryRun bool) error {
	do := adm.UpdatePartitions
	if dryRun {
		do = adm.ValidateUpdatePartitions
	}
	rs, err := do(ctx, int(t.Partitions), t.Name)
	if err != nil {
		return err
	}
	r, err := rs.On(t.Name, nil)
	if err != nil {
		return fmt.Errorf("no answer for the topic: %w", err)
	}
	return withMessage(r.Err, r.ErrMessage)
}

func alter(ctx context.Context, adm *kadm.Client, topic string, cs []Change, dryRun bool) error {
	var acs []kadm.AlterConfig
	for _, c := range cs {
		acs = append(acs, kadm.AlterConfig{Op: kadm.SetConfig, Name: c.Key, Value: kadm.StringPtr(c.To)})
	}
	do := adm.AlterTopicConfigs
	if dryRun {
		do = adm.ValidateAlterTopicConfigs
	}
	rs, err := do(ctx, acs, topic)
	if err != nil {
		return err
	}
	r, err := rs.On(topic, nil)
	if err != nil {
		return fmt.Errorf("no answer for the topic: %w", err)
	}
	return withMessage(r.Err, r.ErrMessage)
}
