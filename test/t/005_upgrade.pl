# ALTER EXTENSION enrollment UPDATE from every earlier release kept in sql/
# gives exactly the objects of a fresh install of the current version, keeps
# the data, and keeps EXECUTE grants on functions the upgrade re-creates.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($current) = slurp_file('enrollment.control') =~ /^default_version\s*=\s*'([^']+)'/m;
my @old = grep { $_ ne $current } map { m{^sql/enrollment--([^-]+)\.sql$} ? $1 : () } glob('sql/enrollment--*.sql');
plan skip_all => 'no earlier release to upgrade from' unless @old;

# is release a older than release b (dotted numbers)?
sub version_before
{
	my ($a, $b) = map { [ split /\./ ] } @_;
	for my $i (0 .. 2)
	{
		return $a->[$i] < $b->[$i] if $a->[$i] != $b->[$i];
	}
	return 0;
}

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'enrollment'");
$node->start;

# A description of every object of the extension and of its schema, in a
# form that does not depend on OIDs or creation order.
my $describe = q{
SELECT pg_catalog.pg_describe_object(classid, objid, objsubid) AS o
  FROM pg_catalog.pg_depend
 WHERE refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
   AND refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'enrollment')
   AND deptype = 'e'
UNION ALL
SELECT p.oid::pg_catalog.regprocedure || ' returns ' || pg_catalog.pg_get_function_result(p.oid)
       || ' secdef=' || p.prosecdef || ' vol=' || p.provolatile::text
       || ' config=' || coalesce(pg_catalog.array_to_string(p.proconfig, ','), '')
       || ' acl=' || coalesce(p.proacl::text, '')
       || ' body=' || pg_catalog.md5(p.prosrc)
  FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'enrollment'::pg_catalog.regnamespace
UNION ALL
SELECT c.oid::pg_catalog.regclass || ' ' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '')
       || ' rls=' || c.relrowsecurity || ' options=' || coalesce(c.reloptions::text, '')
       || ' ' || coalesce(pg_catalog.pg_get_viewdef(c.oid), '')
  FROM pg_catalog.pg_class c WHERE c.relnamespace = 'enrollment'::pg_catalog.regnamespace
UNION ALL
SELECT a.attrelid::pg_catalog.regclass || '.' || a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
       || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'enrollment'::pg_catalog.regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT conrelid::pg_catalog.regclass || ' ' || pg_catalog.pg_get_constraintdef(oid)
  FROM pg_catalog.pg_constraint WHERE connamespace = 'enrollment'::pg_catalog.regnamespace
UNION ALL
SELECT pg_catalog.pg_get_indexdef(indexrelid) FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
 WHERE c.relnamespace = 'enrollment'::pg_catalog.regnamespace
UNION ALL
SELECT 'policy ' || polrelid::pg_catalog.regclass || ' ' || polname || ' ' || coalesce(pg_catalog.pg_get_expr(polqual, polrelid), '')
  FROM pg_catalog.pg_policy
 WHERE polrelid IN (SELECT oid FROM pg_catalog.pg_class WHERE relnamespace = 'enrollment'::pg_catalog.regnamespace)
UNION ALL
SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid) FROM pg_catalog.pg_trigger t
  JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'enrollment'::pg_catalog.regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'init_privs ' || pg_catalog.pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' '
       || i.privtype::text || ' ' || i.initprivs::text
  FROM pg_catalog.pg_init_privs i
 WHERE EXISTS (SELECT FROM pg_catalog.pg_depend d
                WHERE d.classid = i.classoid AND d.objid = i.objoid AND d.deptype = 'e'
                  AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'enrollment'))
UNION ALL
SELECT 'comment ' || pg_catalog.pg_describe_object(c.classoid, c.objoid, c.objsubid) || ' '
       || pg_catalog.md5(c.description)
  FROM pg_catalog.pg_description c
 WHERE EXISTS (SELECT FROM pg_catalog.pg_depend d
                WHERE d.classid = c.classoid AND d.objid = c.objoid AND d.deptype = 'e'
                  AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'enrollment'))
UNION ALL
SELECT 'config_dump ' || pg_catalog.array_to_string(extconfig::pg_catalog.regclass[], ',')
  FROM pg_catalog.pg_extension WHERE extname = 'enrollment'
ORDER BY 1};

$node->safe_psql('postgres', 'CREATE ROLE app');
# a grantee whose name must be quoted: the upgrades carry its grants too
$node->safe_psql('postgres', 'CREATE ROLE "Web-Backend"');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION enrollment CASCADE');
$node->safe_psql('fresh',
	'GRANT EXECUTE ON FUNCTION enrollment.check_token(text, text), enrollment.enroll(text, text, text, text, text, text), enrollment.verify_request(text, text, jsonb, bytea, text) TO app, "Web-Backend"');
my $want = $node->safe_psql('fresh', $describe);

for my $from (@old)
{
	my $db = "from_$from" =~ s/\./_/gr;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION enrollment VERSION '$from' CASCADE");
	$node->safe_psql($db,
		'GRANT EXECUTE ON FUNCTION enrollment.check_token(text, text), enrollment.enroll(text, text, text, text), enrollment.verify_request(text, text, jsonb, bytea, text) TO app, "Web-Backend"');
	my $token = $node->safe_psql($db, "SELECT token FROM enrollment.create_token('cluster', cluster_id => 'c')");
	my $secret = $node->safe_psql($db, "SELECT node_secret FROM enrollment.enroll('$token', 'n1', 'c')");
	is($node->safe_psql($db, "SELECT name FROM enrollment.authenticate_node('$secret')"), 'n1',
		"$from: before the upgrade, the library authenticates a node on its tables");

	# a used token and a revoked one, for the retention clocks of 0.5.0
	my $once = $node->safe_psql($db, "SELECT token FROM enrollment.create_token()");
	my $direct = q{SELECT value FROM enrollment.stats WHERE area = 'enroll' AND counter = 'written_directly'};
	my $direct_before = $node->safe_psql($db, $direct);
	$node->safe_psql($db, "SELECT enrollment.enroll('$once', 'n3')");
	# the tables of 0.5.0 on have every column the direct path needs but the
	# placement of 0.7.0, which it leaves out there
	is($node->safe_psql($db, $direct) - $direct_before, version_before($from, '0.5.0') ? 0 : 1,
		"$from: before the upgrade, the library writes a once token's enrollment "
		  . (version_before($from, '0.5.0') ? 'through SQL' : 'directly'));
	$node->safe_psql($db,
		"SELECT enrollment.revoke_token(token_id) FROM enrollment.create_token('reusable')");

	$node->safe_psql($db, 'ALTER EXTENSION enrollment UPDATE');
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'enrollment'"),
		$current, "$from: updated to $current");
	my $got = $node->safe_psql($db, $describe);
	# grants carried over by the upgrade are the user's, not the
	# extension's: pg_dump still dumps them (pg_init_privs, in $describe)
	like($node->safe_psql($db, q{SELECT pg_catalog.array_to_string(proacl, ',') FROM pg_catalog.pg_proc
			WHERE oid = 'enrollment.enroll(text, text, text, text, text, text)'::pg_catalog.regprocedure}),
		qr/(^|,)app=X\/.*"Web-Backend"=X\//, "$from: the EXECUTE grants on enroll are carried over");
	is($got, $want, "$from: the upgraded objects are those of a fresh install");
	if ($got ne $want)
	{
		my %w = map { $_ => 1 } split /\n/, $want;
		my %g = map { $_ => 1 } split /\n/, $got;
		diag("only after upgrade: $_") for grep { !$w{$_} } sort keys %g;
		diag("only in fresh install: $_") for grep { !$g{$_} } sort keys %w;
	}
	is($node->safe_psql($db, "SELECT ok FROM enrollment.check_token('$token', 'c')"), 't',
		"$from: a token made before the upgrade still checks out");
	is($node->safe_psql($db, "SELECT name || ' ' || node_group FROM enrollment.authenticate_node('$secret')"),
		'n1 default', "$from: a node enrolled before the upgrade still authenticates, in the group default");
	is($node->safe_psql($db, "SELECT status FROM enrollment.enroll('$token', 'n2', 'c')"), 'active',
		"$from: the token enrolls again after the upgrade");
	# 0.7.0: nodes made before have the group 'default' and no address
	$node->safe_psql($db, "SELECT enrollment.set_ip_pool('100.64.0.0/24')");
	is($node->safe_psql($db,
			"SELECT node_group || ' ' || host(private_ip) FROM enrollment.enroll('$token', 'n4', 'c', node_group => 'g')"),
		'g 100.64.0.1', "$from: a new node gets the group named and an address after the upgrade");
	is($node->safe_psql($db,
			"SELECT string_agg(name || ':' || node_group || ':' || coalesce(host(private_ip), '-'), ' ' ORDER BY name) FROM enrollment.nodes"),
		'n1:default:- n2:default:- n3:default:- n4:g:100.64.0.1', "$from: nodes enrolled before keep the group default");
	# retention clocks (0.5.0): tokens made before 0.5.0 keep those 0.4.0
	# purged by; a once token used since then counts from its near expiry
	my $used_clock = (version_before($from, '0.5.0') ? 'last use' : 'expiry');
	is($node->safe_psql($db,
			"SELECT string_agg(status || '=' || CASE WHEN retention_from IS NULL THEN 'none'"
			  . " WHEN retention_from = last_used_at THEN 'last use'"
			  . " WHEN retention_from = expires_at THEN 'expiry' END, ', ' ORDER BY status)"
			  . " FROM enrollment.enrollment_token"),
		"active=expiry, revoked=none, used=$used_clock", "$from: tokens keep their retention clocks");
}

$node->stop;
done_testing();
