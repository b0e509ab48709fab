package devtest

import (
	"os"
	"strconv"
)

// EnvInt reads a positive integer from the environment variable name (a
// benchmark's size, say), else def.
func EnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
