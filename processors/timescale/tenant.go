package timescale

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/drover-iot/drover/identity"
)

// TenantSchema is the schema of tenant's views: "tenant_" + the tenant id
// (quote it: ids may hold '.', ':' and '-').
func TenantSchema(tenant string) string { return "tenant_" + tenant }

// TenantGrant is what GrantTenant did.
type TenantGrant struct {
	Schema    string   // the tenant's schema (unquoted)
	Relations []string // the views in it, one per table, view and rollup the analyst reads
}

// GrantTenant gives role read access to tenant's rows only: in the schema
// TenantSchema(tenant) it creates (or replaces) one security-barrier view
// per relation of schema that drover_analyst may read and that has a tenant
// column — every table, view and rollup, on both database paths — which
// selects exactly the columns the analyst may read (no raw bytes of dead
// letters) of the rows WHERE tenant = the tenant; role gets USAGE on that
// schema and SELECT on those views, nothing on schema's own relations, and
// its search_path starts with the tenant's schema, so the analysts' queries
// run unchanged. Views read the tables with their owner's rights, so this
// works on TimescaleDB's continuous aggregates, where row-level security
// cannot be enabled, exactly as on plain tables. Running it again (after a
// migration added a relation) brings the views up to date. The role must
// exist; it may not be drover_analyst or a sink role. Run it as the owner
// of the tables (the login 'drover sink migrate' uses).
func GrantTenant(ctx context.Context, conn *pgx.Conn, schema, tenant, role string) (TenantGrant, error) {
	if err := identity.ValidTenant(tenant); err != nil {
		return TenantGrant{}, err
	}
	if !loginName.MatchString(role) || strings.HasPrefix(role, "pg_") || strings.HasPrefix(role, "drover_") {
		return TenantGrant{}, fmt.Errorf("role %q: want an existing role named with lower-case letters, digits and _, not pg_* or drover_*", role)
	}
	if schema == "" {
		schema = "public"
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		return TenantGrant{}, err
	}
	if !exists {
		return TenantGrant{}, fmt.Errorf("role %s does not exist (create it first, e.g. CREATE ROLE %s LOGIN)", role, role)
	}
	var allTenants bool
	if err := conn.QueryRow(ctx, "SELECT pg_has_role($1, $2, 'MEMBER') OR pg_has_role($1, $3, 'MEMBER')", role, AnalystRole, WriterRole).Scan(&allTenants); err != nil {
		return TenantGrant{}, err
	}
	if allTenants {
		return TenantGrant{}, fmt.Errorf("role %s is a member of %s or %s, which read every tenant: grant a tenant to a role outside them", role, AnalystRole, WriterRole)
	}
	// The analyst's readable columns of every relation (not partitions,
	// not chunks) that has a tenant column, in column order.
	rows, err := conn.Query(ctx, `
SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
  AND has_column_privilege($2, c.oid, a.attnum, 'SELECT')
  AND EXISTS (SELECT FROM pg_attribute t WHERE t.attrelid = c.oid AND t.attname = 'tenant' AND NOT t.attisdropped)
GROUP BY c.relname ORDER BY c.relname`, schema, AnalystRole)
	if err != nil {
		return TenantGrant{}, err
	}
	type rel struct {
		name string
		cols []string
	}
	var rels []rel
	for rows.Next() {
		var r rel
		if err := rows.Scan(&r.name, &r.cols); err != nil {
			rows.Close()
			return TenantGrant{}, err
		}
		rels = append(rels, r)
	}
	if err := rows.Err(); err != nil {
		return TenantGrant{}, err
	}
	if len(rels) == 0 {
		return TenantGrant{}, fmt.Errorf("schema %s has no relation %s reads: run 'drover sink migrate' first", schema, AnalystRole)
	}
	ts := pgx.Identifier{TenantSchema(tenant)}.Sanitize()
	q := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	lit := "'" + strings.ReplaceAll(tenant, "'", "''") + "'" // the identity alphabet has no quote; belt and braces
	out := TenantGrant{Schema: TenantSchema(tenant)}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		stmts := []string{
			"CREATE SCHEMA IF NOT EXISTS " + ts,
			"REVOKE ALL ON SCHEMA " + ts + " FROM PUBLIC",
			"GRANT USAGE ON SCHEMA " + ts + " TO " + q(role),
		}
		for _, r := range rels {
			cols := make([]string, len(r.cols))
			for i, c := range r.cols {
				cols[i] = q(c)
			}
			view := ts + "." + q(r.name)
			stmts = append(stmts,
				"DROP VIEW IF EXISTS "+view, // columns may have changed
				fmt.Sprintf("CREATE VIEW %s WITH (security_barrier) AS SELECT %s FROM %s.%s WHERE tenant = %s",
					view, strings.Join(cols, ", "), q(schema), q(r.name), lit),
				"REVOKE ALL ON "+view+" FROM PUBLIC",
				"GRANT SELECT ON "+view+" TO "+q(role))
			out.Relations = append(out.Relations, r.name)
		}
		stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s SET search_path = %s, public", q(role), ts))
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
	return out, err
}
