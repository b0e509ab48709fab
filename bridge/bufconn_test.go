package bridge

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// TestBufConnWritesWholePackets: paho writes one packet in several Writes
// (fixed header, variable header, properties, payload) and holds the
// connection's lock across them only when the connection is a sync.Locker.
// bufConn must be one: the downlink publishes from several goroutines
// while paho sends PUBACKs, and interleaved fragments are a corrupt
// stream to the broker (it drops the connection, or worse, reads a
// fragment as a PUBACK for some other message).
func TestBufConnWritesWholePackets(t *testing.T) {
	client, server := net.Pipe()
	c := newBufConn(client)
	defer c.Close()
	defer server.Close()
	if _, ok := net.Conn(c).(sync.Locker); !ok {
		t.Fatal("bufConn is not a sync.Locker: paho writes its packets' fragments unlocked")
	}
	const writers, each, rounds = 8, 4000, 4 // packet ids up to 32,000, each used once per round
	errs := make(chan error, writers)        // not t.Error: a writer may fail after the test ended
	go func() {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range rounds * each {
					id := uint16(w*each + i%each + 1)
					var err error
					if w%2 == 0 {
						_, err = (&packets.Publish{Topic: "devices/f/d/commands/c-" + strconv.Itoa(int(id)), QoS: 1, PacketID: id,
							Properties: &packets.Properties{CorrelationData: []byte(strconv.Itoa(int(id)))},
							Payload:    []byte(fmt.Sprintf(`{"command_id":"c-%d"}`, id))}).WriteTo(c)
					} else {
						_, err = (&packets.Puback{PacketID: id, Properties: &packets.Properties{}}).WriteTo(c)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
	}()
	_ = server.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(server)
	for n := range writers * each * rounds {
		cp, err := packets.ReadPacket(r)
		if err != nil {
			t.Fatalf("packet %d: %v (fragments of packets written at once interleaved)", n, err)
		}
		switch p := cp.Content.(type) {
		case *packets.Publish:
			id := strconv.Itoa(int(p.PacketID))
			if p.Topic != "devices/f/d/commands/c-"+id || string(p.Payload) != `{"command_id":"c-`+id+`"}` ||
				p.Properties == nil || string(p.Properties.CorrelationData) != id {
				t.Fatalf("packet %d: publish %d mangled: topic %q payload %q", n, p.PacketID, p.Topic, p.Payload)
			}
		case *packets.Puback:
			if p.PacketID == 0 || (int(p.PacketID)-1)/each%2 != 1 {
				t.Fatalf("packet %d: PUBACK for %d, which no writer acknowledged", n, p.PacketID)
			}
		default:
			t.Fatalf("packet %d: unexpected %T", n, p)
		}
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}
