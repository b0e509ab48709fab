// Package apps runs stream apps: declarative derived streams, each a goka
// group of its own ("app-NAME") beside the built-in processors. An app reads
// source topics (optionally one tenant's, optionally a device-id pattern),
// keeps the records its query's WHERE accepts, projects the SELECTed fields
// and writes them, as schemas.AppRecord with a deterministic event id, to
// its target topic. The query language is package query's SQL subset, the
// same grammar as `drover tail --where`.
//
// Apps are data: a YAML file (Load, Parse) checked in full at start — parse
// errors name the file, line, column and app; unknown fields and fields the
// source schemas do not have are errors. A cross-tenant app (share) names
// the receiving tenant and an agreement id.
package apps
