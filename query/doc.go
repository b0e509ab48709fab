// Package query is drover's one filter and projection language: the SQL
// subset of stream apps (SELECT fields or * with AS renames, FROM a source
// alias, WHERE with comparisons, AND/OR/NOT, IN, BETWEEN, IS [NOT] NULL,
// arithmetic and the functions abs, round, lower, upper, coalesce and
// ago('5m'), the wall clock minus a duration) and the
// expressions of `drover tail --where`, parsed by the same hand-written
// parser. The expression grammar also accepts the C-style spellings of the
// earlier tail filters (==, !=, &&, ||, !, [a, b] lists, nil), so filters
// written for tail keep working.
//
// Errors carry a line and a column (1-based, within the parsed text) and
// wrap ErrSyntax. Field paths an expression reads are listed by Fields, so
// callers check them against a schema before any record is read
// (CheckPaths). Compiled expressions and statements are immutable and safe
// for concurrent use.
package query
