package devstack

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/drover-iot/drover/registry"
)

// RegistryAuth is a hook for the embedded broker that enforces the device
// registry: CONNECT through registry.Auth (client id and username
// "tenant/device" with its secret, or an enrolled client certificate on a
// TLS listener), PUBLISH and SUBSCRIBE (and every delivery) through the
// principal's ACL, re-checked against the live view each time. RunKicker
// disconnects a device the registry suspends, revokes or deletes.
//
// It replaces auth.AllowHook: mochi allows a CONNECT when any hook allows
// it, so the two must not be added together. `drover dev` uses it through
// RegistryGate (Stack.EnforceRegistry).
type RegistryAuth struct {
	mqtt.HookBase
	srv        *mqtt.Server
	auth       *registry.Auth
	log        *slog.Logger
	principals sync.Map // *mqtt.Client → registry.Principal
}

// NewRegistryAuth returns the hook for srv; add it with srv.AddHook(h, nil).
func NewRegistryAuth(srv *mqtt.Server, auth *registry.Auth, log *slog.Logger) *RegistryAuth {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RegistryAuth{srv: srv, auth: auth, log: log}
}

// ID names the hook.
func (h *RegistryAuth) ID() string { return "drover-registry" }

// Provides says which events the hook handles.
func (h *RegistryAuth) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect}, []byte{b})
}

// OnConnectAuthenticate decides a CONNECT.
func (h *RegistryAuth) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	c := registry.Credentials{ClientID: cl.ID, Username: string(pk.Connect.Username), Password: pk.Connect.Password}
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
		if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
			c.Cert = st.PeerCertificates[0]
		}
	}
	p, err := h.auth.Connect(c)
	if err != nil {
		h.log.Info("mqtt: connect refused", "client_id", cl.ID, "username", c.Username, "err", err)
		return false
	}
	h.principals.Store(cl, p)
	return true
}

// OnACLCheck decides a PUBLISH (write) or a SUBSCRIBE or delivery (not
// write: mochi asks the same question for both, and a topic name is a
// filter that covers only itself).
func (h *RegistryAuth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	v, ok := h.principals.Load(cl)
	if !ok {
		return false
	}
	p := v.(registry.Principal)
	var err error
	if write {
		err = h.auth.Publish(p, topic)
	} else {
		err = h.auth.Subscribe(p, topic)
	}
	if err != nil {
		h.log.Debug("mqtt: refused", "client_id", cl.ID, "topic", topic, "write", write, "err", err)
		return false
	}
	return true
}

// OnDisconnect forgets the client's principal.
func (h *RegistryAuth) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.principals.Delete(cl) }

// RunKicker disconnects, within moments of the change reaching view, every
// connected device the registry no longer lets in, until ctx is done.
func (h *RegistryAuth) RunKicker(ctx context.Context, view *registry.View) error {
	kick := make(chan string, 1024)
	cancel := view.Subscribe(func(c registry.Change) {
		if c.Deactivated() {
			select {
			case kick <- c.Key:
			default:
				h.log.Error("mqtt: kick queue full; the device is refused at its next publish", "device", c.Key)
			}
		}
	})
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case key := <-kick:
			// A device's client id is its key (registry.Auth insists).
			if cl, ok := h.srv.Clients.Get(key); ok && !cl.Closed() {
				err := h.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
				if err != nil && !errors.Is(err, packets.ErrNotAuthorized) {
					h.log.Warn("mqtt: kicking a device failed", "device", key, "err", err)
				}
				h.log.Info("mqtt: disconnected a device the registry no longer lets in", "device", key)
			}
		}
	}
}
