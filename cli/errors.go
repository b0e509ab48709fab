package cli

import (
	"context"
	"errors"
	"fmt"
)

// ErrCheckFailed marks a check that ran and found a problem (topic drift, an
// incompatible schema). Commands wrap it; Execute exits with code 3.
var ErrCheckFailed = errors.New("check failed")

// UsageError is a problem with how drover was called: a flag, an environment
// variable or a configuration file. Execute exits with code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError with a formatted message. Use %w to wrap.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode maps an error returned by a command to the process exit code.
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	case errors.Is(err, ErrCheckFailed):
		return 3
	case errors.Is(err, context.Canceled):
		return 0
	default:
		return 1
	}
}
