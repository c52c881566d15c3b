# The maintenance worker: expires tokens, purges old ones after the
# retention period while their audit events stay, announces changes with
# NOTIFY, writes last-used and last-seen stamps, waits politely where the extension is
# missing, and comes back after it is terminated.  Also: the extension
# without the preload (no worker, no shared memory) still enforces expiry.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'enrollment'
enrollment.database_names = 'postgres, fleet'
enrollment.worker_interval = 1
enrollment.token_retention = 3
});
$node->start;

# a database that does not exist yet, then one without the extension: a
# log line each, no crash loop
ok($node->wait_for_log(qr/database "fleet" does not exist; waiting/),
	'the launcher says that a database is missing');
$node->safe_psql('postgres', 'CREATE DATABASE fleet');
ok($node->wait_for_log(qr/extension "enrollment" is not installed in database "fleet"; waiting/),
	'the worker says once that the extension is missing');
$node->safe_psql('postgres', 'CREATE EXTENSION enrollment CASCADE');
$node->safe_psql('fleet', 'CREATE EXTENSION enrollment CASCADE');
ok($node->wait_for_log(qr/extension found in database "fleet"; starting maintenance/),
	'and starts once it is created');

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN enrollment_events');

# expiry: the worker writes the status the view already reports
my $tid = $node->safe_psql('postgres', "SELECT token_id FROM enrollment.create_token(ttl => '1 second')");
ok( $node->poll_query_until('postgres',
		"SELECT status = 'expired' FROM enrollment.enrollment_token WHERE token_id = '$tid'"),
	'the worker marks an expired token as expired');
is($node->safe_psql('postgres',
		"SELECT actor FROM enrollment.audit_log WHERE token_id = '$tid' AND action = 'sensor_enrollment_token_expired'"),
	'enrollment worker', 'and audits it');

# enrolled, revoked and expired are announced; enrollments by the worker,
# from the audit log, so even one that commits after a later one is heard
my $tok = $node->safe_psql('postgres', "SELECT token FROM enrollment.create_token()");
my $late_tok = $node->safe_psql('postgres', "SELECT token FROM enrollment.create_token()");
my $late = $node->background_psql('postgres');
$late->query_safe('BEGIN');
my $late_node = $late->query_safe("SELECT node_id FROM enrollment.enroll('$late_tok', 'late-node')");
my $nid = $node->safe_psql('postgres', "SELECT node_id FROM enrollment.enroll('$tok', 'notified-node')");
my $rid = $node->safe_psql('postgres', "SELECT token_id FROM enrollment.create_token('reusable')");
$node->safe_psql('postgres', "SELECT enrollment.revoke_token('$rid')");
my $heard = '';
for (my $i = 0; $i < 100 && $heard !~ /"node_id" : "$nid"/; $i++)
{
	$heard .= $listener->query_safe('SELECT 1');
	usleep(100_000);
}
like($heard, qr/"event" : "enrolled".*"node_id" : "$nid", "reenrolled" : false/s,
	'the worker announces an enrollment');
unlike($heard, qr/$late_node/, 'but not one that has not committed');
$late->query_safe('COMMIT');
$late->quit;
for (my $i = 0; $i < 100 && $heard !~ /$late_node/; $i++)
{
	$heard .= $listener->query_safe('SELECT 1');
	usleep(100_000);
}
like($heard, qr/"event" : "enrolled".*"node_id" : "$late_node"/s,
	'an enrollment that commits after a later one is announced too');
like($heard, qr/"event" : "expired".*"token_id" : "$tid"/s, 'NOTIFY for the expiry');
like($heard, qr/"event" : "revoked".*"token_id" : "$rid"/s, 'NOTIFY for the revocation');
like($heard, qr/"node_id" : "$nid", "reenrolled" : false, "approval" : null, "private_ip" : null/,
	'an enrollment where approval is automatic and the tenant has no pool says nothing of either');

# a node that waits for approval is announced as such, and a node's
# address with it (0.7.0)
my $pending_node = $node->safe_psql('postgres', q{
SELECT FROM enrollment.set_node_approval('manual');
SELECT FROM enrollment.set_ip_pool('100.64.0.0/24');
SELECT e.node_id FROM enrollment.create_token() AS t, LATERAL enrollment.enroll(t.token, 'waiting-node') AS e;
SELECT FROM enrollment.set_node_approval('auto');
SELECT FROM enrollment.set_ip_pool(NULL);
});
$pending_node =~ s/\s+//g;
for (my $i = 0; $i < 100 && $heard !~ /$pending_node/; $i++)
{
	$heard .= $listener->query_safe('SELECT 1');
	usleep(100_000);
}
like($heard, qr/"node_id" : "$pending_node", "reenrolled" : false, "approval" : "pending", "private_ip" : "100.64.0.1"/,
	'the announcement of a node that waits for approval says so, and gives its address');
$listener->quit;

# retention: used and expired tokens are deleted, their audit events stay
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM enrollment.enrollment_token WHERE token_id = '$tid' "
		  . "OR status = 'used'"),
	'used and expired tokens are purged after the retention period');
ok( $node->poll_query_until('postgres',
		"SELECT n_tup_del > 0 FROM pg_stat_user_tables WHERE relid = 'enrollment.enrollment_token'::regclass"),
	"the worker's deletions reach the statistics autovacuum reads");
is($node->safe_psql('postgres',
		"SELECT count(*) > 0 FROM enrollment.audit_log WHERE token_id = '$tid'"),
	't', 'their audit events remain');
is($node->safe_psql('postgres', "SELECT count(*) FROM enrollment.tokens WHERE token_id = '$rid'"),
	'1', 'a revoked token is kept');

# the rate of a token (0.7.0) is dropped once the token is purged
my $rated = $node->safe_psql('postgres',
	"SELECT token_id FROM enrollment.create_token('reusable', ttl => '1 second')");
is($node->safe_psql('postgres', "SELECT enrollment.set_token_rate('$rated', 10)"),
	'0', 'a rate is set');
is($node->safe_psql('postgres', "SELECT count(*) FROM enrollment.token_rate WHERE token_id = '$rated'"),
	'1', 'and kept while its token is there');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM enrollment.token_rate WHERE token_id = '$rated'"),
	'the rate of a purged token is dropped');
is($node->safe_psql('postgres', "SELECT count(*) FROM enrollment.enrollment_token WHERE token_id = '$rated'"),
	'0', 'only after its token was purged');

# expiry scans start where the last round left off (0.5.0); a token that
# commits after later ones were scanned, or that a session held locked
# while it came due, is still marked expired
my $slow = $node->background_psql('postgres');
$slow->query_safe('BEGIN');
my $slow_tid = $slow->query_safe("SELECT token_id FROM enrollment.create_token(ttl => '1 second')");
my $held_tid = $node->safe_psql('postgres', "SELECT token_id FROM enrollment.create_token(ttl => '1 second')");
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN');
$holder->query_safe("SELECT 1 FROM enrollment.enrollment_token WHERE token_id = '$held_tid' FOR UPDATE");
my $runs = $node->safe_psql('postgres', "SELECT value FROM enrollment.stats WHERE counter = 'runs'");
ok( $node->poll_query_until('postgres',
		"SELECT value >= $runs + 6 FROM enrollment.stats WHERE counter = 'runs'"),
	'rounds go by while one token is uncommitted and another locked');
is($node->safe_psql('postgres', "SELECT status FROM enrollment.enrollment_token WHERE token_id = '$held_tid'"),
	'pending', 'the locked token is left alone meanwhile');
$slow->query_safe('COMMIT');
$slow->quit;
$holder->query_safe('COMMIT');
$holder->quit;
# (the audit log: with a retention of 3 s the token is purged right after)
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM enrollment.audit_log "
		  . "WHERE token_id IN ('$slow_tid', '$held_tid') AND action = 'sensor_enrollment_token_expired'"),
	'both are marked expired once committed and released');

# a token that a session locked only after it came due is expired once
# released, although that session began after the expiry: the worker
# pauses (a long interval) while the token comes due and is locked
$node->append_conf('postgresql.conf', 'enrollment.worker_interval = 3600');
$node->reload;
sleep(2);
my $late_tid = $node->safe_psql('postgres', "SELECT token_id FROM enrollment.create_token(ttl => '1 second')");
sleep(2);
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
$locker->query_safe("SELECT 1 FROM enrollment.enrollment_token WHERE token_id = '$late_tid' FOR UPDATE");
$runs = $node->safe_psql('postgres', "SELECT value FROM enrollment.stats WHERE counter = 'runs'");
$node->append_conf('postgresql.conf', 'enrollment.worker_interval = 1');
$node->reload;
ok( $node->poll_query_until('postgres',
		"SELECT value >= $runs + 6 FROM enrollment.stats WHERE counter = 'runs'"),
	'rounds go by while a token that came due is locked');
is($node->safe_psql('postgres', "SELECT status FROM enrollment.enrollment_token WHERE token_id = '$late_tid'"),
	'pending', 'the worker skips it meanwhile');
$locker->query_safe('COMMIT');
$locker->quit;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM enrollment.audit_log "
		  . "WHERE token_id = '$late_tid' AND action = 'sensor_enrollment_token_expired'"),
	'and marks it expired once it is released');

# a used token whose expiry is nearer than token_retention is purged
# token_retention after its expiry
my ($near_tok, $near_tid) = split / /, $node->safe_psql('postgres',
	"SELECT token || ' ' || token_id FROM enrollment.create_token(ttl => '2 seconds')");
$node->safe_psql('postgres', "SELECT enrollment.enroll('$near_tok', 'near-node')");
is($node->safe_psql('postgres',
		"SELECT retention_from = expires_at FROM enrollment.enrollment_token WHERE token_id = '$near_tid'"),
	't', 'its retention clock stays at its expiry');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM enrollment.enrollment_token WHERE token_id = '$near_tid'"),
	'and it is purged after that');

# last-used stamps reach the row without the verification writing it
my ($kid, $sec) = split / /, $node->safe_psql('postgres',
	"SELECT key_id || ' ' || hmac_secret FROM enrollment.create_api_key('w', ARRAY['events:read'])");
is($node->safe_psql('postgres',
		"SELECT ok FROM enrollment.verify_request('GET', '/', enrollment.sign_request('GET', '/', '$kid', '$sec'))"),
	't', 'a signed request is accepted');
ok( $node->poll_query_until('postgres',
		"SELECT last_used_at IS NOT NULL FROM enrollment.api_key WHERE key_id = ('x' || '$kid')::bit(64)::bigint"),
	'the worker writes last_used_at to the key');

# last-seen stamps (0.7.0): authenticate_node notes the time, the worker
# writes it to the node, one batch after another (batches of one here); a
# node whose row is locked keeps its stamp noted until a round finds the
# row free, and the batches after it go on
$node->safe_psql('postgres', 'ALTER SYSTEM SET enrollment.worker_batch_size = 1; SELECT pg_reload_conf()');
my ($seen_secret, $also_seen_secret, $locked_secret, $locked_node) = split /\n/, $node->safe_psql('postgres', q{
SELECT e.node_secret FROM enrollment.create_token() AS t, LATERAL enrollment.enroll(t.token, 'seen-node') AS e;
SELECT e.node_secret FROM enrollment.create_token() AS t, LATERAL enrollment.enroll(t.token, 'also-seen-node') AS e;
SELECT e.node_secret || E'\n' || e.node_id FROM enrollment.create_token() AS t,
       LATERAL enrollment.enroll(t.token, 'locked-node') AS e;
});
$locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
$locker->query_safe("SELECT FROM enrollment.node_record WHERE node_id = '$locked_node' FOR UPDATE");
my $seen_at = $node->safe_psql('postgres', 'SELECT now()');
is($node->safe_psql('postgres', qq{
SELECT name FROM enrollment.authenticate_node('$locked_secret');
SELECT name FROM enrollment.authenticate_node('$seen_secret');
SELECT name FROM enrollment.authenticate_node('$also_seen_secret');
}), "locked-node\nseen-node\nalso-seen-node", 'the three nodes authenticate');
ok( $node->poll_query_until('postgres',
		"SELECT bool_and(last_seen_at >= '$seen_at') FROM enrollment.nodes WHERE name LIKE '%seen-node'"),
	'the worker writes when a node was last seen');
is($node->safe_psql('postgres', "SELECT string_agg(name || ':' || online, ' ' ORDER BY name) FROM enrollment.nodes WHERE name LIKE '%seen-node'"),
	'also-seen-node:true seen-node:true', 'and the nodes view calls them online');
$runs = $node->safe_psql('postgres', "SELECT value FROM enrollment.stats WHERE counter = 'runs'");
ok( $node->poll_query_until('postgres',
		"SELECT value >= $runs + 2 FROM enrollment.stats WHERE counter = 'runs'"),
	'two more rounds pass');
is($node->safe_psql('postgres', "SELECT last_seen_at IS NULL FROM enrollment.nodes WHERE name = 'locked-node'"),
	't', 'they skip a node whose row is locked, without waiting for it');
$locker->query_safe('COMMIT');
ok( $node->poll_query_until('postgres',
		"SELECT last_seen_at >= '$seen_at' FROM enrollment.nodes WHERE name = 'locked-node'"),
	'and write its stamp, kept noted, once the row is free');

# the same for an API key's last-used stamp (the same statement and code)
my ($lkid, $lsec) = split / /, $node->safe_psql('postgres',
	"SELECT key_id || ' ' || hmac_secret FROM enrollment.create_api_key('locked key', ARRAY['events:read'])");
$locker->query_safe('BEGIN');
$locker->query_safe("SELECT FROM enrollment.api_key WHERE key_id = ('x' || '$lkid')::bit(64)::bigint FOR UPDATE");
is($node->safe_psql('postgres',
		"SELECT ok FROM enrollment.verify_request('GET', '/', enrollment.sign_request('GET', '/', '$lkid', '$lsec'))"),
	't', 'a request signed with a key whose row is locked is accepted');
$runs = $node->safe_psql('postgres', "SELECT value FROM enrollment.stats WHERE counter = 'runs'");
ok( $node->poll_query_until('postgres',
		"SELECT value >= $runs + 2 FROM enrollment.stats WHERE counter = 'runs'"),
	'two more rounds pass');
is($node->safe_psql('postgres',
		"SELECT last_used_at IS NULL FROM enrollment.api_key WHERE key_id = ('x' || '$lkid')::bit(64)::bigint"),
	't', 'they skip the key whose row is locked');
$locker->query_safe('COMMIT');
$locker->quit;
ok( $node->poll_query_until('postgres',
		"SELECT last_used_at IS NOT NULL FROM enrollment.api_key WHERE key_id = ('x' || '$lkid')::bit(64)::bigint"),
	'and write its stamp once the row is free');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET enrollment.worker_batch_size; SELECT pg_reload_conf()');

# counters
my %stats = map { my ($k, $v) = split /\|/; ($k => $v) } split /\n/,
  $node->safe_psql('postgres', "SELECT area || '.' || counter, value FROM enrollment.stats");
ok($stats{'worker.runs'} > 0, "worker runs counted ($stats{'worker.runs'})");
ok($stats{'worker.tokens_expired'} >= 1, 'expired tokens counted');
ok($stats{'worker.tokens_purged'} >= 2, 'purged tokens counted');
is($stats{'enroll.ok'}, 7, 'the seven enrollments counted');
is($stats{'verify.ok'}, 2, 'two verifications counted');
is($stats{'nonces.capacity'}, 100000, 'nonce capacity shown');
is($stats{'nonces.partitions'}, 16, 'the default capacity has 16 partitions');
$node->safe_psql('postgres', 'SELECT enrollment.stats_reset()');
is($node->safe_psql('postgres', "SELECT value FROM enrollment.stats WHERE area = 'enroll' AND counter = 'ok'"),
	'0', 'stats_reset zeroes the counters');

# uses of an uncapped cluster token appended to token_use (0.6.0): the
# worker counts them in the token row, and the listing shows the same count
# before and after
my ($ctok, $ctid) = split / /, $node->safe_psql('postgres',
	"SELECT token || ' ' || token_id FROM enrollment.create_token('cluster', cluster_id => 'w1')");
$node->safe_psql('postgres',
	"SELECT count(*) FROM generate_series(1, 4) i, LATERAL enrollment.enroll('$ctok', 'w-' || i, 'w1')")
  for 1 .. 2;
is($node->safe_psql('postgres', "SELECT use_count FROM enrollment.tokens WHERE token_id = '$ctid'"),
	'8', 'the listing counts every use, folded or not');
ok( $node->poll_query_until('postgres',
		"SELECT use_count = 8 AND NOT EXISTS (SELECT FROM enrollment.token_use) "
		  . "FROM enrollment.enrollment_token WHERE token_id = '$ctid'"),
	'the worker folds the appended uses into the token row');
is($node->safe_psql('postgres',
		"SELECT use_count || ' ' || (last_used_at = (SELECT max(enrolled_at) FROM enrollment.nodes "
		  . "WHERE token_id = '$ctid')) FROM enrollment.tokens WHERE token_id = '$ctid'"),
	'8 true', 'and the listing is unchanged: eight uses, the last one\'s time');
ok($node->safe_psql('postgres', "SELECT value FROM enrollment.stats WHERE area = 'worker' AND counter = 'uses_folded'") >= 6,
	'folded uses are counted');

# changes appended to a limited tenant's kept node count (0.7.0): the
# worker folds them into the count, which then equals a count of the nodes,
# though no enrollment followed the removals
$node->safe_psql('postgres', q{
	SET enrollment.tenant = 'folded';
	SELECT count(*) FROM enrollment.create_token('reusable') AS t, generate_series(1, 5) AS i,
	       LATERAL enrollment.enroll(t.token, 'f-' || i);
	SELECT enrollment.set_node_limit(5);
	SELECT count(enrollment.remove_node(node_id)) FROM enrollment.node_record
	 WHERE tenant = 'folded' AND name IN ('f-1', 'f-2', 'f-3');
});
ok( $node->poll_query_until('postgres',
		"SELECT nodes = 2 AND NOT EXISTS (SELECT FROM enrollment.tenant_node_change) "
		  . "FROM enrollment.tenant_node_count WHERE tenant = 'folded'"),
	'the worker folds a kept node count\'s changes into it');
# (the counter moves once the round's folds are done, after their commits)
ok( $node->poll_query_until('postgres',
		"SELECT value = 3 FROM enrollment.stats WHERE area = 'worker' AND counter = 'node_changes_folded'"),
	'the three changes folded are counted');

# The worker's transactions are READ COMMITTED whatever the default.  Under
# a SERIALIZABLE default its fold would read the changes a session's open
# removal appends to and write the count that removal read, and one of the
# two would fail with 40001 (the removal, at its commit).  The worker is
# made to sleep first, so that it folds the committed removal only once the
# other one is open.
my $runs = "SELECT value FROM enrollment.stats WHERE area = 'worker' AND counter = 'runs'";
$node->safe_psql('postgres',
	"ALTER SYSTEM SET default_transaction_isolation = 'serializable';"
	  . " ALTER SYSTEM SET enrollment.worker_interval = 3600; SELECT pg_reload_conf()");
my ($asleep, $seen) = (0, -1);
for (my $i = 0; $i < 60 && !$asleep; $i++)
{
	my $now = $node->safe_psql('postgres', $runs);
	$asleep = $now == $seen;	# no round for 3 s: it has read the interval
	$seen = $now;
	sleep 3 unless $asleep;
}
ok($asleep, 'serializable default: the worker sleeps');
my $remove = "SELECT count(enrollment.remove_node(node_id)) FROM enrollment.node_record "
  . "WHERE tenant = 'folded' AND name = ";
$node->safe_psql('postgres', "SET enrollment.tenant = 'folded'; $remove 'f-4'");
my $open = $node->background_psql('postgres', on_error_stop => 0);
$open->query_safe("SET enrollment.tenant = 'folded'; BEGIN; $remove 'f-5'");
is($node->safe_psql('postgres', 'SELECT count(*) FROM enrollment.tenant_node_change'),
	'1', 'the committed removal\'s change waits for the fold, the open one\'s is not seen');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET enrollment.worker_interval; SELECT pg_reload_conf()');
ok( $node->poll_query_until('postgres',
		"SELECT nodes = 1 AND NOT EXISTS (SELECT FROM enrollment.tenant_node_change) "
		  . "FROM enrollment.tenant_node_count WHERE tenant = 'folded'"),
	'woken, the worker folds the committed removal beside the open one');
$open->query('COMMIT');
is($open->{stderr}, '', 'and the open removal commits');
$open->quit;
is($node->safe_psql('postgres',
		"SELECT (SELECT nodes FROM enrollment.tenant_node_count WHERE tenant = 'folded')"
		  . " + (SELECT coalesce(sum(delta), 0) FROM enrollment.tenant_node_change WHERE tenant = 'folded')"
		  . " || ' ' || (SELECT count(*) FROM enrollment.node_record WHERE tenant = 'folded' AND status <> 'removed')"),
	'0 0', 'the kept count with its changes equals a count of the nodes');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET default_transaction_isolation; SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', 'SHOW default_transaction_isolation', 'read committed'),
	'the default is read committed again');

# tokens without a retention clock, as a 0.4.0 library still running after
# the update (or a restored 0.4.0 dump) writes them: a worker's first round
# gives them their clock, so they are expired and purged as usual
my ($noclock_used, $noclock_due) = split /\n/, $node->safe_psql('postgres', q{
	INSERT INTO enrollment.enrollment_token
	       (public_id, prefix, token_hash, kind, status, use_count, max_uses, created_by,
	        expires_at, used_at, last_used_at)
	VALUES (101, 'enr_', sha256('a'), 'once', 'used', 1, 1, 'old library',
	        now() + interval '10 minutes', now() - interval '1 minute', now() - interval '1 minute'),
	       (102, 'enr_', sha256('b'), 'once', 'pending', 0, 1, 'old library',
	        now() - interval '1 second', NULL, NULL)
	RETURNING token_id});

# the worker comes back after it is terminated
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'enrollment worker' AND datname = 'postgres'");
ok($pid =~ /^\d+$/, 'the worker of database postgres is running');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'enrollment worker' "
		  . "AND datname = 'postgres' AND pid <> $pid"),
	'and a new one starts after it was terminated');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM enrollment.enrollment_token "
		  . "WHERE token_id IN ('$noclock_used', '$noclock_due')"),
	'its first round gives tokens without a retention clock one: they are purged');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM enrollment.audit_log WHERE token_id = '$noclock_due' "
		  . "AND action = 'sensor_enrollment_token_expired'"),
	'1', 'the one past its expiry was marked expired first');

# the worker's memory stays the same from round to round: the total of its
# memory contexts, logged between rounds, after some rounds and again after
# at least ten more (a leak of the round's allocations, 160 kB a round,
# once showed here)
sub worker_memory
{
	my $wpid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'enrollment worker' AND datname = 'postgres'");
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($wpid)");
	$node->wait_for_log(qr/\[$wpid\][^\n]*Grand total: \d+ bytes/, $offset);
	my ($total) = slurp_file($node->logfile, $offset) =~ /\[$wpid\][^\n]*Grand total: (\d+) bytes/;
	return $total;
}
sub worker_rounds
{
	return $node->safe_psql('postgres', "SELECT value FROM enrollment.stats WHERE area = 'worker' AND counter = 'runs'");
}
my $r0 = worker_rounds();
ok($node->poll_query_until('postgres',
		"SELECT value >= $r0 + 6 FROM enrollment.stats WHERE area = 'worker' AND counter = 'runs'"),
	'rounds go by');
my $mem_before = worker_memory();
# the counter adds up both databases' workers: 20 runs are ten rounds each
$r0 = worker_rounds();
ok($node->poll_query_until('postgres',
		"SELECT value >= $r0 + 20 FROM enrollment.stats WHERE area = 'worker' AND counter = 'runs'"),
	'ten more rounds go by');
my $mem_after = worker_memory();
ok($mem_after - $mem_before < 100 * 1024,
	"the worker's memory does not grow with its rounds ($mem_before bytes, then $mem_after)");

# a launcher restarted while its workers run does not double them: the
# second worker of a database waits for the first, and takes over when it exits
my $workers = "SELECT count(*) FILTER (WHERE query NOT LIKE '%waiting for the other worker%') || ' ' "
  . "|| count(*) FILTER (WHERE query LIKE '%waiting for the other worker%') FROM pg_stat_activity "
  . "WHERE backend_type = 'enrollment worker' AND datname = 'postgres'";
my $first = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'enrollment worker' AND datname = 'postgres'");
my $launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'enrollment launcher'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
ok($node->poll_query_until('postgres', $workers, '1 1'),
	'after a launcher restart: one worker runs, the second waits for it');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($first)");
ok($node->poll_query_until('postgres', "$workers AND pid <> $first", '1 0'),
	'and takes over when the first exits');
$r0 = worker_rounds();
ok($node->poll_query_until('postgres',
		"SELECT value >= $r0 + 4 FROM enrollment.stats WHERE area = 'worker' AND counter = 'runs'"),
	'rounds go on');

# a reload changes the interval without a restart
$node->append_conf('postgresql.conf', 'enrollment.worker_interval = 2');
$node->reload;
ok($node->poll_query_until('postgres', "SELECT current_setting('enrollment.worker_interval') = '2s'"),
	'the interval is a reloadable setting');
# enrollment.database_names is checked where it is set, not by the launcher
# on each of its starts: ALTER SYSTEM refuses a wrong list and writes nothing
my @names = map { "db$_" } 1 .. 65;
for my $case (
	[ '"postgres', qr/List syntax is invalid/, 'an unterminated quote' ],
	[ join(',', @names), qr/At most 64 databases can be listed; 65 are/, '65 databases' ],
	[ 'postgres, fleet, Postgres', qr/Database "postgres" is listed twice/, 'a name twice' ])
{
	my ($value, $detail, $what) = @$case;
	my ($rc, $out, $err) = $node->psql('postgres', "ALTER SYSTEM SET enrollment.database_names = '$value'");
	like($err, qr/invalid value for parameter "enrollment.database_names".*\n.*$detail/,
		"ALTER SYSTEM refuses $what");
}
unlike(slurp_file($node->data_dir . '/postgresql.auto.conf'), qr/database_names/, 'and wrote none of them');
for my $value ('"Fleet", fleet', join(',', @names[0 .. 63]))
{
	$node->safe_psql('postgres', "ALTER SYSTEM SET enrollment.database_names = '$value'");
}
like(slurp_file($node->data_dir . '/postgresql.auto.conf'), qr/database_names = 'db1,.*,db64'/,
	'ALTER SYSTEM takes 64 names, and two that differ only by quoted capitals');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET enrollment.database_names');

$node->stop;
my $log = slurp_file($node->logfile);
is(scalar(() = $log =~ /does not exist; waiting/g), 1, 'the missing database was reported once');
# errors not raised by this test's own sessions and not the deliberate termination
my @deaths = grep { /\b(?:ERROR|FATAL|PANIC)\b/ && !/due to administrator command/ && !/003_worker\.pl/ }
  split /\n/, $log;
is(scalar(@deaths), 0, 'no worker failed')
  or diag(join("\n", @deaths));

# A wrong list in postgresql.conf: as for any extension's setting, the
# server warns at start, naming the setting and the reason, and keeps the
# default; the launcher then raises nothing.
my $bad = PostgreSQL::Test::Cluster->new('bad_list');
$bad->init;
$bad->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'enrollment'
enrollment.database_names = 'postgres, "fleet'
});
$bad->start;
like(slurp_file($bad->logfile),
	qr/WARNING:  invalid value for parameter "enrollment.database_names".*\n.*List syntax is invalid/,
	'a wrong database_names in postgresql.conf is reported at start');
is($bad->safe_psql('postgres', 'SHOW enrollment.database_names'), 'postgres', 'and the default is kept');
ok($bad->wait_for_log(qr/enrollment worker started for database "postgres"/), 'whose worker starts');
$bad->stop;
is(scalar(grep { /\b(?:ERROR|FATAL|PANIC)\b/ && !/due to administrator command/ } split /\n/, slurp_file($bad->logfile)),
	0, 'with no error from the launcher (the shutdown\'s own aside)');

# without the preload: no worker, no shared memory, and still correct
my $plain = PostgreSQL::Test::Cluster->new('no_preload');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION enrollment CASCADE');
my ($etok, $eid) = split / /, $plain->safe_psql('postgres',
	"SELECT token || ' ' || token_id FROM enrollment.create_token(ttl => '1 second')");
sleep(2);
is($plain->safe_psql('postgres', "SELECT status FROM enrollment.enrollment_token WHERE token_id = '$eid'"),
	'pending', 'without a worker the stored status is not updated');
is($plain->safe_psql('postgres', "SELECT status FROM enrollment.tokens WHERE token_id = '$eid'"),
	'expired', 'but the view reports the token expired');
my ($rc, $out, $err) = $plain->psql('postgres', "SELECT enrollment.enroll('$etok', 'late')");
like($err, qr/token_expired/, 'and enroll refuses it');
($rc, $out, $err) = $plain->psql('postgres',
	"SELECT * FROM enrollment.verify_request('GET', '/', NULL, NULL, NULL, NULL)");
like($err, qr/must be loaded via shared_preload_libraries/, 'verify_request asks for the preload');
$plain->stop;

done_testing();
