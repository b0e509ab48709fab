package devtest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPahoConnsAreLocked finds every paho client built on a connection of
// the repository's own (paho.ClientConfig's Conn) and requires it wrapped
// in packets.NewThreadSafeConn. paho writes a packet in several Writes and
// holds the connection's lock across them only when the connection is a
// sync.Locker; its pinger sends the first PINGREQ as soon as it connects,
// so a client publishing at once on a bare net.Conn or tls.Conn can
// interleave the two packets, and the broker drops it for a malformed
// packet (seen in compose's TestIntegrationShippedMosquittoDynsec). The
// bridge's own connection is a sync.Locker (bridge.bufConn).
func TestPahoConnsAreLocked(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	conn := regexp.MustCompile(`(?s)paho\.ClientConfig\{[^}]*?\bConn:\s*([^,}\n]+)`)
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "third_party" || name == "node_modules" || strings.HasPrefix(name, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "pahoconn_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range conn.FindAllSubmatch(b, -1) {
			checked++
			if v := strings.TrimSpace(string(m[1])); !strings.Contains(v, "NewThreadSafeConn(") {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s: paho.ClientConfig{Conn: %s}: wrap it in packets.NewThreadSafeConn", rel, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("found no paho.ClientConfig with a Conn: the pattern no longer matches the code")
	}
	t.Logf("%d paho connections checked", checked)
}
