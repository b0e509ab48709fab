-- Roles are cluster-wide: create them only when missing, and tolerate a
-- concurrent creation from another database of the same cluster.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{{.Writer}}') THEN
        BEGIN
            CREATE ROLE {{.Writer}} NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{{.Analyst}}') THEN
        BEGIN
            CREATE ROLE {{.Analyst}} NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END
$roles$;
