// Package compose holds no runtime code: it validates the docker compose
// deployment of drover kept in this directory (compose.yaml plus the dev,
// staging and prod overlays, the configuration files they mount, the
// Grafana dashboards and Prometheus rules) and the repository's Dockerfile.
//
// Its tests load every combination with github.com/compose-spec/compose-go/v2
// (the loader docker compose uses), check every drover command, flag and
// DROVER_* variable against the CLI built with the Dockerfile's own build
// command, run promtool on the Prometheus configuration and rules, and
// compare the metric names used by dashboards and alerts with those the
// running stages export. See README.md in this directory.
package compose
