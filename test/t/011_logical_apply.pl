# Writes that arrive by logical replication: the apply worker writes with
# session_replication_role = replica, so ordinary triggers do not fire and
# no extension function runs.  A subscriber's backends must still see what
# it applies at their next call:
#   - a node limit or a token rate set on the publisher, which the backend
#     had remembered as absent (limits_cache.c; the limits_changed triggers
#     are ENABLE ALWAYS for this);
#   - a revocation of a token the backend reads at its row's place
#     (probe.c), which no trigger or callback sees.
# The control at the end turns the trigger back into an ordinary one and
# shows that a backend then misses an applied limit, which is what the
# README says disabling it does.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->append_conf('postgresql.conf', "shared_preload_libraries = 'enrollment'");
$pub->start;
my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->append_conf('postgresql.conf', "shared_preload_libraries = 'enrollment'");
$sub->start;
$_->safe_psql('postgres', 'CREATE EXTENSION enrollment CASCADE') for ($pub, $sub);

# Tokens are made on the publisher only: the subscriber enrolls through
# them, and its enrollments stay its own.
my ($rid, $rtok) = split / /, $pub->safe_psql('postgres',
	"SELECT token_id || ' ' || token FROM enrollment.create_token('reusable', 'replicated')");
my ($oid, $otok) = split / /, $pub->safe_psql('postgres',
	"SELECT token_id || ' ' || token FROM enrollment.create_token('once', 'revoked on the publisher')");
$pub->safe_psql('postgres',
	'CREATE PUBLICATION limits FOR TABLE enrollment.tenant_setting, enrollment.token_rate, enrollment.enrollment_token');
my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres', "CREATE SUBSCRIPTION limits CONNECTION '$connstr' PUBLICATION limits");
$sub->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM pg_subscription_rel WHERE srsubstate IN ('r', 's')")
  or die 'the subscription did not synchronize';
$pub->wait_for_catchup('limits');

my $s = $sub->background_psql('postgres');
my $verdict = sub {
	my ($tok) = @_;
	return $s->query_safe("SELECT coalesce(error, 'ok') FROM enrollment.check_token('$tok')");
};

# The backend learns that no tenant has a limit and no token a rate.
is($s->query_safe("SELECT status FROM enrollment.enroll('$rtok', 'n1')"), 'active',
	'subscriber: a replicated token enrolls a node');
is($verdict->($rtok), 'ok', 'subscriber: no limit yet');
is($verdict->($otok), 'ok', 'subscriber: the once token is good');
my $probes = "SELECT pg_stat_get_xact_numscans('enrollment.enrollment_token_public_id_key'::regclass)";
$s->query_safe('BEGIN');
my $before = $s->query_safe($probes);
is($verdict->($otok), 'ok', 'subscriber: the once token read again');
is($s->query_safe($probes) - $before, 0, 'subscriber: that time at its row\'s place, without the index');
$s->query_safe('COMMIT');

# A node limit set on the publisher reaches the backend through the apply
# worker alone.
$pub->safe_psql('postgres', 'SELECT enrollment.set_node_limit(1)');
$pub->wait_for_catchup('limits');
is($verdict->($rtok), 'node_limit_exceeded', 'subscriber: the backend sees an applied node limit');

# So does a rate, once the limit is lifted.
$pub->safe_psql('postgres', 'SELECT enrollment.set_node_limit(NULL)');
$pub->wait_for_catchup('limits');
is($verdict->($rtok), 'ok', 'subscriber: and sees it lifted');
$pub->safe_psql('postgres', "SELECT enrollment.set_token_rate('$rid', 0)");
$pub->wait_for_catchup('limits');
is($verdict->($rtok), 'rate_limited', 'subscriber: the backend sees an applied token rate');
$pub->safe_psql('postgres', "SELECT enrollment.set_token_rate('$rid', NULL)");

# A revocation applied to a row the backend reads by place.
$pub->safe_psql('postgres', "SELECT enrollment.revoke_token('$oid')");
$pub->wait_for_catchup('limits');
is($verdict->($otok), 'token_revoked', 'subscriber: the backend sees an applied revocation');
is($sub->safe_psql('postgres', "SELECT status FROM enrollment.enrollment_token WHERE token_id = '$oid'"),
	'revoked', 'subscriber: the row was applied');

# Control: as an ordinary trigger, limits_changed does not fire in the apply
# worker, and a backend that remembers "no limit" misses the applied one.
$sub->safe_psql('postgres', 'ALTER TABLE enrollment.tenant_setting ENABLE TRIGGER limits_changed');
is($verdict->($rtok), 'ok', 'control: the backend looks again after the ALTER and finds no limit');
$pub->safe_psql('postgres', 'SELECT enrollment.set_node_limit(1)');
$pub->wait_for_catchup('limits');
is($sub->safe_psql('postgres', "SELECT coalesce(error, 'ok') FROM enrollment.check_token('$rtok')"),
	'node_limit_exceeded', 'control: the limit arrived (a new session sees it)');
is($verdict->($rtok), 'ok', 'control: without ENABLE ALWAYS the old backend misses it');
$sub->safe_psql('postgres', 'ALTER TABLE enrollment.tenant_setting ENABLE ALWAYS TRIGGER limits_changed');
is($verdict->($rtok), 'node_limit_exceeded', 'and with the trigger restored (its ALTER invalidates) it sees it');

$s->quit;
$sub->safe_psql('postgres', 'DROP SUBSCRIPTION limits');
done_testing();
