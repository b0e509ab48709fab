// SPDX-License-Identifier: MIT
// drover patch: tests of drover's fixes (see DROVER.md).

package mqtt

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mochi-mqtt/server/v2/packets"
)

// v5SubAck encodes an MQTT 5 SUBACK or UNSUBACK with the packet id, an
// optional reason string as its only property, and the reason codes.
func v5SubAck(typ byte, id uint16, reasonString string, codes ...byte) []byte {
	var props []byte
	if reasonString != "" {
		props = append([]byte{packets.PropReasonString, 0, byte(len(reasonString))}, reasonString...)
	}
	body := append([]byte{byte(id >> 8), byte(id), byte(len(props))}, props...)
	body = append(body, codes...)
	return append([]byte{typ << 4, byte(len(body))}, body...)
}

func TestServerSendConnackTopicAliasMaximum(t *testing.T) {
	s := newServer()
	s.Options.Capabilities.TopicAliasMaximum = 10
	s.Options.Capabilities.ReceiveMaximum = 0
	cl, r, w := newTestClient()
	cl.Properties.ProtocolVersion = 5
	go func() {
		require.NoError(t, s.SendConnack(cl, packets.CodeSuccess, false, nil))
		_ = w.Close()
	}()
	buf, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, []byte{packets.Connack << 4, 6, 0, 0, 3, packets.PropTopicAliasMaximum, 0, 10}, buf)
}

// drover patch 10: GetByListener must not take the read lock twice: a
// writer (a client attaching, Delete) queued between the two read locks
// makes the second wait for the writer and the writer for the first. Run
// both side by side until one of the old code's interleavings deadlocks.
func TestGetByListenerWithWritersDoesNotDeadlock(t *testing.T) {
	cl := NewClients()
	cl.Add(&Client{ID: "a", Net: ClientConnection{Listener: "tcp"}})
	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			select {
			case <-stop:
				return
			default:
				_ = cl.GetByListener("tcp")
			}
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			select {
			case <-stop:
				return
			default:
				cl.Add(&Client{ID: "b", Net: ClientConnection{Listener: "tcp"}})
				cl.Delete("b")
			}
		}
	}()
	time.Sleep(time.Second)
	close(stop)
	for i := 0; i < 2; i++ {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("GetByListener and Delete deadlocked (the read lock taken twice)")
		}
	}
}
