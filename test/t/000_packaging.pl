# Packaging consistency: the version lives in enrollment.control; META.json
# and the built install script must agree with it, and every SQL script
# starts with the guard against running it through psql.
use strict;
use warnings;
use Test::More;

sub slurp { my ($f) = @_; open(my $fh, '<', $f) or die "$f: $!"; local $/; return <$fh>; }

my $control = slurp('enrollment.control');
my ($version) = $control =~ /^default_version\s*=\s*'([^']+)'/m;
ok(defined $version, "control file has default_version ($version)");
like($control, qr/^schema\s*=\s*enrollment$/m, 'fixed schema enrollment');
like($control, qr/^relocatable\s*=\s*false$/m, 'not relocatable');
like($control, qr/^requires\s*=\s*'pgcrypto'$/m, 'requires pgcrypto');

my $meta = slurp('META.json');
my @versions = $meta =~ /"version"\s*:\s*"([^"]+)"/g;
# the meta-spec version is 1.0.0; every other version is the extension's
my @ours = grep { $_ ne '1.0.0' || $version eq '1.0.0' } @versions;
ok(scalar(@ours) >= 2, 'META.json names the release and the provided extension');
is($_, $version, "META.json version $_ matches the control file") for @ours;
like($meta, qr/"meta-spec"\s*:\s*\{\s*"version"\s*:\s*"1\.0\.0"/, 'PGXN meta spec 1.0.0');

for my $script (glob('sql/enrollment.sql sql/enrollment--*.sql'))
{
	next if $script eq "sql/enrollment--$version.sql";	# built from sql/enrollment.sql
	my $guard = $script =~ /--.*--/ ? 'ALTER EXTENSION enrollment UPDATE' : 'CREATE EXTENSION enrollment';
	like(slurp($script), qr/^\\echo Use "\Q$guard\E/m, "$script has the psql guard");
}

# every earlier release kept in sql/ has an upgrade path to this version
for my $old (glob('sql/enrollment--*.sql'))
{
	my ($from) = $old =~ m{^sql/enrollment--([^-]+)\.sql$} or next;
	next if $from eq $version;
	my %next;
	for (glob('sql/enrollment--*--*.sql'))
	{
		my ($a, $b) = m{^sql/enrollment--([^-]+)--([^-]+)\.sql$} or next;
		$next{$a} = $b;
	}
	my $v = $from;
	$v = $next{$v} while defined $next{$v} && $v ne $version;
	is($v, $version, "release $from upgrades to $version");
}
done_testing();
