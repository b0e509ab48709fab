// Package schedule runs configured jobs (media backfill windows such as
// "the previous hour", DLQ re-drives) on cron expressions (robfig/cron
// syntax), one run at a time per job: a run still going when the next is
// due makes that one skipped and counted. The clock is injected, so tests
// drive it.
package schedule
