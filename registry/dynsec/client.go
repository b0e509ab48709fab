package dynsec

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// The control topics of Mosquitto's dynamic security plugin.
const (
	ControlTopic  = "$CONTROL/dynamic-security/v1"
	ResponseTopic = ControlTopic + "/response"
)

// ClientConfig says how to reach Mosquitto as the dynsec administrator.
type ClientConfig struct {
	URL      string // tcp://host:1883 or ssl://host:8883
	Username string
	Password []byte
	ClientID string      // default "drover-registry-dynsec"
	TLS      *tls.Config // for ssl:// (nil: system roots)
	// Timeout bounds one request (default 10s).
	Timeout time.Duration
	Log     *slog.Logger
}

// Client sends dynamic-security commands and waits for their responses.
// It keeps its MQTT connection up (reconnecting with back-off) and is safe
// for concurrent use; requests are sent one at a time.
type Client struct {
	cfg     ClientConfig
	cm      *autopaho.ConnectionManager
	subbed  atomic.Bool
	subCh   chan struct{} // signalled after each (re)subscription
	reqMu   sync.Mutex
	mu      sync.Mutex
	waiting map[string]chan Response
	seq     atomic.Uint64
}

// Command is one dynsec command: {"command": name, ...parameters}.
type Command map[string]any

// Response is the plugin's answer to one command.
type Response struct {
	Command         string          `json:"command"`
	Error           string          `json:"error,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
	CorrelationData string          `json:"correlationData,omitempty"`
}

// Err returns the response's error, nil on success.
func (r Response) Err() error {
	if r.Error == "" {
		return nil
	}
	return &CommandError{Command: r.Command, Msg: r.Error}
}

// CommandError is an error the plugin answered a command with.
type CommandError struct {
	Command string
	Msg     string
}

func (e *CommandError) Error() string { return fmt.Sprintf("dynsec %s: %s", e.Command, e.Msg) }

// IsNotFound reports whether err is a dynsec "... not found" answer.
func IsNotFound(err error) bool {
	var ce *CommandError
	return errors.As(err, &ce) && strings.HasSuffix(ce.Msg, "not found")
}

// Dial connects to Mosquitto and subscribes to the response topic; it
// returns once connected or when ctx is done. Close the client with Close.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("dynsec: MQTT URL %q: want tcp://host:port or ssl://host:port", cfg.URL)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "drover-registry-dynsec"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &Client{cfg: cfg, subCh: make(chan struct{}, 1), waiting: map[string]chan Response{}}
	cm, err := autopaho.NewConnection(context.WithoutCancel(ctx), autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        cfg.TLS,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		ConnectUsername:               cfg.Username,
		ConnectPassword:               cfg.Password,
		ConnectTimeout:                cfg.Timeout,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(200*time.Millisecond, 10*time.Second, time.Second, 2),
		OnConnectionUp:                c.onUp,
		OnConnectionDown:              func() bool { c.subbed.Store(false); return true },
		OnConnectError: func(err error) {
			cfg.Log.Warn("dynsec: connecting to mosquitto failed", "url", cfg.URL, "err", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID:          cfg.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){c.onPublish},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("dynsec: %w", err)
	}
	c.cm = cm
	if err := c.awaitSubscribed(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) onUp(cm *autopaho.ConnectionManager, _ *paho.Connack) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
		defer cancel()
		sa, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: ResponseTopic, QoS: 1}}})
		if err == nil && len(sa.Reasons) == 1 && sa.Reasons[0] >= 0x80 {
			err = fmt.Errorf("mosquitto refused the subscription to %s (reason 0x%02x): does %s have the dynsec admin role?", ResponseTopic, sa.Reasons[0], c.cfg.Username)
		}
		if err != nil {
			c.cfg.Log.Error("dynsec: subscribing to the responses failed", "err", err)
			return
		}
		c.subbed.Store(true)
		select {
		case c.subCh <- struct{}{}:
		default:
		}
	}()
}

func (c *Client) awaitSubscribed(ctx context.Context) error {
	for !c.subbed.Load() {
		select {
		case <-c.subCh:
		case <-ctx.Done():
			return fmt.Errorf("dynsec: not connected and subscribed to %s at %s: %w", ResponseTopic, c.cfg.URL, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func (c *Client) onPublish(pr paho.PublishReceived) (bool, error) {
	if pr.Packet.Topic != ResponseTopic {
		return true, nil
	}
	var msg struct {
		Responses []Response `json:"responses"`
	}
	if err := json.Unmarshal(pr.Packet.Payload, &msg); err != nil {
		c.cfg.Log.Warn("dynsec: undecodable response", "err", err)
		return true, nil
	}
	c.mu.Lock()
	for _, r := range msg.Responses {
		if ch, ok := c.waiting[r.CorrelationData]; ok {
			ch <- r
			delete(c.waiting, r.CorrelationData)
		}
	}
	c.mu.Unlock()
	return true, nil
}

// Do sends cmds in one control message and returns their responses in
// order. A command the plugin refused has Response.Err set; Do's error is
// for the transport (not connected, no answer within the timeout).
func (c *Client) Do(ctx context.Context, cmds ...Command) ([]Response, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if err := c.awaitSubscribed(ctx); err != nil {
		return nil, err
	}
	chans := make([]chan Response, len(cmds))
	ids := make([]string, len(cmds))
	c.mu.Lock()
	for i, cmd := range cmds {
		ids[i] = "drover-" + strconv.FormatUint(c.seq.Add(1), 10)
		cmd["correlationData"] = ids[i]
		chans[i] = make(chan Response, 1)
		c.waiting[ids[i]] = chans[i]
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		for _, id := range ids {
			delete(c.waiting, id)
		}
		c.mu.Unlock()
	}()
	body, err := json.Marshal(map[string]any{"commands": cmds})
	if err != nil {
		return nil, fmt.Errorf("dynsec: %w", err)
	}
	if _, err := c.cm.Publish(ctx, &paho.Publish{Topic: ControlTopic, QoS: 1, Payload: body}); err != nil {
		return nil, fmt.Errorf("dynsec: publishing to %s: %w", ControlTopic, err)
	}
	out := make([]Response, len(cmds))
	for i, ch := range chans {
		select {
		case out[i] = <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("dynsec: no response to %v within %s", cmds[i]["command"], c.cfg.Timeout)
		}
	}
	return out, nil
}

// One sends a single command and returns its data, or its error.
func (c *Client) One(ctx context.Context, cmd Command) (json.RawMessage, error) {
	rs, err := c.Do(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return rs[0].Data, rs[0].Err()
}

// Close disconnects.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.cm.Disconnect(ctx)
	<-c.cm.Done()
	if errors.Is(err, autopaho.ConnectionDownError) {
		return nil
	}
	return err
}
