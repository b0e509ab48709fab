package devstack

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
)

// listen binds 127.0.0.1:port for service. Port 0 binds any free port. A
// taken port is replaced by a free one with a warning, unless strict.
func listen(log *slog.Logger, service string, port int, strict bool) (net.Listener, error) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err == nil {
		return l, nil
	}
	if port == 0 || strict || !errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s: listen on 127.0.0.1:%d: %w", service, port, err)
	}
	l, err2 := net.Listen("tcp", "127.0.0.1:0")
	if err2 != nil {
		return nil, fmt.Errorf("%s: port %d is taken (%v), and no free port: %w", service, port, err, err2)
	}
	log.Warn("port taken, using another", "service", service, "wanted_port", port, "port", portOf(l))
	return l, nil
}

// freePortFor returns port when it is free, else a free port (with the same
// warning as listen). The port is released before returning, for services
// that bind themselves (PostgreSQL).
func freePortFor(log *slog.Logger, service string, port int, strict bool) (int, error) {
	l, err := listen(log, service, port, strict)
	if err != nil {
		return 0, err
	}
	p := portOf(l)
	return p, l.Close()
}

func portOf(l net.Listener) int { return l.Addr().(*net.TCPAddr).Port }
