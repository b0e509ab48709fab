// Package cli holds the conventions every drover command shares: the root
// command, flag ↔ DROVER_* environment binding, connection flags for Kafka,
// the schema registry, MQTT, S3 and PostgreSQL, JSON logging with log/slog,
// and the mapping from errors to exit codes.
//
// Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration
// (a flag, an environment variable or a file is wrong), 3 a check found
// something (drift, incompatible schema), 130 interrupted twice. A command
// group called without a subcommand (drover dlq), and a --dev-env file (or
// DROVER_DEV_ENV) that does not exist, are usage errors; only the default
// .drover/dev.env may be missing. Execute prints an error as one line with
// one "drover: " prefix; messages name the command without the root
// (Path: "topics list"), never "drover" again.
package cli
