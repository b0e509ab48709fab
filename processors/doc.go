// Package processors runs drover's stateful stream processors — the goka
// groups features (processors/features), alerts (processors/alerts) and
// state (processors/state) — in one process: `drover process --groups
// features,alerts,state` (all by default) and the "processors" stage of
// `drover dev`. The groups run side by side in an errgroup; the process
// serves /metrics, /healthz, /readyz (ready when every group runs) and the
// state group's GET /devices/{id} on its admin port, and leaves cleanly on
// SIGTERM (each goka processor stops consuming, finishes its callbacks,
// flushes its producer and commits).
//
// Instances scale by partition: run several `drover process` with the same
// groups and goka's consumer groups split the partitions between them.
// README.md explains windows, lateness, idle close, the tick design and the
// device shadow.
package processors
