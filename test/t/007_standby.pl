# A primary with a streaming standby: tokens, keys and nodes replicate; the
# read-only calls (check_token, authenticate_node, the listing views) work on
# the standby and the writing ones fail there cleanly; after promotion the
# new primary enforces single use and caps for tokens used on the old one,
# and refuses a replay of a request the old primary accepted, including one
# dated after the promotion (a client clock running ahead), because the
# old primary's replay horizon reaches the standby through the WAL.
use strict;
use warnings;
use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'enrollment'");
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION enrollment CASCADE');

my $once = $primary->safe_psql('postgres', "SELECT token FROM enrollment.create_token('once', 'standby once')");
my $used = $primary->safe_psql('postgres', "SELECT token FROM enrollment.create_token('once', 'used on the old primary')");
my $cluster = $primary->safe_psql('postgres',
	"SELECT token FROM enrollment.create_token('cluster', 'capped', cluster_id => 'k', max_uses => 2)");
my $secret = $primary->safe_psql('postgres', "SELECT node_secret FROM enrollment.enroll('$used', 'old-node')");
$primary->safe_psql('postgres', "SELECT enrollment.enroll('$cluster', 'c1', 'k')");
my ($kid, $hmac) = split / /, $primary->safe_psql('postgres',
	"SELECT key_id || ' ' || hmac_secret FROM enrollment.create_api_key('replicated', ARRAY['events:read'])");
# a request accepted by the old primary
my $headers = $primary->safe_psql('postgres',
	"SELECT enrollment.sign_request('GET', '/before-failover', '$kid', '$hmac')");
is($primary->safe_psql('postgres', "SELECT ok FROM enrollment.verify_request('GET', '/before-failover', '$headers')"),
	't', 'the primary accepts a signed request');

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
# the server key lives outside the database: a standby needs a copy
copy($primary->data_dir . '/enrollment_server.key', $standby->data_dir . '/enrollment_server.key') or die;
chmod 0600, $standby->data_dir . '/enrollment_server.key';
$primary->wait_for_catchup($standby);

# read-only calls on the standby
is($standby->safe_psql('postgres', "SELECT ok FROM enrollment.check_token('$once')"), 't',
	'standby: check_token works');
is($standby->safe_psql('postgres', "SELECT error FROM enrollment.check_token('$used')"), 'token_exhausted',
	'standby: a token used on the primary is seen as used');
is($standby->safe_psql('postgres', "SELECT name FROM enrollment.authenticate_node('$secret')"), 'old-node',
	'standby: authenticate_node works');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM enrollment.tokens'), '3', 'standby: the tokens view lists');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM enrollment.nodes'), '2', 'standby: the nodes view lists');
is($standby->safe_psql('postgres', "SELECT count(*) FROM enrollment.api_keys WHERE key_id = '$kid'"), '1',
	'standby: the API key replicated');
is($standby->safe_psql('postgres',
		"SELECT ok FROM enrollment.verify_request('GET', '/s', enrollment.sign_request('GET', '/s', '$kid', '$hmac', ts => extract(epoch from now())::bigint + 10))"),
	't', 'standby: verify_request works with a copy of the server key');
# A standby backend that has read a token and a key goes to their rows'
# places first at its next calls (probe.c).  Their revocation reaches the
# standby only through WAL replay, which no trigger or callback sees: the
# backend's next call must see it all the same.
my ($rtok_id, $rtok) = split / /, $primary->safe_psql('postgres',
	"SELECT token_id || ' ' || token FROM enrollment.create_token('reusable', 'revoked on the primary')");
my ($rkid, $rhmac) = split / /, $primary->safe_psql('postgres',
	"SELECT key_id || ' ' || hmac_secret FROM enrollment.create_api_key('revoked on the primary', ARRAY['events:read'])");
$primary->wait_for_catchup($standby);
my $reader = $standby->background_psql('postgres');
my $check_r = "SELECT coalesce(error, 'ok') FROM enrollment.check_token('$rtok')";
my $verify_r = "SELECT coalesce(error, 'ok') FROM enrollment.verify_request('GET', '/r', "
  . "enrollment.sign_request('GET', '/r', '$rkid', '$rhmac', ts => extract(epoch from now())::bigint + 10))";
my $probes = "SELECT pg_stat_get_xact_numscans('enrollment.enrollment_token_public_id_key'::regclass)"
  . " + pg_stat_get_xact_numscans('enrollment.api_key_pkey'::regclass)";
is($reader->query_safe($check_r) . ' ' . $reader->query_safe($verify_r), 'ok ok',
	'standby: a backend reads a token and a key');
$reader->query_safe('BEGIN');
my $before = $reader->query_safe($probes);
is($reader->query_safe($check_r) . ' ' . $reader->query_safe($verify_r), 'ok ok', 'standby: and reads them again');
is($reader->query_safe($probes) - $before, 0, 'standby: the second time at their places, without the indexes');
$reader->query_safe('COMMIT');
$primary->safe_psql('postgres', "SELECT enrollment.revoke_token('$rtok_id')");
$primary->safe_psql('postgres', "SELECT enrollment.revoke_api_key('$rkid')");
$primary->wait_for_catchup($standby);
is($reader->query_safe($check_r), 'token_revoked',
	'standby: that backend sees the revocation of the token replayed from the primary');
is($reader->query_safe($verify_r), 'invalid_key', 'standby: and the revocation of the key');

# A node limit and a rate set on the primary (0.7.0) count on the standby
# from their replay on: the backend that has learnt there are none forgets
# it through the invalidation replayed with the commit (limits_cache.c).
my ($ltok_id, $ltok) = split / /, $primary->safe_psql('postgres',
	"SELECT token_id || ' ' || token FROM enrollment.create_token('reusable', 'limited on the primary')");
$primary->wait_for_catchup($standby);
my $check_l = "SELECT coalesce(error, 'ok') FROM enrollment.check_token('$ltok')";
is($reader->query_safe($check_l), 'ok', 'standby: no limit yet');
$primary->safe_psql('postgres', 'SELECT enrollment.set_node_limit(0)');
$primary->wait_for_catchup($standby);
is($reader->query_safe($check_l), 'node_limit_exceeded',
	'standby: that backend sees the node limit set on the primary');
$primary->safe_psql('postgres', "SELECT enrollment.set_node_limit(NULL); SELECT enrollment.set_token_rate('$ltok_id', 0)");
$primary->wait_for_catchup($standby);
is($reader->query_safe($check_l), 'rate_limited', 'standby: and the rate set on the primary');
$primary->safe_psql('postgres', "SELECT enrollment.set_token_rate('$ltok_id', NULL)");
$reader->quit;

my ($rc, $out, $err) = $standby->psql('postgres', "SELECT enrollment.enroll('$once', 'on-standby')");
like($err, qr/read-only transaction/, 'standby: enroll fails cleanly (needs the primary)');
($rc, $out, $err) = $standby->psql('postgres', "SELECT enrollment.create_token()");
like($err, qr/read-only transaction/, 'standby: create_token fails cleanly');

# A client whose clock runs two minutes ahead (inside the window) has a
# request accepted by the primary just before it fails.  With a synchronous
# standby the verification returns only once the replicated horizon has
# reached the standby, as a commit would.
$primary->safe_psql('postgres', "ALTER SYSTEM SET synchronous_standby_names = 'standby'");
$primary->reload;
$primary->poll_query_until('postgres',
	"SELECT sync_state = 'sync' FROM pg_stat_replication WHERE application_name = 'standby'");
my $ahead = $primary->safe_psql('postgres',
	"SELECT enrollment.sign_request('GET', '/ahead', '$kid', '$hmac', ts => extract(epoch from now())::bigint + 120)");
is($primary->safe_psql('postgres', "SELECT ok FROM enrollment.verify_request('GET', '/ahead', '$ahead')"), 't',
	'the primary accepts a request dated two minutes ahead');
my ($ahead_ts) = $ahead =~ /"X-Telovix-Timestamp"\s*:\s*"(\d+)"/;
ok($primary->safe_psql('postgres', 'SELECT horizon FROM enrollment.replay_horizon') >= $ahead_ts,
	'the replicated horizon covers it');
is($standby->safe_psql('postgres', "SELECT ok FROM enrollment.verify_request('GET', '/ahead', '$ahead')"), 't',
	'standby: the same request is accepted there (each server has its own nonce cache)');

# failover (no wait for catch-up: the synchronous standby has what it needs)
$primary->stop('immediate');
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
is($standby->safe_psql('postgres', "SELECT status FROM enrollment.enroll('$once', 'after-failover')"), 'active',
	'new primary: an unused once token enrolls');
($rc, $out, $err) = $standby->psql('postgres', "SELECT enrollment.enroll('$once', 'again')");
like($err, qr/token_exhausted/, 'new primary: and only once');
($rc, $out, $err) = $standby->psql('postgres', "SELECT enrollment.enroll('$used', 'again')");
like($err, qr/token_exhausted/, 'new primary: a token used on the old primary stays used');
$standby->safe_psql('postgres', "SELECT enrollment.enroll('$cluster', 'c2', 'k')");
is($standby->safe_psql('postgres', "SELECT status || ' ' || use_count FROM enrollment.tokens WHERE label = 'capped'"),
	'exhausted 2', 'new primary: the cap counts the enrollment made on the old primary (2 of 2)');
($rc, $out, $err) = $standby->psql('postgres', "SELECT enrollment.enroll('$cluster', 'c3', 'k')");
like($err, qr/token_exhausted/, 'new primary: and holds');
is($standby->safe_psql('postgres', "SELECT error FROM enrollment.verify_request('GET', '/before-failover', '$headers')"),
	'stale_timestamp', 'new primary: a replay of a request the old primary accepted is refused');
is($standby->safe_psql('postgres', "SELECT error FROM enrollment.verify_request('GET', '/ahead', '$ahead')"),
	'stale_timestamp',
	'new primary: a replay of a request the old primary accepted dated after the promotion is refused too');
is($standby->safe_psql('postgres', "SELECT ok FROM enrollment.verify_request('GET', '/ahead2', "
		. "enrollment.sign_request('GET', '/ahead2', '$kid', '$hmac', ts => $ahead_ts))"),
	'f', 'new primary: so is any request dated at or before the old primary\'s horizon');
# (a request dated after that horizon is accepted)
my $h = $standby->safe_psql('postgres', 'SELECT horizon FROM enrollment.replay_horizon');
my $fresh = $standby->safe_psql('postgres',
	"SELECT enrollment.sign_request('GET', '/after', '$kid', '$hmac', ts => $h + 1)");
is($standby->safe_psql('postgres', "SELECT ok FROM enrollment.verify_request('GET', '/after', '$fresh')"), 't',
	'new primary: a request signed after the failover is accepted');
is($standby->safe_psql('postgres', "SELECT error FROM enrollment.verify_request('GET', '/after', '$fresh')"),
	'nonce_reused', 'new primary: and its replay is refused');

$standby->stop;
done_testing();
