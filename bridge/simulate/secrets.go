package simulate

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// ReadSecrets reads device secrets of tenant from a CSV file with the
// header tenant,device_id,secret (what `drover devices import
// --secrets-out` and `drover dev` write); rows of other tenants are
// skipped. The result is Config.Credentials.
func ReadSecrets(path, tenant string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	for _, want := range []string{"tenant", "device_id", "secret"} {
		if _, ok := col[want]; !ok {
			return nil, fmt.Errorf("%s: header lacks %s (want tenant,device_id,secret)", path, want)
		}
	}
	out := map[string]string{}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if rec[col["tenant"]] == tenant {
			out[rec[col["device_id"]]] = rec[col["secret"]]
		}
	}
}

// WriteSecrets writes secrets (device id → secret) of tenant as
// ReadSecrets reads them, to a new file with mode 0600 (replacing path
// atomically); the rows of other tenants in the file stay.
func WriteSecrets(path, tenant string, secrets map[string]string, order []string) error {
	var others [][]string
	if old, err := os.ReadFile(path); err == nil {
		rows, err := csv.NewReader(strings.NewReader(string(old))).ReadAll()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for i, row := range rows {
			if i > 0 && len(row) == 3 && row[0] != tenant {
				others = append(others, row)
			}
		}
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"tenant", "device_id", "secret"})
	_ = w.WriteAll(others)
	seen := map[string]bool{}
	for _, id := range order {
		if s, ok := secrets[id]; ok && !seen[id] {
			seen[id] = true
			_ = w.Write([]string{tenant, id, s})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(secrets)) { // devices of an earlier, larger herd
		if !seen[id] {
			_ = w.Write([]string{tenant, id, secrets[id]})
		}
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Sync(), f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
