// Package doorsdev runs the HTTP and CoAP doors as `drover dev` stages, on
// loopback, over the embedded stack. It is the only door code that knows
// devstack.
package doorsdev

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devstage"
	"github.com/drover-iot/drover/doors/coap"
	"github.com/drover-iot/drover/doors/doorscmd"
	"github.com/drover-iot/drover/doors/httpapi"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/lorawan"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
)

// Default ports in drover dev (a taken TCP port falls back to a free one).
const (
	DefaultHTTPPort = 9484
	DefaultCoAPPort = 5683
)

// stage is what both stages share: the core over the embedded stack.
type stage struct {
	mu    sync.Mutex
	adm   *admin.Server
	url   string
	ready error
	token string // the HTTP stage's LoRaWAN webhook token file
}

func (s *stage) set(url string, err error) {
	s.mu.Lock()
	s.url, s.ready = url, err
	s.mu.Unlock()
}

func (s *stage) get() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url, s.ready
}

// open starts the registry view and the core on the embedded stack.
func (s *stage) open(ctx context.Context, ep devstage.Endpoints, log *slog.Logger) (*ingest.Core, *registry.View, func(), error) {
	reg, err := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
	if err != nil {
		return nil, nil, nil, err
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		return nil, nil, nil, err
	}
	kopts := []kgo.Opt{kgo.SeedBrokers(strings.Split(ep.KafkaBrokers, ",")...)}
	if s.adm == nil {
		s.adm = admin.New("", log)
	}
	view, err := registry.NewView(kopts, serde, registry.WithLogger(log), registry.WithRegisterer(s.adm.Registry))
	if err != nil {
		return nil, nil, nil, err
	}
	prod, err := kgo.NewClient(append(kopts, kgo.ProducerLinger(ingest.ProducerLinger))...)
	if err != nil {
		return nil, nil, nil, err
	}
	core, err := ingest.NewCore(ingest.Config{Kafka: prod, Serde: serde, Routes: routes.Default(), Registry: view, Log: log})
	if err != nil {
		prod.Close()
		return nil, nil, nil, err
	}
	vctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := view.Run(vctx); err != nil && vctx.Err() == nil {
			log.Error("registry view stopped", "err", err)
		}
	}()
	s.adm.AddCheck("registry", view.Check)
	return core, view, func() { cancel(); <-done; prod.Close() }, nil
}

// HTTPStage is `drover http` in drover dev: on 127.0.0.1 (--http-port,
// default 9484), its URL in the env file as DROVER_HTTP_URL. It also
// serves the LoRaWAN webhooks (/v1/lorawan/chirpstack and /v1/lorawan/tts)
// with one generated token for both, in the file
// DROVER_DEV_LORAWAN_TOKEN_FILE names (data directory, mode 0600).
func HTTPStage() devstage.Stage {
	var port int
	s := &stage{ready: errors.New("http door not started")}
	return devstage.Stage{
		Name:      "http",
		AdminPort: admin.Port(doorscmd.DefaultHTTPAdminAddr),
		Admin:     func(a *admin.Server) { s.adm = a },
		Flags: func(fs *pflag.FlagSet) {
			fs.IntVar(&port, "http-port", DefaultHTTPPort, "http: port of the HTTP door on 127.0.0.1 (0 = any free port)")
		},
		Check: func() error {
			if port < 0 || port > 65535 {
				return cli.Usagef("--http-port: %d is not a port (0-65535)", port)
			}
			return nil
		},
		Ready: func(context.Context) error { _, err := s.get(); return err },
		Env: func() [][2]string {
			u, _ := s.get()
			s.mu.Lock()
			defer s.mu.Unlock()
			env := [][2]string{{"DROVER_HTTP_URL", u}}
			if s.token != "" {
				env = append(env, [2]string{"DROVER_DEV_LORAWAN_TOKEN_FILE", s.token})
			}
			return env
		},
		Run: func(ctx context.Context, ep devstage.Endpoints, log *slog.Logger) error {
			core, view, closeCore, err := s.open(ctx, ep, log)
			if err != nil {
				return fmt.Errorf("http: %w", err)
			}
			defer closeCore()
			s.serveAdmin(ctx)
			l, err := listenTCP(log, port)
			if err != nil {
				return fmt.Errorf("http: %w", err)
			}
			tokFile, tok, err := loraToken(ep.DataDir)
			if err != nil {
				l.Close()
				return fmt.Errorf("http: %w", err)
			}
			lora := httpapi.WithLoRaWAN(httpapi.LoRaWAN{Tokens: map[lorawan.Network]string{lorawan.ChirpStack: tok, lorawan.TTS: tok},
				Dedup: lorawan.NewDedup(10*time.Minute, 100_000)})
			srv, err := httpapi.New(httpapi.Config{Log: log, Registerer: s.adm.Registry}, view, core, lora)
			if err != nil {
				l.Close()
				return err
			}
			s.mu.Lock()
			s.token = tokFile
			s.mu.Unlock()
			if err := view.WaitReady(ctx); err != nil {
				l.Close()
				return nil
			}
			s.set("http://"+l.Addr().String(), nil)
			return srv.Serve(ctx, l)
		},
	}
}

// CoAPStage is `drover coap` in drover dev: plain CoAP on 127.0.0.1
// (--coap-port, default 5683; no DTLS, so no device identity: the registry
// still checks the path's device), its URL in the env file as
// DROVER_COAP_URL.
func CoAPStage() devstage.Stage {
	var port int
	s := &stage{ready: errors.New("coap door not started")}
	return devstage.Stage{
		Name:      "coap",
		AdminPort: admin.Port(doorscmd.DefaultCoAPAdminAddr),
		Admin:     func(a *admin.Server) { s.adm = a },
		Flags: func(fs *pflag.FlagSet) {
			fs.IntVar(&port, "coap-port", DefaultCoAPPort, "coap: UDP port of plain CoAP on 127.0.0.1 (0 = any free port)")
		},
		Check: func() error {
			if port < 0 || port > 65535 {
				return cli.Usagef("--coap-port: %d is not a port (0-65535)", port)
			}
			return nil
		},
		Ready: func(context.Context) error { _, err := s.get(); return err },
		Env: func() [][2]string {
			u, _ := s.get()
			return [][2]string{{"DROVER_COAP_URL", u}}
		},
		Run: func(ctx context.Context, ep devstage.Endpoints, log *slog.Logger) error {
			core, view, closeCore, err := s.open(ctx, ep, log)
			if err != nil {
				return fmt.Errorf("coap: %w", err)
			}
			defer closeCore()
			s.serveAdmin(ctx)
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			if pc, err := net.ListenPacket("udp", addr); err != nil {
				log.Warn("port taken, using another", "service", "coap", "wanted_port", port, "err", err)
				addr = "127.0.0.1:0"
			} else {
				pc.Close()
			}
			srv, err := coap.New(coap.Config{UDPAddr: addr, Insecure: true, Log: log}, core)
			if err != nil {
				return err
			}
			if err := view.WaitReady(ctx); err != nil {
				return nil
			}
			errc := make(chan error, 1)
			go func() { errc <- srv.Run(ctx) }()
			u, _, err := srv.Addrs(ctx)
			if err != nil {
				return <-errc
			}
			s.set("coap://"+u.String(), nil)
			return <-errc
		},
	}
}

// serveAdmin serves the admin server drover dev gave the stage (already
// listening) while the stage runs.
func (s *stage) serveAdmin(ctx context.Context) {
	if s.adm.Addr() != "" {
		go func() { _ = s.adm.Run(ctx) }()
	}
}

func listenTCP(log *slog.Logger, port int) (net.Listener, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err == nil {
		return l, nil
	}
	log.Warn("port taken, using another", "service", "http", "wanted_port", port, "err", err)
	return net.Listen("tcp", "127.0.0.1:0")
}

// loraToken returns the dev stack's LoRaWAN webhook token and its file in
// dir (lorawan-token), generating it on first use.
func loraToken(dir string) (file, token string, err error) {
	file = filepath.Join(dir, "lorawan-token")
	if b, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return file, strings.TrimSpace(string(b)), nil
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", err
	}
	token = hex.EncodeToString(raw[:])
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("lorawan webhook token: %w", err)
	}
	return file, token, nil
}
