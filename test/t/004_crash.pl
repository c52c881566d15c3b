# Two faults under load (sessions enrolling and verifying): first one
# backend, then the postmaster itself is killed with SIGKILL.  After each,
# the server comes back, the worker comes back, every committed enrollment
# is there, no once token was used twice, use counts match the nodes and
# the audit events (also for a shared token without a cap, whose uses are
# appended to token_use and folded by the worker meanwhile), and no request
# accepted before the crash is accepted again afterwards.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Temp qw(tempfile);
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'enrollment'
enrollment.worker_interval = 1
restart_after_crash = on
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION enrollment CASCADE;
CREATE TABLE pool AS SELECT i AS id, t.token_id, t.token
  FROM generate_series(1, 400) i, LATERAL enrollment.create_token(label => 'crash-' || i) t;
-- a shared token without a cap, used once: its next uses are appended
CREATE TABLE ctok AS SELECT token_id, token FROM enrollment.create_token('cluster', 'crash cluster', cluster_id => 'cc');
SELECT 1 FROM ctok, LATERAL enrollment.enroll(ctok.token, 'c-first', 'cc');
CREATE TABLE signed AS
SELECT i AS id, enrollment.sign_request('GET', '/crash', k.key_id, k.hmac_secret, nonce => 'crash-' || i) AS headers
  FROM enrollment.create_api_key('crash', ARRAY['events:read']) k, generate_series(1, 400) i;
-- load functions that turn a rejection into a result, so clients keep going
CREATE FUNCTION try_enroll(i int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM enrollment.enroll((SELECT token FROM pool WHERE id = i), 'node-' || i || '-' || pg_backend_pid());
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLERRM;
END $$;
});

my ($fh, $script) = tempfile(UNLINK => 1);
print $fh q{\set id random(1, 400)
SELECT try_enroll(:id);
SELECT 1 FROM ctok, LATERAL enrollment.enroll(ctok.token, 'c-' || :id, 'cc');
SELECT ok FROM signed, enrollment.verify_request('GET', '/crash', signed.headers) WHERE signed.id = :id;
};
close $fh;

my ($out, $err) = ('', '');
local $ENV{PGAPPNAME} = 'crashload';
my $load = IPC::Run::start(
	[ 'pgbench', '--no-vacuum', '--client=6', '--jobs=2', '--time=60', '--file', $script,
		$node->connstr('postgres') ],
	'>', \$out, '2>', \$err);

# let the load run, then kill one of its backends
ok( $node->poll_query_until('postgres',
		"SELECT count(*) > 50 FROM enrollment.audit_log WHERE action = 'sensor_enrolled'"),
	'load is running');
my $victim = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE application_name = 'crashload' AND pid <> pg_backend_pid() ORDER BY state = 'active' DESC LIMIT 1");
ok($victim =~ /^\d+$/, "a pgbench backend to kill ($victim)");
kill 'KILL', $victim;
$load->finish;    # pgbench loses its connections and stops
like($err, qr/server closed the connection|terminat|connection to server/i, 'the load saw the crash');

ok($node->poll_query_until('postgres', 'SELECT true'), 'the server accepts connections again');
ok($node->wait_for_log(qr/all server processes terminated; reinitializing/), 'it went through a crash restart');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'enrollment worker'"),
	'the worker is back');

# the invariants that must hold after any crash
sub invariants
{
	my ($when) = @_;
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM (SELECT n.token_id FROM enrollment.nodes n JOIN enrollment.tokens t USING (token_id)
		                       WHERE t.kind = 'once' GROUP BY n.token_id HAVING count(*) > 1) x}),
		'0', "$when: no once token enrolled two nodes");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM enrollment.tokens t
		 WHERE t.use_count <> (SELECT count(*) FROM enrollment.nodes n WHERE n.token_id = t.token_id)
		    OR (t.kind = 'once' AND (t.use_count = 1) <> (t.status = 'used'))}),
		'0', "$when: use counts and statuses match the nodes");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM enrollment.tokens t
		 WHERE t.use_count <> (SELECT count(*) FROM enrollment.audit_log a
		                        WHERE a.token_id = t.token_id AND a.action = 'sensor_enrolled')}),
		'0', "$when: audit events match the committed enrollments");
	cmp_ok($node->safe_psql('postgres', q{
		SELECT t.use_count FROM enrollment.tokens t JOIN ctok USING (token_id)}), '>', 1,
		"$when: the shared token was used under the load");
	# every request signed before the crash is refused now, accepted or not
	is($node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE v.ok) FROM signed, enrollment.verify_request('GET', '/crash', signed.headers) v}),
		'0', "$when: no request from before the crash is accepted after it");
}
invariants('after a backend was killed');
my $enrolled = $node->safe_psql('postgres', 'SELECT count(*) FROM enrollment.nodes');
ok($enrolled > 50, "enrollments committed before the crash survived ($enrolled)");

# second fault: the postmaster itself.  Every enrollment counted as committed
# just before the kill must still be there after the restart.
$node->safe_psql('postgres', q{
CREATE TABLE signed2 AS
SELECT i AS id, enrollment.sign_request('GET', '/crash2', k.key_id, k.hmac_secret, nonce => 'crash2-' || i) AS headers
  FROM enrollment.create_api_key('crash2', ARRAY['events:read']) k, generate_series(1, 400) i;
CREATE TABLE pool2 AS SELECT i AS id, t.token_id, t.token
  FROM generate_series(1, 3000) i, LATERAL enrollment.create_token(label => 'crash2-' || i) t;
CREATE SEQUENCE pool2_seq;
});
my ($fh2, $script2) = tempfile(UNLINK => 1);
print $fh2 q{\set id random(1, 400)
SELECT e.node_id FROM pool2 p, LATERAL enrollment.enroll(p.token, 'p2-' || p.id) e WHERE p.id = (SELECT nextval('pool2_seq'));
SELECT 1 FROM ctok, LATERAL enrollment.enroll(ctok.token, 'c2-' || :id, 'cc');
SELECT ok FROM signed2, enrollment.verify_request('GET', '/crash2', signed2.headers) WHERE signed2.id = :id;
};
close $fh2;
($out, $err) = ('', '');
$load = IPC::Run::start(
	[ 'pgbench', '--no-vacuum', '--client=6', '--jobs=2', '--time=60', '--file', $script2,
		$node->connstr('postgres') ],
	'>', \$out, '2>', \$err);
ok( $node->poll_query_until('postgres',
		"SELECT count(*) > 100 FROM enrollment.nodes WHERE name LIKE 'p2-%'"),
	'load is running again');
my $before = $node->safe_psql('postgres', "SELECT count(*) FROM enrollment.nodes WHERE name LIKE 'p2-%'");
my @children = split /\n/, $node->safe_psql('postgres', 'SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()');
$node->kill9;
$load->finish;
like($err, qr/server closed the connection|terminat|connection to server|could not/i, 'the load saw the postmaster die');
# the orphaned backends notice the postmaster's death and exit; then start
for (my $i = 0; $i < 600 && grep { kill(0, $_) } @children; $i++)
{
	usleep(100_000);
}
ok(!(grep { kill(0, $_) } @children), 'the orphaned processes exited');
ok($node->start(fail_ok => 1), 'the server starts again after the postmaster was killed');
ok($node->wait_for_log(qr/database system was interrupted|was not properly shut down/), 'it recovered from a crash');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'enrollment worker'"),
	'the worker is back');
my $after = $node->safe_psql('postgres', "SELECT count(*) FROM enrollment.nodes WHERE name LIKE 'p2-%'");
cmp_ok($after, '>=', $before, "every enrollment committed before the kill is there ($before seen, $after after)");
invariants('after the postmaster was killed');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE v.ok) FROM signed2, enrollment.verify_request('GET', '/crash2', signed2.headers) v}),
	'0', 'no request of the second load is accepted after the crash');

# the worker folds what the shared token's enrollments appended before the
# crash: its row then counts all of its nodes
ok( $node->poll_query_until('postgres', q{
		SELECT t.use_count = (SELECT count(*) FROM enrollment.nodes n WHERE n.token_id = t.token_id)
		   AND NOT EXISTS (SELECT FROM enrollment.token_use)
		  FROM enrollment.enrollment_token t JOIN ctok USING (token_id)}),
	'the appended uses are folded into the token row after the crash');

# and the system goes on: a used token stays used, an unused one enrolls
my ($used) = $node->safe_psql('postgres',
	"SELECT p.token FROM pool p JOIN enrollment.tokens t USING (token_id) WHERE t.status = 'used' LIMIT 1");
my ($rc, $o, $e) = $node->psql('postgres', "SELECT enrollment.enroll('$used', 'after')");
like($e, qr/token_exhausted/, 'a token used before the crash stays used');
my ($fresh) = $node->safe_psql('postgres', "SELECT token FROM enrollment.create_token()");
is($node->safe_psql('postgres', "SELECT status FROM enrollment.enroll('$fresh', 'after')"), 'active',
	'a token made after the crash enrolls');

$node->stop;
done_testing();
