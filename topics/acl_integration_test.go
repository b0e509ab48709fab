package topics

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/drover-iot/drover/cli"
)

// secureCluster is a kfake cluster with SASL/PLAIN and the authorizer on:
// admin is the only super user; every declared principal (and "intruder",
// declared nowhere) is a plain SASL user with no ACL.
type secureCluster struct {
	addr  string
	admin *kadm.Client
	pass  map[string]string
}

const adminPass = "admin-secret"

func newSecureCluster(t *testing.T, set *ACLSet) *secureCluster {
	t.Helper()
	sc := &secureCluster{pass: map[string]string{"admin": adminPass}}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(), kfake.Superuser("PLAIN", "admin", adminPass)}
	for _, p := range append(slices.Clone(set.Principals), Principal{User: "intruder"}) {
		sc.pass[p.User] = p.User + "-secret"
		opts = append(opts, kfake.User("PLAIN", p.User, sc.pass[p.User]))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	sc.addr = c.ListenAddrs()[0]
	sc.admin = kadm.NewClient(sc.client(t, "admin"))
	return sc
}

// client is a franz-go client logged in as user.
func (sc *secureCluster) client(t *testing.T, user string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(sc.addr),
		kgo.SASL(plain.Auth{User: user, Pass: sc.pass[user]}.AsMechanism()),
		kgo.RetryTimeout(3 * time.Second), kgo.RecordDeliveryTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// passFile writes user's password to a file, for the command's flags.
func (sc *secureCluster) passFile(t *testing.T, user string) string {
	f := filepath.Join(t.TempDir(), user+".pw")
	if err := os.WriteFile(f, []byte(sc.pass[user]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// kafkaArgs are the topics command's connection flags for user.
func (sc *secureCluster) kafkaArgs(t *testing.T, user string) []string {
	return []string{"--kafka-brokers", sc.addr, "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-user", user,
		"--kafka-sasl-password-file", sc.passFile(t, user), "--timeout", "10s"}
}

func defaultSet(t *testing.T) (*Catalogue, *ACLSet) {
	t.Helper()
	cat := devCatalogue(t)
	set, err := DefaultACLs(cat)
	if err != nil {
		t.Fatal(err)
	}
	return cat, set
}

// TestIntegrationACLReconcile: apply creates every declared ACL, diff is
// then clean; a removed ACL is reported missing and re-created by apply,
// while extra ACLs of declared principals (and of User:*) are reported and
// left alone, and other principals' ACLs are only counted.
func TestIntegrationACLReconcile(t *testing.T) {
	cat, set := defaultSet(t)
	sc := newSecureCluster(t, set)
	ctx := testCtx(t)
	mustApply(t, sc.admin, mustDiff(t, sc.admin, cat), false)

	plan, err := DiffACLs(ctx, sc.admin, set)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(plan.Missing, set.ACLs()) || len(plan.Extra) != 0 {
		t.Fatalf("fresh cluster: %d missing (want %d), %d extra", len(plan.Missing), len(set.ACLs()), len(plan.Extra))
	}
	rep, err := ApplyACLs(ctx, sc.admin, plan, false)
	if err != nil {
		t.Fatalf("ApplyACLs: %v\n%s", err, rep)
	}
	if len(rep.Created) != len(set.ACLs()) {
		t.Fatalf("created %d ACLs, want %d", len(rep.Created), len(set.ACLs()))
	}
	if plan = mustDiffACLs(t, sc.admin, set); !plan.Empty() {
		t.Fatalf("after apply: %s", plan)
	}

	// Drift: one declared ACL removed, extras added.
	removed := ACL{Principal: "User:drover-sink", Host: "*", Resource: kmsg.ACLResourceTypeTopic, Name: RawSensor,
		Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationRead, Allow: true}
	del := kadm.NewACLs().Allow(removed.Principal).AllowHosts("*").Topics(RawSensor).Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral)
	if _, err := sc.admin.DeleteACLs(ctx, del); err != nil {
		t.Fatal(err)
	}
	extra := func(principal string, op kmsg.ACLOperation, topic string) ACL {
		a := ACL{Principal: principal, Host: "*", Resource: kmsg.ACLResourceTypeTopic, Name: topic, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true}
		if _, err := ApplyACLs(ctx, sc.admin, ACLPlan{Missing: []ACL{a}}, false); err != nil {
			t.Fatal(err)
		}
		return a
	}
	bridgeReads := extra("User:drover-bridge", kmsg.ACLOperationRead, RawSensor)
	everyoneReads := extra(wildcardPrincipal, kmsg.ACLOperationRead, Alerts)
	extra("User:someone-else", kmsg.ACLOperationWrite, RawGPS)

	plan = mustDiffACLs(t, sc.admin, set)
	if !slices.Equal(plan.Missing, []ACL{removed}) {
		t.Errorf("missing = %v, want only %s", plan.Missing, removed)
	}
	if want := []ACL{bridgeReads, everyoneReads}; !slices.Equal(plan.Extra, sortedACLs(want)) {
		t.Errorf("extra = %v, want %v", plan.Extra, want)
	}
	if plan.Unmanaged != 1 {
		t.Errorf("unmanaged = %d, want 1 (someone-else's)", plan.Unmanaged)
	}

	// The command: diff exits with drift, apply re-creates the missing ACL
	// and leaves the extra ones, with the command that removes them.
	args := append([]string{"diff", "--acls", "--replication-cap", "1"}, sc.kafkaArgs(t, "admin")...)
	out, _, err := run(t, args...)
	if !errors.Is(err, cli.ErrCheckFailed) {
		t.Fatalf("diff --acls: err = %v, want drift (exit 3)\n%s", err, out)
	}
	for _, want := range []string{"acl missing  " + removed.String(), "acl extra    " + bridgeReads.String(), "kafka-acls.sh --remove --allow-principal User:drover-bridge --operation read"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, append([]string{"apply", "--acls", "--replication-cap", "1"}, sc.kafkaArgs(t, "admin")...)...)
	if err != nil || !strings.Contains(out, "acl created: "+removed.String()) || !strings.Contains(out, "acl not applied: extra "+everyoneReads.String()) {
		t.Fatalf("apply --acls: %v\n%s", err, out)
	}
	if plan = mustDiffACLs(t, sc.admin, set); len(plan.Missing) != 0 || len(plan.Extra) != 2 {
		t.Errorf("after apply: %s", plan)
	}

	// Only the super user may change ACLs: a stage's principal is refused.
	if _, err := sc.admin.DeleteACLs(ctx, del); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, append([]string{"apply", "--acls", "--replication-cap", "1"}, sc.kafkaArgs(t, "drover-ops")...)...)
	if err == nil || !strings.Contains(err.Error(), "CLUSTER_AUTHORIZATION_FAILED") {
		t.Errorf("apply --acls as drover-ops: err = %v, want a cluster authorization failure\n%s", err, out)
	}
}

func mustDiffACLs(t *testing.T, adm *kadm.Client, set *ACLSet) ACLPlan {
	t.Helper()
	plan, err := DiffACLs(testCtx(t), adm, set)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func sortedACLs(acls []ACL) []ACL {
	acls = slices.Clone(acls)
	slices.SortFunc(acls, ACL.compare)
	return acls
}

// op is one thing a stage does against the cluster, and what the
// authorizer must answer: nil (allowed) or the denial.
type op struct {
	what  string // produce, group, read, create
	topic string
	group string
	deny  error
}

// TestIntegrationACLLeastPrivilege proves the declared ACLs end to end on
// kfake with the authorizer on: each stage's principal can do what the
// stage does and is refused the rest. The expectations are written out by
// hand, not derived from acls.yaml.
func TestIntegrationACLLeastPrivilege(t *testing.T) {
	cat, set := defaultSet(t)
	sc := newSecureCluster(t, set)
	ctx := testCtx(t)
	// Every catalogue topic but one goka loop, which the processors may
	// create; _schemas, which the registry creates.
	var plan Plan
	for _, c := range mustDiff(t, sc.admin, cat).Changes {
		if c.Topic.Name != "state-loop" {
			plan.Changes = append(plan.Changes, c)
		}
	}
	mustApply(t, sc.admin, plan, false)
	if _, err := ApplyACLs(ctx, sc.admin, mustDiffACLs(t, sc.admin, set), false); err != nil {
		t.Fatal(err)
	}
	// One record in partition 0 of every topic read below.
	seed := sc.client(t, "admin", kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for _, topic := range []string{RawSensor, RawGPS, Commands, MediaEvents, DLQ, Alerts, "alerts-table", "state-table", DevicesRegistry, StateLatest} {
		// Keyed: some of these are compacted.
		if err := seed.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Key: []byte("seed/seed"), Value: []byte("seed")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// A principal with no WRITE anywhere (and no IdempotentWrite) cannot
	// even get a producer id: its idempotent producer fails on the cluster.
	topicDenied, groupDenied, noProducerID := kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed, kerr.ClusterAuthorizationFailed
	cases := []struct {
		user string
		ops  []op
	}{
		{"drover-bridge", []op{
			{what: "produce", topic: RawSensor}, {what: "produce", topic: RawGPS}, {what: "produce", topic: RawImage2D},
			{what: "produce", topic: DLQ},
			{what: "produce", topic: Features, deny: topicDenied}, {what: "produce", topic: StateLatest, deny: topicDenied},
			{what: "read", topic: Alerts, deny: topicDenied}, {what: "read", topic: RawSensor, deny: topicDenied},
			{what: "group", topic: Commands, group: "drover-bridge-downlink"}, {what: "read", topic: StateLatest},
			{what: "group", topic: Commands, group: "drover-sink", deny: groupDenied},
			{what: "create", topic: "raw.extra", deny: topicDenied},
			// Its registry view reads the registry; it may not change it.
			{what: "read", topic: DevicesRegistry}, {what: "produce", topic: DevicesRegistry, deny: topicDenied},
		}},
		{"drover-process", []op{
			{what: "group", topic: RawSensor, group: "features"}, {what: "group", topic: Alerts, group: "state-alerts"},
			{what: "read", topic: "alerts-table"},
			{what: "produce", topic: Features}, {what: "produce", topic: Alerts}, {what: "produce", topic: StateLatest},
			{what: "produce", topic: "features-table"}, {what: "produce", topic: DLQ},
			{what: "create", topic: "state-loop"},
			// state-alerts relays the desired-state commands; it may not send any.
			{what: "produce", topic: RawSensor, deny: topicDenied}, {what: "group", topic: Commands, group: "state-alerts"},
			{what: "produce", topic: Commands, deny: topicDenied},
			{what: "group", topic: RawSensor, group: "drover-sink", deny: groupDenied},
			{what: "create", topic: "features-extra", deny: topicDenied},
			{what: "read", topic: DevicesRegistry}, {what: "produce", topic: DevicesRegistry, deny: topicDenied},
		}},
		{"drover-sink", []op{
			{what: "group", topic: RawSensor, group: "drover-sink"}, {what: "group", topic: DLQ, group: "drover-sink"},
			{what: "produce", topic: RawSensor, deny: noProducerID}, {what: "produce", topic: DLQ, deny: noProducerID},
			{what: "group", topic: RawSensor, group: "features", deny: groupDenied},
			{what: "read", topic: Commands, deny: topicDenied},
			{what: "group", topic: DevicesRegistry, group: "drover-sink"},
		}},
		{"drover-registry", []op{
			{what: "produce", topic: DevicesRegistry}, {what: "read", topic: DevicesRegistry},
			// the API's desired state and device shadows
			{what: "produce", topic: Commands}, {what: "read", topic: StateLatest},
			{what: "produce", topic: RawSensor, deny: topicDenied}, {what: "read", topic: DLQ, deny: topicDenied},
			{what: "group", topic: DevicesRegistry, group: "drover-sink", deny: groupDenied},
		}},
		{"drover-media", []op{
			{what: "group", topic: MediaEvents, group: "drover-media"},
			{what: "produce", topic: RawImage2D}, {what: "produce", topic: RawVideo3D}, {what: "produce", topic: DLQ},
			{what: "produce", topic: RawSensor, deny: topicDenied}, {what: "produce", topic: MediaEvents, deny: topicDenied},
		}},
		{"drover-schedule", []op{
			{what: "read", topic: DLQ}, {what: "produce", topic: RawSensor}, {what: "produce", topic: RawImage3D},
			{what: "read", topic: RawSensor, deny: topicDenied}, {what: "produce", topic: Features, deny: topicDenied},
			{what: "group", topic: DLQ, group: "drover-sink", deny: groupDenied},
		}},
		{"drover-ops", []op{
			{what: "read", topic: RawSensor}, {what: "read", topic: DLQ}, {what: "read", topic: "state-table"},
			{what: "produce", topic: DLQ, deny: noProducerID}, {what: "group", topic: RawSensor, group: "drover-sink", deny: groupDenied},
		}},
		{"drover-console", []op{
			// Reads dead letters and every topic's offsets; re-drives into raw.*.
			{what: "read", topic: DLQ}, {what: "read", topic: RawSensor}, {what: "produce", topic: RawSensor},
			{what: "produce", topic: DLQ, deny: topicDenied}, {what: "group", topic: DLQ, group: "drover-sink", deny: groupDenied},
		}},
		{"schema-registry", []op{
			{what: "create", topic: "_schemas"}, {what: "produce", topic: "_schemas"}, {what: "group", topic: "_schemas", group: "schema-registry"},
			{what: "produce", topic: RawSensor, deny: topicDenied}, {what: "read", topic: RawSensor, deny: topicDenied},
		}},
		{"minio", []op{
			{what: "produce", topic: MediaEvents},
			{what: "produce", topic: RawSensor, deny: topicDenied}, {what: "read", topic: MediaEvents, deny: topicDenied},
		}},
		{"mirror", []op{
			{what: "read", topic: RawSensor}, {what: "read", topic: DLQ}, {what: "create", topic: "mm2-offset-syncs.backup.internal"},
			{what: "produce", topic: RawSensor, deny: topicDenied}, {what: "read", topic: Commands, deny: topicDenied},
		}},
		{"intruder", []op{
			// It may not even see the topics: metadata fails first.
			{what: "produce", topic: RawSensor, deny: topicDenied}, {what: "read", topic: DLQ, deny: topicDenied},
			{what: "group", topic: RawSensor, group: "drover-sink", deny: topicDenied},
			{what: "create", topic: "intruder-topic", deny: topicDenied},
		}},
	}
	for _, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			for _, o := range c.ops {
				err := sc.do(t, c.user, o)
				name := fmt.Sprintf("%s %s %s", o.what, o.topic, o.group)
				switch {
				case o.deny == nil && err != nil:
					t.Errorf("%s: refused, want allowed: %v", name, err)
				case o.deny != nil && !errors.Is(err, o.deny):
					t.Errorf("%s: err = %v, want %v", name, err, o.deny)
				}
			}
		})
	}
}

// do runs one op as user and returns what the cluster answered.
func (sc *secureCluster) do(t *testing.T, user string, o op) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	switch o.what {
	case "produce":
		return sc.client(t, user).ProduceSync(ctx, &kgo.Record{Topic: o.topic, Value: []byte(user)}).FirstErr()
	case "create":
		rs, err := kadm.NewClient(sc.client(t, user)).CreateTopics(ctx, 1, 1, nil, o.topic)
		if err != nil {
			return err
		}
		return rs[o.topic].Err
	case "read":
		return sc.poll(ctx, t, user, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.topic: {0: kgo.NewOffset().AtStart()}}))
	case "group":
		return sc.poll(ctx, t, user, kgo.ConsumerGroup(o.group), kgo.ConsumeTopics(o.topic), kgo.DisableAutoCommit(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	}
	t.Fatalf("unknown op %q", o.what)
	return nil
}

// poll consumes until a record arrives (then, in a group, commits it) or
// the cluster answers an error.
func (sc *secureCluster) poll(ctx context.Context, t *testing.T, user string, opts ...kgo.Opt) error {
	cl := sc.client(t, user, opts...)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("no record and no error: %w", ctx.Err())
		}
		for _, e := range fs.Errors() {
			return e.Err
		}
		if fs.NumRecords() > 0 {
			if _, grouped := cl.GroupMetadata(); grouped != -1 {
				return cl.CommitUncommittedOffsets(ctx)
			}
			return nil
		}
	}
}

// TestIntegrationACLSarama checks two principals with a second,
// independent client, IBM/sarama (the client goka's processors use): the
// bridge's producer may write raw.sensor and is refused features.events;
// the processors' principal may read a group table's configs, as goka's
// topic manager does at start, and not raw.sensor's. (kcat cannot log in to
// kfake: librdkafka requires SaslHandshake v0, which kfake does not serve.)
func TestIntegrationACLSarama(t *testing.T) {
	cat, set := defaultSet(t)
	sc := newSecureCluster(t, set)
	mustApply(t, sc.admin, mustDiff(t, sc.admin, cat), false)
	if _, err := ApplyACLs(testCtx(t), sc.admin, mustDiffACLs(t, sc.admin, set), false); err != nil {
		t.Fatal(err)
	}
	config := func(user string) *sarama.Config {
		c := sarama.NewConfig()
		c.Version = sarama.V3_6_0_0
		c.Net.SASL.Enable, c.Net.SASL.Mechanism = true, sarama.SASLTypePlaintext
		c.Net.SASL.User, c.Net.SASL.Password = user, sc.pass[user]
		c.Producer.Return.Successes, c.Producer.Retry.Max = true, 0
		c.Metadata.Retry.Max = 0
		return c
	}
	prod, err := sarama.NewSyncProducer([]string{sc.addr}, config("drover-bridge"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: RawSensor, Value: sarama.StringEncoder("sarama")}); err != nil {
		t.Errorf("sarama as drover-bridge to %s: %v", RawSensor, err)
	}
	if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: Features, Value: sarama.StringEncoder("sarama")}); !errors.Is(err, sarama.ErrTopicAuthorizationFailed) {
		t.Errorf("sarama as drover-bridge to %s: err = %v, want %v", Features, err, sarama.ErrTopicAuthorizationFailed)
	}
	adm, err := sarama.NewClusterAdmin([]string{sc.addr}, config("drover-process"))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: "features-table"}); err != nil {
		t.Errorf("sarama as drover-process: describe configs of features-table: %v", err)
	}
	if _, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: RawSensor}); err == nil || !strings.Contains(err.Error(), "authoriz") {
		t.Errorf("sarama as drover-process: describe configs of %s: err = %v, want an authorization failure", RawSensor, err)
	}
}
