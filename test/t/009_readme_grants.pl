# The README's grants, run as written: the application, console and
# dashboard roles can do what the README says they do, as non-superusers,
# and nothing of another tenant reaches them through a function of theirs
# in WHERE (security barrier views; no TEMPORARY on the database).
use strict;
use warnings;
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $readme = slurp_file(dirname(__FILE__) . '/../../README.md');
my ($grants) = $readme =~ /```sql\n(-- 1\. the application role.*?)```/s;
ok(defined $grants, 'the README has the grants block');

my $node = PostgreSQL::Test::Cluster->new('grants');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'enrollment'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION enrollment CASCADE');
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN; CREATE ROLE console LOGIN; CREATE ROLE dashboard LOGIN');
$node->safe_psql('postgres', $grants);

# A DBA sets up two tenants; "other" holds what acme's roles must never see.
$node->safe_psql('postgres', q{
SET enrollment.tenant = 'acme';
SELECT enrollment.add_member(m, r)
  FROM (VALUES ('adm@acme', 'admin'), ('ops@acme', 'operator'), ('view@acme', 'viewer')) AS v(m, r);
SET enrollment.tenant = 'other';
SELECT enrollment.add_member('own@other', 'owner');
SET enrollment.actor = 'own@other';
SELECT enrollment.create_token(label => 'OTHER-TOKEN');
SELECT enrollment.create_api_key('OTHER-KEY', ARRAY['events:read']);
SELECT enrollment.create_api_token('OTHER-API-TOKEN');
});

# as a role, acting for identity in acme: psql's result, or its error
sub as_role
{
	my ($role, $identity, $sql) = @_;
	my ($out, $err);
	$node->psql('postgres',
		"SET enrollment.tenant = 'acme'; SET enrollment.actor = '$identity';\n$sql",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', $role, '-v', 'ON_ERROR_STOP=1' ]);
	return $err =~ /ERROR:\s+(.*)/ ? "ERROR: $1" : $out;
}

# two nodes for the console to remove, one by itself and one with its
# token, and one waiting for its approval
my ($to_remove, $to_bulk_revoke, $to_approve) = split /\n/, $node->safe_psql('postgres', q{
SET enrollment.tenant = 'acme';
SELECT e.node_id FROM enrollment.create_token(label => 'acme-removed') AS t,
       LATERAL enrollment.enroll(t.token, 'acme-removed') AS e;
SELECT t.token_id FROM enrollment.create_token(label => 'acme-bulk') AS t,
       LATERAL enrollment.enroll(t.token, 'acme-bulk') AS e;
SELECT FROM enrollment.set_node_approval('manual');
SELECT e.node_id FROM enrollment.create_token(label => 'acme-approved') AS t,
       LATERAL enrollment.enroll(t.token, 'acme-approved') AS e;
SELECT FROM enrollment.set_node_approval('auto');
});

# console: every management call of its grant, and every view
my $calls = q{
SELECT token IS NOT NULL FROM enrollment.create_token(label => 'acme-token');
SELECT enrollment.set_token_rate(token_id, 60) FROM enrollment.create_token('reusable', 'acme-rated');
SELECT s.token IS NOT NULL FROM enrollment.create_token('reusable', 'acme-renewed') AS t,
       LATERAL enrollment.renew_token(t.token_id) AS s;
SELECT enrollment.remove_node('TO_REMOVE');
SELECT enrollment.revoke_token_and_nodes('TO_BULK_REVOKE')->>'nodes_removed';
SELECT enrollment.set_node_approval('manual');
SELECT enrollment.create_auto_approve_rule('acme-c', 'acme rule', ARRAY['sensor'], 5) IS NOT NULL;
SELECT enrollment.delete_auto_approve_rule(enrollment.create_auto_approve_rule('acme-d', 'acme deleted', NULL, 3));
SELECT enrollment.approve_node('TO_APPROVE');
SELECT enrollment.set_node_approval('auto');
SELECT enrollment.set_ip_pool('10.77.0.0/24') IS NULL;
SELECT key_id IS NOT NULL FROM enrollment.create_api_key('acme-key', ARRAY['events:read']);
SELECT token IS NOT NULL FROM enrollment.create_api_token('acme-api-token');
SELECT true FROM enrollment.add_member('new@acme', 'viewer');
SELECT true FROM enrollment.set_member_role('new@acme', 'analyst');
SELECT (enrollment.remove_member('new@acme')) IS NOT NULL;
SELECT enrollment.current_member_role();
};
$calls =~ s/TO_REMOVE/$to_remove/;
$calls =~ s/TO_BULK_REVOKE/$to_bulk_revoke/;
$calls =~ s/TO_APPROVE/$to_approve/;
my $made = as_role('console', 'adm@acme', $calls);
is($made, "t\n0\nt\nt\n1\nauto\nt\n0\nt\nmanual\nt\nt\nt\nt\nt\nt\nadmin",
	'console: the management functions of its grant');
foreach my $view (qw(tokens nodes api_keys api_tokens members audit_log tenant_stats auto_approve_rules
	node_groups ip_pools))
{
	my $got = as_role('console', 'adm@acme', "SELECT count(*) > 0 OR '$view' = 'nodes' FROM enrollment.$view");
	is($got, 't', "console as an admin reads enrollment.$view");
}
is(as_role('console', 'adm@acme', q{
SELECT count(*) FROM enrollment.tokens WHERE label LIKE 'OTHER%'
UNION ALL SELECT count(*) FROM enrollment.api_keys WHERE label LIKE 'OTHER%'
UNION ALL SELECT count(*) FROM enrollment.api_tokens WHERE label LIKE 'OTHER%'}),
	"0\n0\n0", "console sees none of the other tenant's rows");
like(as_role('console', 'view@acme', 'SELECT count(*) FROM enrollment.tokens'),
	qr/ERROR: +permission_denied/, 'a viewer acting through the console may not list tokens');

# app: the machine calls
my $token = $node->safe_psql('postgres',
	"SET enrollment.tenant = 'acme'; SELECT token FROM enrollment.create_token()");
my $key = $node->safe_psql('postgres',
	"SET enrollment.tenant = 'acme'; SELECT key_id || ' ' || hmac_secret FROM enrollment.create_api_key('k', ARRAY['events:read'])");
my ($kid, $secret) = split / /, $key;
is(as_role('app', '', qq{
SELECT ok FROM enrollment.check_token('$token');
SELECT status FROM enrollment.enroll('$token', 'app-node') \\gset
SELECT :'status';
SELECT ok FROM enrollment.verify_request('GET', '/e', enrollment.sign_request('GET', '/e', '$kid', '$secret'));
}), "t\nactive\nt", 'app: check_token, enroll, verify_request');
like(as_role('app', '', 'SELECT count(*) FROM enrollment.tokens'),
	qr/ERROR: +permission denied for view tokens/, 'app reads no view');

# dashboard: nodes as a viewer, the audit log as an admin
is(as_role('dashboard', 'view@acme', "SELECT name FROM enrollment.nodes WHERE status = 'active' ORDER BY name"),
	"acme-approved\napp-node",
	'dashboard as a viewer reads nodes (the one the console approved is active, the two it removed are not)');
is(as_role('dashboard', 'adm@acme', "SELECT count(*) > 0 FROM enrollment.audit_log"), 't',
	'dashboard as an admin reads the audit log');
like(as_role('dashboard', 'view@acme', "SELECT count(*) FROM enrollment.audit_log"),
	qr/ERROR: +permission_denied/, 'dashboard as a viewer may not read the audit log');

# Grant 4: a reader of the views cannot make a function of its own ...
like(as_role('console', 'adm@acme',
		'CREATE FUNCTION pg_temp.peek(text) RETURNS boolean LANGUAGE sql AS $$SELECT true$$'),
	qr/ERROR: +permission denied/, 'console cannot create a temporary function');

# ... and where one exists (made by a superuser here), the security barrier
# views keep the other tenant's rows from it: a function that costs less than
# the tenant filter and raises a notice with what it is given
$node->safe_psql('postgres', q{
CREATE FUNCTION public.peek(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
$$BEGIN RAISE NOTICE 'peek: %', $1; RETURN true; END$$;
GRANT EXECUTE ON FUNCTION public.peek(text) TO console;
});
# what the cheap function was shown by console, acting as acme's admin,
# reading view with the function on column in WHERE
sub peeked
{
	my ($view, $col) = @_;
	my ($out, $err);
	$node->psql('postgres',
		"SET enrollment.tenant = 'acme'; SET enrollment.actor = 'adm\@acme';"
		  . " SET enable_indexscan = off; SET enable_bitmapscan = off;"
		  . " SELECT count(*) FROM enrollment.$view WHERE public.peek($col)",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', 'console' ]);
	return $err =~ /peek: (\S+)/g;
}
foreach my $q ([ 'api_keys', 'label' ], [ 'api_tokens', 'label' ], [ 'members', 'identity' ])
{
	my @seen = peeked(@$q);
	ok(@seen > 0 && !grep({ /OTHER|other/ } @seen),
		"$q->[0]: the cheap function sees acme's rows only (" . join(',', @seen) . ')');
}

# the test above can fail: without the barrier the function sees other tenants
$node->safe_psql('postgres', 'ALTER VIEW enrollment.api_keys RESET (security_barrier)');
ok(grep({ $_ eq 'OTHER-KEY' } peeked('api_keys', 'label')),
	'control: without the barrier the function sees the other tenant');

# app: check_token reports a rate and a node limit (0.7.0) with no more
# than its grant: it counts nodes without SQL, so it needs no privilege on
# the tables
my ($rated_id, $rated) = split / /, $node->safe_psql('postgres',
	"SET enrollment.tenant = 'acme'; SELECT token_id || ' ' || token FROM enrollment.create_token('reusable', 'rated')");
$node->safe_psql('postgres', "SET enrollment.tenant = 'acme'; SELECT enrollment.set_token_rate('$rated_id', 1);"
	  . " SELECT enrollment.enroll('$rated', 'rated-node')");
is(as_role('app', '', "SELECT error FROM enrollment.check_token('$rated')"), 'rate_limited',
	'app: check_token reports a rate used up');
my $fresh = $node->safe_psql('postgres', "SET enrollment.tenant = 'acme'; SELECT token FROM enrollment.create_token()");
is(as_role('app', '', "SELECT coalesce(error, 'ok') FROM enrollment.check_token('$fresh')"), 'ok',
	'app: and a token of a tenant with room');
$node->safe_psql('postgres', "SET enrollment.tenant = 'acme'; SELECT enrollment.set_node_limit(2)");
is(as_role('app', '', "SELECT error FROM enrollment.check_token('$fresh')"), 'node_limit_exceeded',
	'app: and a node limit reached');

$node->stop;
done_testing();
