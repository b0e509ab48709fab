package emqx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drover-iot/drover/registry"
)

// Kicker disconnects devices through EMQX 5's REST API
// (DELETE /api/v5/clients/{clientid}, HTTP basic authentication with an API
// key and its secret) when the registry suspends, revokes or deletes them,
// so they do not stay connected until their next CONNECT (which the HTTP
// authentication then refuses). EMQX's authorization cache goes with the
// connection.
type Kicker struct {
	base      *url.URL
	key       string
	secret    string
	client    *http.Client
	log       *slog.Logger
	kicks     *prometheus.CounterVec
	queue     chan string
	retryWait time.Duration
}

// NewKicker returns a kicker for the EMQX management API at apiURL (e.g.
// http://emqx:18083) with an API key and secret. reg, when not nil, gets
// drover_registry_emqx_kicks_total.
func NewKicker(apiURL, key, secret string, reg prometheus.Registerer, log *slog.Logger) (*Kicker, error) {
	u, err := url.Parse(apiURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("EMQX API URL %q: want http(s)://host:port", apiURL)
	}
	if log == nil {
		log = slog.Default()
	}
	k := &Kicker{base: u, key: key, secret: secret, client: &http.Client{Timeout: 10 * time.Second}, log: log,
		kicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_registry_emqx_kicks_total",
			Help: "Devices the registry asked EMQX to disconnect, by result (kicked, not_connected, error).",
		}, []string{"result"}),
		queue: make(chan string, 4096), retryWait: 2 * time.Second}
	if reg != nil {
		if err := reg.Register(k.kicks); err != nil {
			return nil, fmt.Errorf("emqx kicker metrics: %w", err)
		}
	}
	return k, nil
}

// Kick disconnects the client with clientID; a client EMQX does not know
// (not connected) is not an error.
func (k *Kicker) Kick(ctx context.Context, clientID string) error {
	// The client id "tenant/device" is one path segment: its '/' is escaped.
	u := strings.TrimSuffix(k.base.String(), "/") + "/api/v5/clients/" + url.PathEscape(clientID)
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(k.key, k.secret)
	resp, err := k.client.Do(req)
	if err != nil {
		k.kicks.WithLabelValues("error").Inc()
		return fmt.Errorf("emqx: kicking %s: %w", clientID, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK:
		k.kicks.WithLabelValues("kicked").Inc()
		return nil
	case http.StatusNotFound:
		k.kicks.WithLabelValues("not_connected").Inc()
		return nil
	}
	k.kicks.WithLabelValues("error").Inc()
	return fmt.Errorf("emqx: kicking %s: HTTP %d: %s", clientID, resp.StatusCode, strings.TrimSpace(string(body)))
}

// Run kicks every device the view reports as no longer active (suspended,
// revoked or deleted), retrying failures, until ctx is done.
func (k *Kicker) Run(ctx context.Context, view *registry.View) error {
	cancel := view.Subscribe(func(c registry.Change) {
		if !c.Deactivated() {
			return
		}
		select {
		case k.queue <- c.Key:
		default:
			k.log.Error("emqx: kick queue full; the device is refused at its next CONNECT only", "device", c.Key)
		}
	})
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case key := <-k.queue:
			for attempt := 1; ; attempt++ {
				err := k.Kick(ctx, key)
				if err == nil || ctx.Err() != nil {
					break
				}
				k.log.Warn("emqx: kick failed", "device", key, "attempt", attempt, "err", err)
				if attempt == 5 {
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(k.retryWait):
				}
			}
		}
	}
}

// ParseAPIKeyFile reads an API key and its secret from data in the format
// of EMQX's api_key.bootstrap_file — one key a line, "KEY:SECRET" or
// "KEY:SECRET:ROLE" (the role is EMQX Enterprise's) — so one secret file can
// seed EMQX's key at start and give drover the same credentials. With key
// empty the first key is taken, else the line of that key. Blank lines are
// skipped; a malformed line is an error naming its number (never its
// secret).
func ParseAPIKeyFile(data []byte, key string) (string, string, error) {
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return "", "", fmt.Errorf("line %d: want KEY:SECRET or KEY:SECRET:ROLE (EMQX's api_key.bootstrap_file format)", i+1)
		}
		if key == "" || parts[0] == key {
			return parts[0], parts[1], nil
		}
	}
	if key != "" {
		return "", "", fmt.Errorf("no line for API key %q", key)
	}
	return "", "", errors.New("no API key (want a line KEY:SECRET)")
}
