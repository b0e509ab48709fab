package processors

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devstage"
	"github.com/drover-iot/drover/processors/alerts"
	"github.com/drover-iot/drover/processors/apps"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
)

// DevStage returns the processors as a `drover dev` stage named
// "processors": every group (o.Groups empty) or the chosen ones, on the
// embedded stack. Its admin server (/metrics, /healthz, /readyz,
// /devices/{id}) is the one `drover dev` gives it, on --listen-host at the
// port of adminAddr (the process default is DefaultAdminAddr; a taken port
// falls back to a free one, logged).
//
// The stage adds three flags to `drover dev`: --alert-rules (a YAML rule file
// instead of the embedded defaults, checked before the stack starts),
// --alert-check-interval (the offline sweep), and --apps (a stream apps
// file instead of the example apps; none for no apps), so a smoke run or a demo with
// short offline rules needs no separate `drover process`.
func DevStage(o Options, adminAddr string) devstage.Stage {
	var rulesFile, appsFile string
	var checkEvery time.Duration
	var adm *admin.Server
	return devstage.Stage{
		Name:      "processors",
		AdminPort: admin.Port(adminAddr),
		Admin:     func(a *admin.Server) { adm = a },
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&rulesFile, "alert-rules", "", "processors: YAML alert rule file (empty = the embedded default rules)")
			fs.DurationVar(&checkEvery, "alert-check-interval", alerts.DefaultCheckInterval, "processors: how often the offline sweep runs")
			fs.StringVar(&appsFile, "apps", "", "processors: stream apps file (empty = the example apps of 'drover apps list'; none = no apps)")
		},
		Check: func() error {
			if checkEvery <= 0 {
				return cli.Usagef("--alert-check-interval: %v is not positive", checkEvery)
			}
			o.AlertCheckInterval = checkEvery
			switch appsFile {
			case "none":
			case "":
				as, err := apps.Example()
				if err != nil {
					return fmt.Errorf("example apps: %w", err)
				}
				o.Apps = as
			default:
				as, err := apps.Load(appsFile)
				if err != nil {
					return cli.Usagef("--apps: %w", err)
				}
				o.Apps = as
			}
			if rulesFile == "" {
				return nil
			}
			rs, err := alerts.LoadRules(rulesFile)
			if err != nil {
				return cli.Usagef("--alert-rules: %w", err)
			}
			o.Alerts = append(o.Alerts, alerts.WithRules(rs))
			return nil
		},
		Run: func(ctx context.Context, ep devstage.Endpoints, log *slog.Logger) error {
			brokers := strings.Split(ep.KafkaBrokers, ",")
			reg, err := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
			if err != nil {
				return fmt.Errorf("processors: registry: %w", err)
			}
			serde, err := schemas.NewSerde(reg)
			if err != nil {
				return fmt.Errorf("processors: %w", err)
			}
			o.KafkaOpts = []kgo.Opt{kgo.SeedBrokers(brokers...)}
			var metrics prometheus.Registerer
			if adm != nil {
				metrics = adm.Registry
			}
			if o.Devices, err = OpenDevices(ctx, o.KafkaOpts, serde, log, metrics); err != nil {
				return fmt.Errorf("processors: device registry: %w", err)
			}
			if len(o.Apps) > 0 {
				pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				o.AppsSerde, err = PrepareApps(pctx, o.KafkaOpts, reg, o.Apps, 1)
				cancel()
				if err != nil {
					return fmt.Errorf("processors: %w", err)
				}
			}
			g, gctx := errgroup.WithContext(ctx)
			if v := o.Devices; v != nil {
				g.Go(func() error { return v.Run(gctx) })
			}
			if adm != nil { // nil when run outside drover dev
				g.Go(func() error { return adm.Run(gctx) })
			}
			g.Go(func() error { return Run(gctx, groupkit.NewKafka(brokers), serde, o, adm, log) })
			return g.Wait()
		},
	}
}
