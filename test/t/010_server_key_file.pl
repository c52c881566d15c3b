# The server key file's parser: what it accepts and what it refuses, with
# the line it names.  The file is replaced (a new inode) before each case, so
# the next call that needs the key reads it again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('key_file');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'enrollment'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION enrollment CASCADE');
$node->safe_psql('postgres', "SELECT enrollment.create_api_key('first', ARRAY['events:read'])");

my $path = $node->data_dir . '/enrollment_server.key';
my $original = slurp_file($path);
like($original, qr/^1 [0-9a-f]{64}\n\z/, 'the first use wrote version 1 and 64 hex digits');

sub put_key_file
{
	my ($content, $mode) = @_;
	open(my $fh, '>', "$path.new") or die $!;
	print $fh $content;
	close $fh;
	chmod($mode // 0600, "$path.new");
	rename("$path.new", $path) or die $!;
}

# the outcome of sealing a new secret: ok, or the error message
sub seal
{
	my ($rc, $out, $err) = $node->psql('postgres',
		"SELECT count(*) FROM enrollment.create_api_key('k', ARRAY['events:read'])");
	return $rc == 0 ? 'ok' : ($err =~ /ERROR:\s+(.*)/)[0];
}

my $hex = 'ab' x 32;
my $hex2 = 'cd' x 32;
my @cases = (
	[ "1 $hex\n",                          'ok',                        'one key' ],
	[ "# made by hand\n\n1 $hex\n2\t$hex2  \n", 'ok',                   'a comment, a blank line, a tab, trailing blanks' ],
	[ '# ' . ('c' x 400) . "\n1 $hex\n",   'ok',                        'a comment longer than a read' ],
	[ "1 $hex",                            'ok',                        'no newline at the end' ],
	[ "1 $hex trailing\n",                 qr/malformed at line 1/,     'something after the key' ],
	[ "1 $hex\n1 $hex2\n",                 qr/gives version 1 twice \(line 2\)/, 'a version given twice' ],
	[ "# c\n0 $hex\n",                     qr/malformed at line 2/,     'version 0' ],
	[ "1234567890 $hex\n",                 qr/malformed at line 1/,     'a version of ten digits' ],
	[ "-1 $hex\n",                         qr/malformed at line 1/,     'a negative version' ],
	[ '1 ' . substr($hex, 1) . "\n",       qr/malformed at line 1/,     '63 hex digits' ],
	[ "1 $hex$hex2\n",                     qr/malformed at line 1/,     '128 hex digits' ],
	[ "1 " . ('g' x 64) . "\n",            qr/malformed at line 1/,     'not hex' ],
	[ "1 $hex" . (' ' x 300) . "x\n",      qr/malformed at line 1/,     'a line longer than a read' ],
	[ "1$hex\n",                           qr/malformed at line 1/,     'no blank between version and key' ],
	[ "# only a comment\n",                qr/holds no key/,            'no key at all' ],);
foreach my $c (@cases)
{
	my ($content, $want, $what) = @$c;
	put_key_file($content);
	my $got = seal();
	if (ref $want)
	{
		like($got, $want, "refused: $what");
	}
	else
	{
		is($got, $want, "accepted: $what");
	}
}
put_key_file("1 $hex\n", 0640);
like(seal(), qr/has group or world access/, 'refused: a file the group may read');

put_key_file($original);
is(seal(), 'ok', 'the original file serves again');

$node->stop;
done_testing();
