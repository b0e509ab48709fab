// Package postgres runs a throwaway PostgreSQL cluster from the machine's own
// binaries (initdb and postgres), for `drover dev` and for tests.
//
// Start initialises the data directory when it is empty, then runs the
// postgres server directly as a child process in its own process group, with
// a parent-death signal so that no server outlives the Go process. When the
// Go process runs as root, initdb and postgres run as the "postgres" OS user
// (PostgreSQL refuses to run as root): the data directory is handed to that
// user and its parent directories are made traversable.
//
// The cluster listens on 127.0.0.1 only and trusts every local connection:
// it is a development and test tool, never a production database.
package postgres
