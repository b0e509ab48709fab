package devstage

import (
	"context"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/drover-iot/drover/admin"
)

// Stage is a pipeline stage that `drover dev` runs on top of the embedded
// stack once it is ready (bridge, processors, sink, simulator). Run blocks
// until ctx is cancelled and returns nil on a clean stop; an error stops
// the whole dev process.
type Stage struct {
	Name string
	Run  func(ctx context.Context, ep Endpoints, log *slog.Logger) error
	// OnObjectCreated, if set, is called for every object the embedded S3
	// stores (the stand-in for S3 bucket notifications).
	OnObjectCreated func(bucket, key string, size int64, etag, contentType string, meta map[string]string)
	// Flags, if set, adds the stage's own flags to `drover dev` (e.g. the
	// processors' --alert-rules).
	Flags func(fs *pflag.FlagSet)
	// Check, if set, validates those flags before anything starts, so a
	// bad value fails fast (exit 2) instead of after the stack is up. It is
	// not called for stages that will not run (--skip, --no-pipeline).
	Check func() error
	// Ready, if set, reports nil once the stage accepts work (the bridge:
	// subscribed). `drover dev` writes the env file only when every running
	// stage is ready, so a script that waits for the file and then
	// publishes loses nothing to a bridge that has not subscribed yet.
	Ready func(ctx context.Context) error
	// AdminPort is the port of the stage's admin server on --listen-host
	// (the stage's usual admin port; a taken one falls back to a free
	// port, logged); 0 = any free port.
	AdminPort int
	// Admin, if set, receives the stage's admin server (already listening)
	// before Run: the stage registers its metrics, readiness checks and
	// handlers on it and serves it (admin.Server.Run) while it runs. A
	// stage without Admin gets one that `drover dev` serves itself, with
	// /healthz, /metrics and /readyz (Ready, if set). Either way /readyz
	// also fails once Run has returned.
	Admin func(*admin.Server)
	// Env, if set, returns extra KEY=VALUE lines for the env file and the
	// ready summary (the console's URL, say); it is called once every
	// stage is ready.
	Env func() [][2]string
}
