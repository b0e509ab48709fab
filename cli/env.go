package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// EnvPrefix is the prefix of every environment variable drover reads.
const EnvPrefix = "DROVER_"

// EnvName returns the environment variable bound to a flag name:
// "kafka-brokers" → "DROVER_KAFKA_BROKERS".
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flag))
}

// annotateEnv appends the bound variable to each flag's usage, once, so
// --help shows where a value may also come from.
func annotateEnv(cmd *cobra.Command) {
	mark := func(f *pflag.Flag) {
		if f.Name == "help" || strings.Contains(f.Usage, "$"+EnvPrefix) {
			return
		}
		f.Usage += " [$" + EnvName(f.Name) + "]"
	}
	cmd.LocalFlags().VisitAll(mark)
	cmd.PersistentFlags().VisitAll(mark)
	for _, c := range cmd.Commands() {
		annotateEnv(c)
	}
}

// bindEnv sets every flag of cmd that was not given on the command line from
// its environment variable, then from defaults (values read from the dev env
// file). A value that does not parse is a usage error naming the variable.
func bindEnv(cmd *cobra.Command, defaults map[string]string) error {
	var firstErr error
	apply := func(f *pflag.Flag) {
		if firstErr != nil || f.Changed {
			return
		}
		name := EnvName(f.Name)
		val, ok := os.LookupEnv(name)
		src := "environment variable " + name
		if !ok {
			val, ok = defaults[name]
			src = name + " from the dev env file"
		}
		if !ok {
			return
		}
		if err := f.Value.Set(val); err != nil {
			firstErr = Usagef("%s (flag --%s): invalid value %q: %v", src, f.Name, val, err)
			return
		}
		f.Changed = true
	}
	cmd.Flags().VisitAll(apply)
	cmd.InheritedFlags().VisitAll(apply)
	return firstErr
}

// ReadEnvFile parses a file of KEY=VALUE lines as written by `drover dev`
// (blank lines and # comments allowed, values optionally quoted).
func ReadEnvFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseEnv(data, path)
}

// ParseEnv parses KEY=VALUE lines; source names the input in errors.
func ParseEnv(data []byte, source string) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s:%d: expected KEY=VALUE, got %q", source, n, line)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[strings.TrimSpace(k)] = v
	}
	return out, sc.Err()
}
