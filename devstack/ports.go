package devstack

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"syscall"
)

// listen binds host:port for service. Port 0 binds any free port. A taken
// port is replaced by a free one with a warning, unless strict.
func listen(log *slog.Logger, service, host string, port int, strict bool) (net.Listener, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err == nil {
		return l, nil
	}
	if port == 0 || strict || !errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s: listen on %s: %w", service, addr, err)
	}
	l, err2 := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err2 != nil {
		return nil, fmt.Errorf("%s: port %d is taken (%v), and no free port: %w", service, port, err, err2)
	}
	log.Warn("port taken, using another", "service", service, "wanted_port", port, "port", portOf(l))
	return l, nil
}

// freePortFor returns port when it is free on 127.0.0.1, else a free port
// (with the same warning as listen). The port is released before returning,
// for services that bind themselves (PostgreSQL).
func freePortFor(log *slog.Logger, service string, port int, strict bool) (int, error) {
	l, err := listen(log, service, loopback, port, strict)
	if err != nil {
		return 0, err
	}
	p := portOf(l)
	return p, l.Close()
}

func portOf(l net.Listener) int { return l.Addr().(*net.TCPAddr).Port }

// loopback is the default listen host of every dev service.
const loopback = "127.0.0.1"

// checkListenHost validates Config.ListenHost: an IP address of this
// machine, or empty for the default (127.0.0.1).
func checkListenHost(host string) error {
	if host == "" || net.ParseIP(host) != nil {
		return nil
	}
	return fmt.Errorf("%q is not an IP address (127.0.0.1, 0.0.0.0, ::1, an address of this machine)", host)
}

// dialHost is the host clients are told to connect to for services bound to
// host: an unspecified address (0.0.0.0, ::) is reachable here on loopback.
func dialHost(host string) string {
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return loopback
	}
	return host
}

// hostPort is host:port of l for clients: the bound port on dialHost(host).
func hostPort(host string, l net.Listener) string {
	return net.JoinHostPort(dialHost(host), strconv.Itoa(portOf(l)))
}

// advertisedListener reports a dialable address (see dialHost) as its Addr,
// for kfake, which advertises its listener's address to Kafka clients.
type advertisedListener struct {
	net.Listener
	addr net.Addr
}

func (l advertisedListener) Addr() net.Addr { return l.addr }

func advertised(l net.Listener, host string) net.Listener {
	a := *l.Addr().(*net.TCPAddr)
	a.IP = net.ParseIP(dialHost(host))
	return advertisedListener{Listener: l, addr: &a}
}
