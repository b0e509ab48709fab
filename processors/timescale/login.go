package timescale

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Login is a person's (or a dashboard's) database login in one of the
// read-only roles, with the limits that keep it from starving the sink:
// PostgreSQL applies a role's settings and connection limit only to
// sessions that log in as that very role, never to the members of a group
// role, so they are set on each login.
type Login struct {
	Name     string
	Role     string // AnalystRole or OperatorRole
	Password string // "" keeps the current one (a new login then has none)
	// ConnectionLimit bounds the login's sessions, so that no login can
	// take the connections the sink needs; default 5.
	ConnectionLimit int
	// StatementTimeout cancels a longer statement; default 30m.
	StatementTimeout time.Duration
	// IdleInTransactionTimeout ends a session idle inside a transaction
	// for longer (it would hold its locks and old snapshots); default 10m.
	IdleInTransactionTimeout time.Duration
}

// Login defaults.
const (
	DefaultConnectionLimit          = 5
	DefaultStatementTimeout         = 30 * time.Minute
	DefaultIdleInTransactionTimeout = 10 * time.Minute
)

var loginName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (l *Login) validate() error {
	if l.ConnectionLimit == 0 {
		l.ConnectionLimit = DefaultConnectionLimit
	}
	if l.StatementTimeout == 0 {
		l.StatementTimeout = DefaultStatementTimeout
	}
	if l.IdleInTransactionTimeout == 0 {
		l.IdleInTransactionTimeout = DefaultIdleInTransactionTimeout
	}
	switch {
	case !loginName.MatchString(l.Name) || strings.HasPrefix(l.Name, "pg_") || strings.HasPrefix(l.Name, "drover_"):
		return fmt.Errorf("login name %q: want lower-case letters, digits and _, at most 63, not starting with pg_ or drover_", l.Name)
	case l.Role != AnalystRole && l.Role != OperatorRole:
		return fmt.Errorf("--role: %q is not a read-only role (want %s or %s)", l.Role, AnalystRole, OperatorRole)
	case strings.ContainsRune(l.Password, 0):
		return errors.New("--password-file: the password contains a NUL byte")
	case l.ConnectionLimit < 1:
		return fmt.Errorf("--connection-limit: %d, want at least 1", l.ConnectionLimit)
	case l.StatementTimeout < time.Second || l.IdleInTransactionTimeout < time.Second:
		return errors.New("--statement-timeout, --idle-in-transaction-timeout: want at least 1s")
	}
	return nil
}

// EnsureLogin creates login l (or brings an existing one in line): LOGIN,
// member of l.Role only among drover's roles, with its connection limit and
// timeouts. The connection's user needs CREATEROLE (a DBA's login).
func EnsureLogin(ctx context.Context, conn *pgx.Conn, l Login) error {
	if err := l.validate(); err != nil {
		return err
	}
	name := pgx.Identifier{l.Name}.Sanitize()
	var stmts []string
	var powerful *bool
	err := conn.QueryRow(ctx, `SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls
		FROM pg_roles WHERE rolname = $1`, l.Name).Scan(&powerful)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		stmts = append(stmts, "CREATE ROLE "+name+" LOGIN") // NOSUPERUSER, NOCREATEDB ... by default
	case err != nil:
		return fmt.Errorf("looking up login %s: %w", l.Name, err)
	case *powerful:
		return fmt.Errorf("login %s exists with privileges beyond reading (superuser, createrole, createdb, replication or bypassrls); not making it an %s login", l.Name, l.Role)
	}
	attrs := fmt.Sprintf("ALTER ROLE %s LOGIN CONNECTION LIMIT %d", name, l.ConnectionLimit)
	if l.Password != "" {
		// Utility statements take no parameters; standard_conforming_strings
		// (the default) makes '' the only escape a literal needs.
		attrs += " PASSWORD '" + strings.ReplaceAll(l.Password, "'", "''") + "'"
	}
	stmts = append(stmts, attrs,
		fmt.Sprintf("ALTER ROLE %s SET statement_timeout = %d", name, l.StatementTimeout.Milliseconds()),
		fmt.Sprintf("ALTER ROLE %s SET idle_in_transaction_session_timeout = %d", name, l.IdleInTransactionTimeout.Milliseconds()),
		fmt.Sprintf("GRANT %s TO %s", l.Role, name))
	for _, other := range []string{AnalystRole, OperatorRole, WriterRole} {
		if other != l.Role {
			stmts = append(stmts, fmt.Sprintf("REVOKE %s FROM %s", other, name))
		}
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("login %s: %s: %w", l.Name, strings.SplitN(q, " PASSWORD ", 2)[0], err)
			}
		}
		return nil
	})
}
