# pg_dump of a database using enrollment holds no plaintext token, secret or
# node credential, and after a restore into a new database the old tokens
# and credentials still work.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'enrollment'");
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION enrollment CASCADE');
my $once = $node->safe_psql('postgres', "SELECT token FROM enrollment.create_token('once', 'dumped')");
my $cluster = $node->safe_psql('postgres',
	"SELECT token FROM enrollment.create_token('cluster', cluster_id => 'k8s', max_uses => 5)");
my $used = $node->safe_psql('postgres', "SELECT token FROM enrollment.create_token()");
my $secret = $node->safe_psql('postgres', "SELECT node_secret FROM enrollment.enroll('$used', 'n1')");
my ($kid, $hmac) = split / /, $node->safe_psql('postgres',
	"SELECT key_id || ' ' || hmac_secret FROM enrollment.create_api_key('dumped key', ARRAY['events:read'])");
# 0.2.0: a member, an API token owned by them, a sealed audit chain
$node->safe_psql('postgres', "SELECT enrollment.add_member('ops\@example.com', 'operator')");
my $apitok = $node->safe_psql('postgres',
	"SELECT set_config('enrollment.actor', 'ops\@example.com', false); SELECT token FROM enrollment.create_api_token('dumped api token')");
$apitok = (split /\n/, $apitok)[-1];
# 0.7.0: new nodes wait for approval, except the cluster's, which a rule admits
$node->safe_psql('postgres', "SELECT enrollment.set_node_approval('manual')");
$node->safe_psql('postgres', "SELECT enrollment.create_auto_approve_rule('k8s', 'dumped rule', NULL, 5)");
# 0.7.0: an address pool, and a group an enrollment made
$node->safe_psql('postgres', "SELECT enrollment.set_ip_pool('100.64.0.0/24')");
$node->safe_psql('postgres',
	"SELECT enrollment.enroll(token, 'placed', node_group => 'dumped group') FROM enrollment.create_token()");
# 0.7.0: a tenant with a node limit, one node enrolled (its kept count is 1)
my $lic = "SET enrollment.tenant = 'licensed';";
$node->safe_psql('postgres', "$lic SELECT enrollment.set_node_limit(2)");
$node->safe_psql('postgres', "$lic SELECT enrollment.enroll(token, 'l1') FROM enrollment.create_token()");
my ($lic2, $lic3) = split /\n/, $node->safe_psql('postgres',
	"$lic SELECT token FROM enrollment.create_token() UNION ALL SELECT token FROM enrollment.create_token()");
is($node->safe_psql('postgres', 'SELECT tenant || \' \' || nodes FROM enrollment.tenant_node_count'), 'licensed 1',
	'the limited tenant\'s node count is kept');
$node->safe_psql('postgres', 'SELECT enrollment.seal_audit()');
like($once, qr/^enr_[0-9a-f]{16}\.[A-Za-z0-9_-]{49}$/, 'token has the documented shape');
like($secret, qr/^node_[0-9a-f]{16}\.[A-Za-z0-9_-]{49}$/, 'node credential has the documented shape');

my $dumpfile = $node->basedir . '/enrollment.dump';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-Fc', '-f', $dumpfile ], 'pg_dump');
my $plain = $node->basedir . '/enrollment.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $plain ], 'plain pg_dump');
my $dump = slurp_file($plain) . slurp_file($dumpfile);

ok(length($dump) > 1000 && $dump =~ /enrollment_token/, 'the dump contains the token table');
for my $s ([ 'once token', $once ], [ 'cluster token', $cluster ], [ 'used token', $used ],
	[ 'node credential', $secret ])
{
	my ($what, $plaintext) = @$s;
	my ($public, $private) = split /\./, $plaintext;
	ok(index($dump, $private) < 0, "$what: secret part not in the dump");
}
{
	my ($public, $private) = split /\./, $apitok;
	ok(index($dump, $private) < 0, 'API token: secret part not in the dump');
}
ok(index(lc($dump), $hmac) < 0, 'HMAC secret not in the dump (as hex)');
ok(index($dump, pack('H*', $hmac)) < 0, 'HMAC secret not in the dump (as bytes)');

# restore into a fresh database: everything still verifies
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dumpfile ], 'pg_restore');
is($node->safe_psql('restored', "SELECT ok FROM enrollment.check_token('$once')"), 't',
	'a restored once token checks out');
is($node->safe_psql('restored', "SELECT status FROM enrollment.enroll('$cluster', 'n2', 'k8s')"), 'active',
	'a restored cluster token enrolls, approved by the restored rule');
is($node->safe_psql('restored', "SELECT label || ' ' || approved_count FROM enrollment.auto_approve_rules"),
	'dumped rule 1', 'the rule was restored, and counted that node');
is($node->safe_psql('restored',
		"SELECT e.status FROM enrollment.create_token() AS t, LATERAL enrollment.enroll(t.token, 'n3') AS e"),
	'pending_approval', 'the restored setting holds a node of no cluster for approval');
is($node->safe_psql('restored',
		"SELECT host(e.private_ip) || ' ' || e.node_group FROM enrollment.create_token() AS t,"
		  . " LATERAL enrollment.enroll(t.token, 'n4', node_group => 'dumped group') AS e"),
	'100.64.0.4 dumped group', 'the restored pool gives the next address, and the group is the restored one');
is($node->safe_psql('restored', "SELECT count(*) FROM enrollment.node_group"), '1',
	'the group was restored, and not made again');
is($node->safe_psql('restored', "SELECT name FROM enrollment.authenticate_node('$secret')"), 'n1',
	'a restored node credential authenticates');
is($node->safe_psql('restored',
		"SELECT ok FROM enrollment.verify_request('GET', '/r', enrollment.sign_request('GET', '/r', '$kid', '$hmac'))"),
	't', 'a restored API key verifies signed requests');
is($node->safe_psql('restored', "SELECT ok FROM enrollment.verify_api_token('$apitok', 'tokens:write')"),
	't', 'a restored API token verifies, with its owner\'s restored role');
is($node->safe_psql('restored', 'SELECT ok AND events_checked > 5 FROM enrollment.verify_audit_chain()'),
	't', 'the restored audit chain verifies');
my ($rc, $out, $err) = $node->psql('restored', "SELECT enrollment.enroll('$used', 'again')");
like($err, qr/token_exhausted/, 'a used token stays used after restore');
is($node->safe_psql('restored', 'SELECT count(*) FROM enrollment.audit_log'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM enrollment.audit_log') + 5,
	'the audit log was restored (plus the three enrollments and two tokens)');

# the kept node count is restored with the nodes, and goes on from there
is($node->safe_psql('restored', 'SELECT tenant || \' \' || nodes FROM enrollment.tenant_node_count'), 'licensed 1',
	'the kept node count is restored');
is($node->safe_psql('restored', "$lic SELECT coalesce(error, 'ok') FROM enrollment.check_token('$lic2')"), 'ok',
	'check_token of the restored tenant');
is($node->safe_psql('restored', "$lic SELECT status FROM enrollment.enroll('$lic2', 'l2')"), 'active',
	'the restored limit leaves a slot');
is($node->safe_psql('restored', 'SELECT tenant || \' \' || nodes FROM enrollment.tenant_node_count'), 'licensed 2',
	'and that enrollment moves the restored count');
($rc, $out, $err) = $node->psql('restored', "$lic SELECT enrollment.enroll('$lic3', 'l3')");
like($err, qr/node_limit_exceeded/, 'the restored limit holds');

$node->stop;
done_testing();
