# A process forked inside a backend (here by untrusted PL/Perl code) must not
# hand out the random bytes its parent has buffered but not used yet: the
# CSPRNG buffer of src/crypto.c is emptied in the child by a fork handler.
# Without it, the child's next UUID would repeat the parent's next one bit
# for bit, and so would the secrets of credentials made in either process.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('fork');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'enrollment'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION enrollment CASCADE');
$node->safe_psql('postgres', 'CREATE EXTENSION plperlu');

# Fill this backend's buffer with one draw, fork, and let the child draw
# next through a plan prepared in the parent (no parsing, no catalog reads,
# no locks in the child); the parent then draws too.  The child leaves with
# _exit, so none of the parent's exit handlers run in it.  Returns the
# parent's and the child's UUID.
$node->safe_psql('postgres', q{
CREATE FUNCTION fork_draws(OUT parent text, OUT child text) LANGUAGE plperlu AS $$
	use POSIX ();
	my $plan = spi_prepare('SELECT enrollment.uuid_v7()::text AS u');
	spi_exec_prepared($plan);
	pipe(my $r, my $w) or die "pipe: $!";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		close $r;
		my $u = eval { spi_exec_prepared($plan)->{rows}[0]{u} };
		print $w (defined $u ? $u : 'failed');
		close $w;
		POSIX::_exit(0);
	}
	close $w;
	my $child = do { local $/; <$r> };
	waitpid($pid, 0);
	my $parent = spi_exec_prepared($plan)->{rows}[0]{u};
	return { parent => $parent, child => $child };
$$;
});

my $uuid7 = qr/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
for my $round (1 .. 3)
{
	my ($parent, $child) = split /\|/, $node->safe_psql('postgres', 'SELECT parent, child FROM fork_draws()');
	like($child, $uuid7, "round $round: the forked child drew a UUID");
	like($parent, $uuid7, "round $round: the parent drew a UUID after the fork");
	# the 74 random bits follow the 48-bit timestamp and the version digit
	isnt(substr($child, 15), substr($parent, 15),
		"round $round: the child's random bits are not the parent's next ones");
}

# the backend that forked goes on working, and its draws stay distinct
is($node->safe_psql('postgres',
		'SELECT count(DISTINCT u) FROM (SELECT enrollment.uuid_v7() AS u FROM generate_series(1, 1000)) s'),
	'1000', 'the parent backend still draws distinct UUIDs');

$node->stop;
done_testing();
