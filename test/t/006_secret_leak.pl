# Secrets never leak: with every statement logged at debug1 and every plan
# logged by auto_explain, a client that sends credentials as bind parameters
# (log_parameter_max_length = 0) leaves no plaintext token, node credential,
# HMAC secret or API token in the server log, in a data-only pg_dump, or in
# the WAL, even when calls fail.
# Each search has a positive control (a marker that must be found) so that
# a broken search cannot pass.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('leak');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'enrollment'
log_statement = 'all'
log_min_messages = debug1
log_min_error_statement = error
log_parameter_max_length = 0
log_parameter_max_length_on_error = 0
session_preload_libraries = 'auto_explain'
});
$node->start;
my $marker = 'leak-test-marker-7c1f';
$node->safe_psql('postgres', 'CREATE EXTENSION enrollment CASCADE');
# every plan from here on (the install script's would only fill the log)
$node->append_conf('postgresql.conf', "auto_explain.log_min_duration = 0\n");
$node->reload;
$node->safe_psql('postgres', "SELECT enrollment.add_member('ops', 'operator')");

# credentials come back as query results, which are never logged
my $once = $node->safe_psql('postgres', "SELECT token FROM enrollment.create_token('once', '$marker')");
my $cluster = $node->safe_psql('postgres',
	"SELECT token FROM enrollment.create_token('cluster', 'c', cluster_id => 'k8s', max_uses => 2)");
my ($kid, $hmac) = split / /, $node->safe_psql('postgres',
	"SELECT key_id || ' ' || hmac_secret FROM enrollment.create_api_key('$marker', ARRAY['events:read'])");
my $api = (split /\n/, $node->safe_psql('postgres',
	"SELECT set_config('enrollment.actor', 'ops', false); SELECT token FROM enrollment.create_api_token('$marker')"))[-1];

# every function called with the secrets as bind parameters, some failing
sub bench
{
	my ($sql, %vars) = @_;
	my $script = $node->basedir . '/call.sql';
	open(my $fh, '>', $script) or die;
	print $fh "$sql\n";
	close $fh;
	my @cmd = ('pgbench', '-n', '-t', '1', '-M', 'extended', '-f', $script,
		map { ('-D', "$_=$vars{$_}") } sort keys %vars);
	return run_log([ @cmd, $node->connstr('postgres') ]);
}
my $secret_out = $node->basedir . '/node_secret';
ok(bench("SELECT ok FROM enrollment.check_token(:tok)", tok => $once), 'check_token');
ok(bench("SELECT node_secret FROM enrollment.enroll(:tok, 'leak-node') \\gset\n\\shell echo :node_secret > $secret_out", tok => $once),
	'enroll');
my $node_secret = slurp_file($secret_out);
chomp $node_secret;
like($node_secret, qr/^node_[0-9a-f]{16}\./, 'the node credential came back to the client');
ok(!bench("SELECT enrollment.enroll(:tok, 'again')", tok => $once), 'a second enroll fails (token_exhausted)');
ok(!bench("SELECT enrollment.enroll(:tok, 'x', 'wrong-cluster')", tok => $cluster), 'cluster_mismatch fails');
ok(bench("SELECT enrollment.enroll(:tok, 'c1', 'k8s')", tok => $cluster), 'cluster enroll');
ok(bench("SELECT name FROM enrollment.authenticate_node(:s)", s => $node_secret), 'authenticate_node');
my $renewed_out = $node->basedir . '/renewed';
ok(bench("SELECT token FROM enrollment.renew_token((SELECT token_id FROM enrollment.check_token(:tok, 'k8s'))) \\gset\n\\shell echo :token > $renewed_out",
		tok => $cluster), 'renew_token');
my $renewed = slurp_file($renewed_out);
chomp $renewed;
like($renewed, qr/^enr_[0-9a-f]{16}\./, 'the successor token came back to the client');
ok(bench("SELECT ok FROM enrollment.check_token(:tok, 'k8s')", tok => $renewed), 'check_token of the successor');
ok(bench("SELECT ok FROM enrollment.verify_request('GET', '/x', enrollment.sign_request('GET', '/x', :kid, :sec))",
		kid => $kid, sec => $hmac), 'sign_request and verify_request');
ok(bench("SELECT ok FROM enrollment.verify_request('GET', '/x', :kid, '1', 'n', 'sha256=' || repeat('0', 64))",
		kid => $kid), 'a rejected verify_request');
ok(!bench("SELECT enrollment.sign_request('GET', '/x', :kid, :sec || 'zz')", kid => $kid, sec => $hmac),
	'sign_request with a malformed secret fails');
ok(bench("SELECT ok FROM enrollment.verify_api_token(:t, :perm)", t => $api, perm => 'tokens:write'), 'verify_api_token');
ok(!bench("SELECT enrollment.enroll(:tok, E'bad\\nname')", tok => $cluster), 'a bad node name fails');
$node->safe_psql('postgres', 'SELECT enrollment.rotate_server_key()');
$node->safe_psql('postgres', 'SELECT enrollment.seal_audit()');
$node->safe_psql('postgres', 'CHECKPOINT');

my %secret = (
	'once token' => (split /\./, $once)[1],
	'cluster token' => (split /\./, $cluster)[1],
	'renewed token' => (split /\./, $renewed)[1],
	'node credential' => (split /\./, $node_secret)[1],
	'API token' => (split /\./, $api)[1],
	'HMAC secret (hex)' => $hmac,
	'HMAC secret (bytes)' => pack('H*', $hmac));

my $log = slurp_file($node->logfile);
my $dump_file = $node->basedir . '/data.sql';
$node->command_ok([ 'pg_dump', '--data-only', '-f', $dump_file, $node->connstr('postgres') ], 'pg_dump --data-only');
my $dump = slurp_file($dump_file);
my $wal = '';
for my $seg (glob($node->data_dir . '/pg_wal/0*'))
{
	open(my $fh, '<:raw', $seg) or die "$seg: $!";
	local $/;
	$wal .= <$fh>;
}
my ($stdout, $stderr);
IPC::Run::run([ 'pg_waldump', '-p', $node->data_dir . '/pg_wal', '--rmgr=Heap',
		(sort map { m{([^/]+)$} } glob($node->data_dir . '/pg_wal/0*'))[0] ],
	'>', \$stdout, '2>', \$stderr);
my $waldump = $stdout // '';

# positive controls: the searches do find what is there
ok(index($log, $marker) >= 0, 'control: the log holds the statements (marker found)');
ok(index($log, 'execute') >= 0 && index($log, 'enrollment.enroll(') >= 0,
	'control: the parameterized calls are in the log');
like($log, qr/Custom Scan \(EnrollmentCall\)[^\n]*\n\s+Function: check_token\n/,
	'control: auto_explain logged the plans, the verdict calls\' custom scan among them');
ok(index($dump, $marker) >= 0, 'control: the dump holds the rows (marker found)');
ok(index($wal, $marker) >= 0, 'control: the WAL holds the rows (marker found in the raw segments)');
ok(length($waldump) > 0, 'control: pg_waldump decodes the WAL');

for my $what (sort keys %secret)
{
	my $s = $secret{$what};
	ok(length($s) >= 32, "$what: a secret to look for");
	ok(index($log, $s) < 0, "$what: not in the server log");
	ok(index($dump, $s) < 0, "$what: not in the data-only dump");
	ok(index($wal, $s) < 0, "$what: not in the WAL");
	ok(index($waldump, $s) < 0, "$what: not in pg_waldump's output");
}
unlike($log, qr/parameters: \$1 = /, 'no bind parameter value was logged');

# control of the setting itself: with log_parameter_max_length = -1 the
# same kind of call leaves its bound token in the log, and the search
# above would have found it
my $offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "log_parameter_max_length = -1\n");
$node->reload;
ok(bench("SELECT ok FROM enrollment.check_token(:tok)", tok => $once), 'check_token, parameters logged in full');
my $logged = substr(slurp_file($node->logfile), $offset);
like($logged, qr/parameters: \$1 = /, 'control: with log_parameter_max_length = -1 the bind parameters are logged');
ok(index($logged, $secret{'once token'}) >= 0, 'control: and with them the token, which the search finds');

# the same for the plans: under VERBOSE, auto_explain logs the call with the
# value its plan was made for, which the search finds; without it (above),
# the scan shows the function's name only
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "log_parameter_max_length = 0\nauto_explain.log_verbose = on\n");
$node->reload;
ok(bench("SELECT ok FROM enrollment.check_token(:tok)", tok => $once), 'check_token, plans logged VERBOSE');
$logged = substr(slurp_file($node->logfile), $offset);
like($logged, qr/Function Call: enrollment\.check_token\('/, 'control: a VERBOSE plan shows the call with its value');
ok(index($logged, $secret{'once token'}) >= 0, 'control: and with it the token, which the search finds');

$node->stop;
done_testing();
