package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 14, item 8: `drover dev`'s processors admin port listened on every
// interface and served device positions. Every listener of the dev process
// and its children (PostgreSQL) must bind loopback unless --listen-host says
// otherwise, and every long-running stage has /healthz and /readyz, listed
// in the env file.

// listener is a listening TCP socket.
type listener struct {
	ip   net.IP
	port int
}

// processTree returns pid and all its descendants.
func processTree(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", out[i]))
		for _, task := range tasks {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", out[i], task.Name()))
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil && !slices.Contains(out, c) {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// listeners returns the listening TCP sockets (IPv4 and IPv6) owned by the
// processes: socket inodes from /proc/PID/fd, addresses from /proc/net/tcp*.
func listeners(t *testing.T, pids []int) []listener {
	t.Helper()
	inodes := map[string]bool{}
	for _, pid := range pids {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if ino, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
				inodes[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	var out []listener
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A = LISTEN
				continue
			}
			host, portHex, _ := strings.Cut(f[1], ":")
			raw, _ := hex.DecodeString(host)
			// /proc/net/tcp prints the address as 32-bit words in host
			// (little-endian) order.
			for i := 0; i+4 <= len(raw); i += 4 {
				raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
			}
			port, _ := strconv.ParseUint(portHex, 16, 16)
			out = append(out, listener{ip: net.IP(raw), port: int(port)})
		}
	}
	return out
}

// portOf returns the port of a URL or host:port.
func portOf(t *testing.T, endpoint string) int {
	t.Helper()
	hostport := endpoint
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		hostport = u.Host
	}
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%s: %v", endpoint, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// TestIntegrationDevListenersLoopback runs the whole `drover dev` pipeline
// and checks, from /proc, that every socket the dev process and its
// children listen on is bound to loopback, that the endpoints it advertises
// are among them, and that every stage's /healthz and /readyz listed in the
// env file answer 200.
func TestIntegrationDevListenersLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole embedded stack and every stage")
	}
	p := startDevPipeline(t, t.TempDir(), true)
	env := p.waitReady(t)
	defer p.stop(t)

	ls := listeners(t, processTree(p.cmd.Process.Pid))
	ports := map[int]bool{}
	for _, l := range ls {
		ports[l.port] = true
		if !l.ip.IsLoopback() {
			t.Errorf("listener %s:%d is not on loopback", l.ip, l.port)
		}
	}
	t.Logf("%d listeners, all checked", len(ls))
	stages := []string{"BRIDGE", "PROCESSORS", "SINK", "SIMULATOR", "MEDIA"}
	endpoints := []string{env["DROVER_MQTT_URL"], env["DROVER_KAFKA_BROKERS"], env["DROVER_SCHEMA_REGISTRY_URL"],
		env["DROVER_S3_ENDPOINT"], env["DROVER_DATABASE_URL"]}
	for _, s := range stages {
		endpoints = append(endpoints, env["DROVER_DEV_"+s+"_HEALTHZ"])
	}
	for _, e := range endpoints {
		if e == "" {
			t.Fatalf("env file lacks an endpoint: %v", env)
		}
		if !ports[portOf(t, e)] {
			t.Errorf("%s: no listener of the dev process on its port", e)
		}
	}

	// Every stage's health URLs answer; /readyz says ready. The env file
	// is written when the stages start, so a stage still joining its
	// group (or the sink migrating) on a loaded machine is given a minute.
	client := &http.Client{Timeout: 10 * time.Second}
	for _, s := range stages {
		for _, kind := range []string{"HEALTHZ", "READYZ"} {
			u := env["DROVER_DEV_"+s+"_"+kind]
			deadline := time.Now().Add(time.Minute)
			for {
				resp, err := client.Get(u)
				if err != nil {
					t.Errorf("%s: %v", u, err)
					break
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var r struct{ Ready bool }
				ok := resp.StatusCode == http.StatusOK
				if kind == "READYZ" {
					ok = ok && json.Unmarshal(body, &r) == nil && r.Ready
				}
				if ok {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("GET %s: %d %s (for a minute)", u, resp.StatusCode, body)
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
	}
	if !strings.Contains(p.Log(), env["DROVER_DEV_PROCESSORS_READYZ"]) {
		t.Errorf("the ready banner does not print the processors' health URLs:\n%s", p.Log())
	}
}

// TestIntegrationDevListenHost: --listen-host 0.0.0.0 opens the embedded
// services to the network (the env file still names 127.0.0.1, where they
// are reachable here), except the throwaway PostgreSQL, which trusts local
// connections and stays on loopback; a --listen-host that is not an IP
// address is a usage error.
func TestIntegrationDevListenHost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded stack")
	}
	if code, out := drover(t, nil, "dev", "--listen-host", "example.org", "--dev-env", ""); code != 2 || !strings.Contains(out, "--listen-host") {
		t.Fatalf("--listen-host example.org: exit %d, want 2 naming the flag:\n%s", code, out)
	}
	dir := t.TempDir()
	p := startDev(t, dir, "--listen-host", "0.0.0.0")
	env := p.waitReady(t)
	defer p.stop(t)
	byPort := map[int]net.IP{}
	for _, l := range listeners(t, processTree(p.cmd.Process.Pid)) {
		byPort[l.port] = l.ip
	}
	for _, k := range []string{"DROVER_MQTT_URL", "DROVER_KAFKA_BROKERS", "DROVER_SCHEMA_REGISTRY_URL", "DROVER_S3_ENDPOINT"} {
		if !strings.Contains(env[k], "127.0.0.1:") {
			t.Errorf("%s=%s: want the loopback address clients here can dial", k, env[k])
		}
		if ip := byPort[portOf(t, env[k])]; ip == nil || !ip.IsUnspecified() {
			t.Errorf("%s: listens on %v, want 0.0.0.0", k, ip)
		}
	}
	if ip := byPort[portOf(t, env["DROVER_DATABASE_URL"])]; ip == nil || !ip.IsLoopback() {
		t.Errorf("PostgreSQL listens on %v, want loopback whatever --listen-host says", ip)
	}
}
