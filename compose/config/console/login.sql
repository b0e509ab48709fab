-- The console's database login (compose dev): a member of the analysts'
-- read-only role, never the owner. psql -v pw=... sets its password.
SELECT format('CREATE ROLE drover_console LOGIN PASSWORD %L IN ROLE drover_analyst', :'pw')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'drover_console') \gexec
SELECT format('ALTER ROLE drover_console WITH LOGIN PASSWORD %L', :'pw') \gexec
