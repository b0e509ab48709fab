package groupkit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
)

// TestIntegrationGroupOverSASL runs a goka group (consumer group, table
// recovery, producer, topic manager) built by FromConn against an embedded
// Kafka that requires SASL, once per mechanism kfake implements, with the
// password from a file as in production. A wrong password must not get in.
func TestIntegrationGroupOverSASL(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	for _, mech := range []string{cli.SASLPlain, cli.SASLScramSHA256, cli.SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			const (
				group = "sasltest"
				input = "sasl-in"
				n     = 50
			)
			kc := devtest.Kafka(t, kfake.EnableSASL(), kfake.Superuser(mech, "drover-process", "s3cret"),
				kfake.SeedTopics(2, input, group+"-table"))
			dir := t.TempDir()
			pw := filepath.Join(dir, "password")
			if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			conn := &cli.Conn{KafkaBrokers: kc.ListenAddrs(), KafkaSASLMechanism: mech, KafkaSASLUser: "drover-process", KafkaSASLPassFile: pw}
			k, err := FromConn(conn)
			if err != nil {
				t.Fatal(err)
			}
			cl, err := conn.Kafka()
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for i := 0; i < n; i++ {
				r := &kgo.Record{Topic: input, Key: []byte(fmt.Sprintf("k%d", i%5)), Value: []byte("x")}
				if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			graph := goka.DefineGroup(group,
				goka.Input(input, new(codec.String), func(ctx goka.Context, _ interface{}) {
					var c int64
					if v := ctx.Value(); v != nil {
						c = v.(int64)
					}
					ctx.SetValue(c + 1)
				}),
				goka.Persist(new(codec.Int64)),
			)
			p, err := goka.NewProcessor(k.Brokers, graph, k.ProcessorOptions(group)...)
			if err != nil {
				t.Fatal(err)
			}
			pctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- p.Run(pctx) }()
			// goka's Get races with partition setup; ask once recovered.
			for !p.Recovered() {
				if ctx.Err() != nil {
					t.Fatalf("processor never recovered over %s", mech)
				}
				time.Sleep(50 * time.Millisecond)
			}
			var sum int64
			for sum != n {
				if ctx.Err() != nil {
					t.Fatalf("counted %d of %d records over %s", sum, n, mech)
				}
				time.Sleep(50 * time.Millisecond)
				sum = 0
				for i := 0; i < 5; i++ {
					if v, err := p.Get(fmt.Sprintf("k%d", i)); err == nil && v != nil {
						sum += v.(int64)
					}
				}
			}
			stop()
			if err := <-done; err != nil {
				t.Fatalf("processor: %v", err)
			}

			// A wrong password is refused: the processor fails instead of
			// consuming.
			if err := os.WriteFile(pw, []byte("wrong"), 0o600); err != nil {
				t.Fatal(err)
			}
			bad, err := FromConn(conn)
			if err != nil {
				t.Fatal(err)
			}
			bad.Config.Metadata.Retry.Max = 0
			bctx, bcancel := context.WithTimeout(ctx, 20*time.Second)
			defer bcancel()
			bp, err := goka.NewProcessor(bad.Brokers, graph, bad.ProcessorOptions(group)...)
			if err == nil {
				err = bp.Run(bctx)
			}
			t.Logf("wrong password: %v", err)
			if err == nil || bctx.Err() != nil {
				t.Fatalf("wrong password: processor error %v (context %v), want an authentication failure", err, bctx.Err())
			}
		})
	}
}
