// Package console is drover's operator console: one web page, served by the
// binary, over the running pipeline. Every figure is read live when a page
// asks for it: topic offsets, consumer lag and configs from Kafka (kadm),
// subjects and versions from the schema registry, devices and alerts from
// the database through a read-only role, and each stage's /healthz, /readyz
// and /metrics.
//
// Pages: Pipeline (the data flow with each stage's health, messages per
// second on every edge, lag per consumer group, dead letters per minute),
// Catalogue (every topic with its schema, BACKWARD check and drift, by the
// code of topics and schemas), Dead letters (filter, open, re-drive through
// backfill/dlq), Devices (table, map over the paddock polygons, a page per
// device) and Alerts. The front end is built from web/ into dist/ and
// embedded; it needs nothing from the internet.
//
// The console is read-only unless an operator token is configured: every
// action (a re-drive) needs the token in an Authorization header and is
// logged. Server-Sent Events push the pipeline snapshot; the snapshot is
// computed once per interval however many pages are open, and only while
// one is.
package console
