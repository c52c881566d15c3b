# Signed API requests end to end: the seed's Python client (signing logic
# unchanged) against verify_request, every rejection it can meet, replays
# after a restart and after a crash, and many sessions racing on the same
# nonces.
use strict;
use warnings;
use JSON::PP;
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $client = dirname(__FILE__) . '/../client/seed_client.py';

my $node = PostgreSQL::Test::Cluster->new('signed');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'enrollment'\nenrollment.worker_interval = 1");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION enrollment CASCADE');

sub create_key
{
	my ($label, $scopes, $days) = @_;
	$days = defined $days ? $days : 'NULL';
	my $row = $node->safe_psql('postgres',
		"SELECT key_id || ' ' || hmac_secret FROM enrollment.create_api_key('$label', $scopes, $days)");
	return split / /, $row;
}

# run the seed client; returns the request it would have sent
sub sign
{
	my ($kid, $secret, $method, $path, $body, @opts) = @_;
	my ($stdout, $stderr);
	IPC::Run::run([ 'python3', $client, $kid, $secret, $method, $path, $body // '', @opts ],
		'>', \$stdout, '2>', \$stderr)
	  or die "seed client failed: $stderr";
	return decode_json($stdout);
}

# verify a request (optionally altered) and return "ok|error|http_status"
sub verify
{
	my ($req, %alter) = @_;
	my $method = $alter{method} // $req->{method};
	my $path = $alter{path} // $req->{path};
	my $body_hex = $alter{body_hex} // $req->{body_hex};
	my %headers = %{ $req->{headers} };
	delete $headers{$_} for @{ $alter{drop} // [] };
	my $json = encode_json(\%headers);
	$json =~ s/'/''/g;
	my $scope = defined $alter{scope} ? "'$alter{scope}'" : 'NULL';
	return $node->safe_psql('postgres',
		"SELECT ok || '|' || coalesce(error, '') || '|' || http_status FROM enrollment.verify_request("
		  . "'$method', '$path', '$json'::jsonb, decode('$body_hex', 'hex'), $scope)");
}

my ($kid, $secret) = create_key('seed client', "ARRAY['sensors:read', 'events:read']");
my ($rkid, $rsecret) = create_key('to revoke', "ARRAY['sensors:read']");
my ($xkid, $xsecret) = create_key('to expire', "ARRAY['sensors:read']", 1);
$node->safe_psql('postgres', "SELECT enrollment.revoke_api_key('$rkid')");
$node->safe_psql('postgres',
	"UPDATE enrollment.api_key SET expires_at = now() - interval '1 second' "
	  . "WHERE key_id = ('x' || '$xkid')::bit(64)::bigint");

my $good = sign($kid, $secret, 'GET', '/api/v2/sensors');
is(verify($good, scope => 'sensors:read'), 'true||200', 'the seed client\'s request is accepted');
is(verify($good, scope => 'sensors:read'), 'false|nonce_reused|401', 'its replay is rejected');

my $post = sign($kid, $secret, 'POST', '/api/v2/events?since=1', '{"q":"x"}');
is(verify($post), 'true||200', 'a POST with a body and a query string is accepted');

is(verify(sign($kid, $secret, 'GET', '/api/v2/sensors', '', '--skew', '-400')),
	'false|stale_timestamp|401', 'a request 400 s old is stale');
is(verify(sign($kid, $secret, 'GET', '/api/v2/sensors', '', '--skew', '400')),
	'false|stale_timestamp|401', 'a request 400 s in the future is stale');
is(verify(sign($kid, 'ab' x 32, 'GET', '/api/v2/sensors')), 'false|bad_signature|401', 'wrong secret');
is(verify(sign($kid, $secret, 'POST', '/api/v2/alerts', '{"a":1}'), body_hex => unpack('H*', '{"a":2}')),
	'false|bad_signature|401', 'wrong body');
is(verify(sign($kid, $secret, 'GET', '/api/v2/sensors'), path => '/api/v2/sensors/1'),
	'false|bad_signature|401', 'wrong path');
is(verify(sign($kid, $secret, 'GET', '/api/v2/sensors'), method => 'DELETE'),
	'false|bad_signature|401', 'wrong method');
is(verify(sign($rkid, $rsecret, 'GET', '/api/v2/sensors')), 'false|invalid_key|401', 'revoked key');
is(verify(sign($xkid, $xsecret, 'GET', '/api/v2/sensors')), 'false|invalid_key|401', 'expired key');
is(verify(sign('00000000000000ff', $secret, 'GET', '/api/v2/sensors')), 'false|invalid_key|401', 'unknown key');
is(verify(sign($kid, $secret, 'GET', '/api/v2/sensors'), drop => ['X-Telovix-Nonce']),
	'false|missing_headers|401', 'missing header');
is(verify(sign($kid, $secret, 'GET', '/api/v2/sensors', '', '--nonce', 'n' x 129)),
	'false|invalid_nonce|401', '129-character nonce');
is(verify(sign($kid, $secret, 'GET', '/api/v2/sensors', '', '--nonce', 'n' x 128)),
	'true||200', '128-character nonce');
is(verify(sign($kid, $secret, 'GET', '/api/v2/audit'), scope => 'audit:read'),
	'false|insufficient_scope|403', 'scope missing');

# replay after a clean restart, and after a crash: both refused; fresh
# requests are accepted again within a few seconds
my $before = sign($kid, $secret, 'GET', '/api/v2/sensors');
is(verify($before), 'true||200', 'accepted before the restart');
$node->restart;
is(verify($before), 'false|stale_timestamp|401', 'replay after a restart is refused');
ok( $node->poll_query_until('postgres',
		"SELECT ok FROM enrollment.verify_request('GET', '/p', "
		  . "enrollment.sign_request('GET', '/p', '$kid', '$secret'))", 't'),
	'fresh requests are accepted again after the restart');

my $crash = sign($kid, $secret, 'GET', '/api/v2/sensors');
is(verify($crash), 'true||200', 'accepted before the crash');
$node->stop('immediate');
$node->start;
is(verify($crash), 'false|stale_timestamp|401', 'replay after a crash is refused');
ok( $node->poll_query_until('postgres',
		"SELECT ok FROM enrollment.verify_request('GET', '/p', "
		  . "enrollment.sign_request('GET', '/p', '$kid', '$secret'))", 't'),
	'fresh requests are accepted again after the crash');

# 8 clients race on 50 signed requests: each is accepted exactly once
$node->safe_psql('postgres', qq{
	CREATE TABLE reqs AS
	SELECT i AS id, enrollment.sign_request('GET', '/race', '$kid', '$secret', nonce => 'race-' || i) AS headers
	  FROM generate_series(1, 50) i;
	CREATE TABLE outcomes (id int, ok boolean, error text);
});
$node->pgbench(
	'--no-vacuum --client=8 --jobs=2 --transactions=200',
	0, [qr{processed: 1600/1600}], [qr{^$}],
	'8 clients present the same requests concurrently',
	{
		'002_race' => q{
			\set id random(1, 50)
			INSERT INTO outcomes SELECT :id, v.ok, v.error
			  FROM reqs, enrollment.verify_request('GET', '/race', reqs.headers) v WHERE reqs.id = :id;
		}
	});
is($node->safe_psql('postgres', 'SELECT count(*) FROM outcomes WHERE ok GROUP BY id HAVING count(*) > 1'),
	'', 'no request was accepted twice');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT id) FROM outcomes WHERE ok'),
	$node->safe_psql('postgres', 'SELECT count(DISTINCT id) FROM outcomes'),
	'every request presented was accepted once');
is($node->safe_psql('postgres', "SELECT count(*) FROM outcomes WHERE NOT ok AND error <> 'nonce_reused'"),
	'0', 'every other attempt was a nonce_reused');

# the worker's sweep (a round a second here) frees only nonces that left the window
{
	my ($kid, $secret) = create_key('sweep', "ARRAY['events:read']");
	my $headers = $node->safe_psql('postgres',
		"SELECT enrollment.sign_request('GET', '/s', '$kid', '$secret', nonce => 'kept-over-sweeps')");
	my $verify = "SELECT coalesce(error, 'ok') FROM enrollment.verify_request('GET', '/s', '$headers'::jsonb)";
	is($node->safe_psql('postgres', $verify), 'ok', 'a nonce is accepted');
	my $runs = "SELECT value FROM enrollment.stats WHERE area = 'worker' AND counter = 'runs'";
	my $before = $node->safe_psql('postgres', $runs);
	ok($node->poll_query_until('postgres', "SELECT ($runs) >= $before + 2"), 'the worker swept twice');
	is($node->safe_psql('postgres', $verify), 'nonce_reused', 'its replay is still refused after the sweeps');
}

# In a database whose encoding is not UTF-8 the nonce's characters are
# counted in that encoding: in LATIN1 the degree sign is one byte (0xB0), which
# read as UTF-8 would be a continuation byte and count as no character at all.
$node->safe_psql('postgres',
	"CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
$node->safe_psql('latin', 'CREATE EXTENSION enrollment CASCADE');
my ($lkid, $lsecret) = split / /, $node->safe_psql('latin',
	"SELECT key_id || ' ' || hmac_secret FROM enrollment.create_api_key('latin', ARRAY['events:read'])");
foreach my $case ([ 128, 'true|' ], [ 129, 'false|invalid_nonce' ])
{
	my ($n, $want) = @$case;
	is( $node->safe_psql('latin',
			"SELECT v.ok || '|' || coalesce(v.error, '') FROM enrollment.verify_request('GET', '/l',"
			  . " enrollment.sign_request('GET', '/l', '$lkid', '$lsecret', nonce => repeat(chr(176), $n))) v"),
		$want,
		"LATIN1 database: a nonce of $n one-byte characters above 0x7F is "
		  . ($n <= 128 ? 'accepted' : 'refused'));
}

# A verification that reaches the horizon step only after a promotion (its
# backend read no row in recovery) finds the row written by another server
# start: that step raises the floor above the other start's horizon, as the
# first verification out of recovery does.  Simulated on this server: after
# a backend's first verification the row is made to look written by another
# start, 200 s ahead (the floor then stays up for 200 s: last on this node).
{
	my ($hkid, $hsecret) = create_key('horizon', "ARRAY['events:read']");
	my $b = $node->background_psql('postgres');
	my $at = sub {
		my ($ahead, $nonce) = @_;
		return $b->query_safe(
			"SELECT coalesce(error, 'ok') FROM enrollment.verify_request('GET', '/h', "
			  . "enrollment.sign_request('GET', '/h', '$hkid', '$hsecret', "
			  . "ts => extract(epoch from now())::bigint + $ahead, nonce => '$nonce'))");
	};
	is($at->(0, 'h-1'), 'ok', 'horizon: a request now is accepted');
	$node->safe_psql('postgres',
		'UPDATE enrollment.replay_horizon SET instance = 12345, horizon = extract(epoch from now())::bigint + 200');
	is($at->(100, 'h-2'), 'stale_timestamp',
		"horizon: one dated inside another start's horizon is refused by a backend that had not read it");
	is($at->(250, 'h-3'), 'ok', 'horizon: one dated after it is accepted');
	$b->quit;
}

$node->stop;

# A cluster with the extension and one API key, preloaded with the given
# postgresql.conf lines: name, lines -> node, key id, secret
sub cache_node
{
	my ($name, $conf) = @_;
	my $n = PostgreSQL::Test::Cluster->new($name);
	$n->init;
	$n->append_conf('postgresql.conf', "shared_preload_libraries = 'enrollment'\n$conf\n");
	$n->start;
	$n->safe_psql('postgres', 'CREATE EXTENSION enrollment CASCADE');
	my ($k, $s) = split / /, $n->safe_psql('postgres',
		"SELECT key_id || ' ' || hmac_secret FROM enrollment.create_api_key('$name', ARRAY['events:read'])");
	return ($n, $k, $s);
}

# One with a small nonce cache (16 partitions of 64) and a 2 s window:
# name, worker interval -> node, key id, secret
sub small_cache_node
{
	my ($name, $interval) = @_;
	return cache_node($name, qq{
enrollment.max_nonces = 1024
enrollment.hmac_window = 2
enrollment.worker_interval = $interval});
}

# Verify n requests signed in the statement, nonces tag-1 .. tag-n, with
# timestamp ts (an SQL expression; now when undef): outcome => count
sub signed_outcomes
{
	my ($n, $k, $s, $count, $tag, $ts) = @_;
	my $ts_arg = defined $ts ? ", ts => $ts" : '';
	my %out = map { split /:/ } split /\n/, $n->safe_psql('postgres', qq{
		SELECT outcome || ':' || n FROM (
		  SELECT coalesce(v.error, 'ok') AS outcome, count(*) AS n
		    FROM generate_series(1, $count) i,
		         LATERAL enrollment.verify_request('GET', '/f',
		             enrollment.sign_request('GET', '/f', '$k', '$s'$ts_arg, nonce => '$tag-' || i)) v
		   GROUP BY 1) s});
	return \%out;
}

# Raising the window by a reload does not bring back what a sweep forgot: a
# request whose nonce was swept is refused as stale even inside the new window.
{
	my ($rw, $rkid2, $rsec2) = cache_node('raised_window', "enrollment.hmac_window = 5\nenrollment.worker_interval = 1");
	my $ts0 = $rw->safe_psql('postgres', 'SELECT extract(epoch from now())::bigint');
	my $headers = $rw->safe_psql('postgres',
		"SELECT enrollment.sign_request('GET', '/w', '$rkid2', '$rsec2', ts => $ts0, nonce => 'once-only')");
	my $check = "SELECT coalesce(error, 'ok') FROM enrollment.verify_request('GET', '/w', '$headers'::jsonb)";
	is($rw->safe_psql('postgres', $check), 'ok', 'raised window: the request is accepted');
	ok($rw->poll_query_until('postgres',
			"SELECT value = 0 FROM enrollment.stats WHERE area = 'nonces' AND counter = 'held'"),
		'raised window: the worker forgets its nonce once it left the 5 s window');
	$rw->safe_psql('postgres', 'ALTER SYSTEM SET enrollment.hmac_window = 3600');
	$rw->reload;
	ok($rw->poll_query_until('postgres', "SELECT current_setting('enrollment.hmac_window') = '1h'"),
		'raised window: the reload made it an hour');
	is($rw->safe_psql('postgres', $check), 'stale_timestamp',
		'raised window: the replay, inside the new window, is refused as stale');
	is($rw->safe_psql('postgres',
			"SELECT coalesce(error, 'ok') FROM enrollment.verify_request('GET', '/w', "
			  . "enrollment.sign_request('GET', '/w', '$rkid2', '$rsec2', nonce => 'fresh'))"),
		'ok', 'raised window: a fresh request is accepted');
	$rw->stop;
}

# a full nonce cache fails closed, and frees itself as the window moves on
my ($small, $skid, $ssec) = small_cache_node('small_cache', 1);
my %by = %{ signed_outcomes($small, $skid, $ssec, 1500, 'flood') };
ok(($by{nonce_cache_full} // 0) > 0, "a full cache refuses new nonces ($by{nonce_cache_full} of 1500)");
ok(($by{ok} // 0) >= 1024 - 16 * 2 && ($by{ok} // 0) <= 1024 + 16,
	"about as many were accepted as there is room ($by{ok})");
is($small->safe_psql('postgres', "SELECT value FROM enrollment.stats WHERE area = 'nonces' AND counter = 'held'"),
	$by{ok}, 'the cache says it holds every accepted nonce');
is(join(',', sort keys %by), 'nonce_cache_full,ok', 'no other outcome');
is($small->safe_psql('postgres',
		"SELECT error FROM enrollment.verify_request('GET', '/f', "
		  . "enrollment.sign_request('GET', '/f', '$skid', '$ssec', nonce => 'flood-1'))"),
	'nonce_reused', 'while the cache is full, replays of accepted nonces are still caught');
# with no request coming in, only the worker (a round a second here) can
# free the slots of nonces that left the window
ok($small->poll_query_until('postgres',
		"SELECT value >= $by{ok} FROM enrollment.stats WHERE area = 'worker' AND counter = 'nonces_forgotten'"),
	'the worker forgets every accepted nonce once it left the window');
is($small->safe_psql('postgres', "SELECT value FROM enrollment.stats WHERE area = 'nonces' AND counter = 'held'"),
	'0', 'and the cache holds none of them any more');
is(signed_outcomes($small, $skid, $ssec, 100, 'later')->{ok} // 0,
	100, 'once the window has moved on, expired nonces make room again');
$small->stop;

# A full partition sweeps itself as soon as its oldest nonce left the window,
# also when that nonce arrived after the last sweep with an older timestamp
# than any held then (clients' clocks differ by up to the window).  The worker
# stays out of the way (a round an hour).
my ($skew, $wkid, $wsec) = small_cache_node('skewed_clocks', 3600);
my $epoch = 'extract(epoch FROM clock_timestamp())';
# start early in a second A, so that the steps below fall in A, A + 1, A + 2;
# A - 2 must be after the server's start (the replay floor refuses earlier)
my $started = $skew->safe_psql('postgres', "SELECT ceil($epoch)::bigint");
$skew->poll_query_until('postgres', "SELECT $epoch >= $started + 3 AND $epoch - floor($epoch) < 0.3");
my $A = $skew->safe_psql('postgres', "SELECT floor($epoch)::bigint");
# second A: fill the cache with the oldest and the newest timestamps allowed
my $a1 = signed_outcomes($skew, $wkid, $wsec, 700, 'a-old', $A - 2);
my $a2 = signed_outcomes($skew, $wkid, $wsec, 700, 'a-new', $A + 2);
ok(($a2->{nonce_cache_full} // 0) > 0 && ($a1->{ok} // 0) > 0, 'second A: the cache is full')
  or diag(join ', ', map { "$_: $a1->{$_}" } sort keys %$a1);
# second A + 1: the A - 2 nonces have left the window; full partitions sweep
# them, keeping only A + 2 ones, then fill up again with A - 1 timestamps
$skew->poll_query_until('postgres', "SELECT $epoch >= $A + 1");
signed_outcomes($skew, $wkid, $wsec, 300, 'b', $A + 2);
my $c = signed_outcomes($skew, $wkid, $wsec, 1500, 'c', $A - 1);
ok(($c->{nonce_cache_full} // 0) > 0, 'second A + 1: full again, with nonces older than any the sweep kept');
# second A + 2: those A - 1 nonces have left the window in turn, while every
# nonce the last sweep saw is still inside it
$skew->poll_query_until('postgres', "SELECT $epoch >= $A + 2");
my $d = signed_outcomes($skew, $wkid, $wsec, 100, 'd');
my $late = $skew->safe_psql('postgres', "SELECT $epoch >= $A + 5");
is($late, 'f', 'the last step ran before the A + 2 nonces left the window');
is($d->{ok} // 0, 100, 'the full partitions freed the expired nonces and accepted all 100 new ones')
  or diag(join ', ', map { "$_: $d->{$_}" } sort keys %$d);
$skew->stop;

# a large cache has more partitions, so that a sweep holds each lock for a
# shorter time: 600 000 nonces make 32.  Requests land in all of them, and
# each catches the replays of its own nonces.
my ($wide, $gkid, $gsec) = cache_node('wide_cache', 'enrollment.max_nonces = 600000');
my $nonce_stat = "SELECT value FROM enrollment.stats WHERE area = 'nonces' AND counter = ";
is($wide->safe_psql('postgres', $nonce_stat . "'partitions'"), '32', '600 000 nonces: 32 partitions');
is_deeply(signed_outcomes($wide, $gkid, $gsec, 3000, 'wide'), { ok => 3000 },
	'3000 new nonces accepted');
is_deeply(signed_outcomes($wide, $gkid, $gsec, 3000, 'wide'), { nonce_reused => 3000 },
	'and each of them refused when replayed');
is($wide->safe_psql('postgres', $nonce_stat . "'held'"), '3000', 'the cache holds the 3000');
$wide->stop;

done_testing();
