package schemas

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hamba/avro/v2"

	"github.com/drover-iot/drover/cli"
)

// LoadDir reads every *.avsc file in dir and returns the schema text per
// topic, for WithSchemas: a file replaces the embedded schema of every topic
// that carries the same record (by full name, e.g. io.drover.SensorReading).
// It lets an operator check or register an evolved schema before rebuilding
// drover. A file that does not parse, is not a named record, or names a
// record no topic carries is a usage error naming the file.
func LoadDir(dir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.avsc"))
	if err != nil {
		return nil, cli.Usagef("--schema-dir %s: %w", dir, err)
	}
	if len(files) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, cli.Usagef("--schema-dir: %w", err)
		}
		return nil, cli.Usagef("--schema-dir %s: no *.avsc file in it", dir)
	}
	sort.Strings(files)
	byRecord := map[string][]string{}
	for _, t := range Topics() {
		byRecord[RecordName(t)] = append(byRecord[RecordName(t)], t)
	}
	out := map[string]string{}
	seen := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, cli.Usagef("schema file %s: %w", f, err)
		}
		sch, err := avro.ParseBytesWithCache(data, "", &avro.SchemaCache{})
		if err != nil {
			return nil, cli.Usagef("schema file %s: not a valid Avro schema: %v", f, err)
		}
		named, ok := sch.(avro.NamedSchema)
		if !ok || sch.Type() != avro.Record {
			return nil, cli.Usagef("schema file %s: top level must be a named record, got %s", f, sch.Type())
		}
		name := named.FullName()
		topics := byRecord[name]
		if len(topics) == 0 {
			known := make([]string, 0, len(byRecord))
			for k := range byRecord {
				known = append(known, k)
			}
			sort.Strings(known)
			return nil, cli.Usagef("schema file %s: record %s is carried by no topic (known records: %s)", f, name, strings.Join(known, ", "))
		}
		if prev, dup := seen[name]; dup {
			return nil, cli.Usagef("schema file %s: record %s is already defined in %s", f, name, prev)
		}
		seen[name] = f
		for _, t := range topics {
			out[t] = string(data)
		}
	}
	return out, nil
}

// dirOptions returns the WithSchemas option for --schema-dir, or none.
func dirOptions(dir string) ([]Option, error) {
	if dir == "" {
		return nil, nil
	}
	m, err := LoadDir(dir)
	if err != nil {
		return nil, err
	}
	return []Option{WithSchemas(m)}, nil
}
