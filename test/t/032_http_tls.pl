# The HTTP layer: TLS verification always on (certificate not signed by
# ca_file, or for another host → clear error, nothing sent), ca_file added to
# the system store (through a bundle file named by its hash, a changed
# ca_file picked up by a running backend, a read-only directory falling back
# to memory), https only, http_timeout, cancellation, and no memory growth
# across many failed requests in one backend.
use strict;
use warnings;
use IPC::Run;
use Digest::SHA qw(sha256_hex);
use JSON::PP;
use M365Test;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $t = M365Test->new(name => 'http');
my $node = $t->node;
$t->setup_app;
$t->add_sim_user('contoso.example', 'room1@contoso.example');
$t->admin_consent('contoso.example');

my $add = "SELECT m365sync.add_mailbox('room-user', 'contoso.example', 'room1\@contoso.example')";

sub log_count
{
	my ($base) = @_;
	my $out = `curl -sk '$base/_sim/log'`;
	return scalar @{ decode_json($out)->{value} };
}

# A simulator whose certificate names another host, and a self-signed one.
my $wronghost = $t->start_sim(cert => 'wronghost');
my $selfsigned = $t->start_sim(cert => 'selfsigned');

my ($out, $st, $msg, $err) = $t->sql("SET m365sync.login_url = '$wronghost'; $add");
is($st, '08006', 'certificate for another host name: connection failure');
like($msg, qr{request to 127\.0\.0\.1/contoso\.example/oauth2/v2\.0/token failed: the TLS handshake failed}, '... naming the endpoint and TLS');
like($err, qr/HINT:.*ca_file/, '... with a hint about the CA');
is(log_count($wronghost), 0, '... and nothing reached the server');

($out, $st, $msg) = $t->sql("SET m365sync.login_url = '$selfsigned'; $add");
is($st, '08006', 'certificate not signed by ca_file: connection failure');
like($msg, qr/TLS handshake failed/, '... a TLS error');
is(log_count($selfsigned), 0, '... and nothing reached the server');

($out, $st, $msg) = $t->sql("SET m365sync.ca_file = ''; $add");
is($st, '08006', 'without ca_file the test CA is not trusted (system store only)');

($out, $st, $msg) = $t->sql("SET m365sync.ca_file = '/nonexistent/ca.crt'; $add");
is($st, 'F0000', 'unreadable ca_file: configuration error');
like($msg, qr/m365sync\.ca_file/, '... naming the setting');

($out, $st, $msg) = $t->sql("SET m365sync.login_url = 'http://127.0.0.1:1'; $add");
is($st, '08006', 'plain http is never used');
like($msg, qr/not an https URL/, '... says so');

($out, $st) = $t->sql($add);
is($st, '', 'with ca_file the simulator is trusted (added to the system store)');

# The bundle (system store + ca_file) is a file in the data directory named
# by its hash, written once; a running backend picks up a changed ca_file,
# and trusts only what the file holds now.
my @bundles = glob($node->data_dir . '/pg_m365sync/ca-*.pem');
is(scalar @bundles, 1, 'the CA bundle is written to one file in the data directory');
my $bundle = @bundles ? slurp_file($bundles[0]) : '';
my ($hash) = ($bundles[0] // '') =~ m{/ca-([0-9a-f]{64})\.pem$};
is($hash, sha256_hex($bundle), '... named by the SHA-256 of what it holds');
is(sprintf('%o', (stat $bundles[0])[2] & 07777), '600', '... mode 0600');
ok(index($bundle, slurp_file($t->ca_file)) >= 0, '... which holds ca_file');

my $ca_copy = $t->certs . '/ca-changing.crt';
my $mtime = time;
sub put_ca
{
	my (@from) = @_;
	open my $fh, '>', $ca_copy or die "$ca_copy: $!";
	print $fh join('', map { slurp_file($_) } @from);
	close $fh;
	$mtime += 10;    # mtime in whole seconds: make the change visible
	utime $mtime, $mtime, $ca_copy;
}
my $bg = $node->background_psql('postgres', on_error_stop => 0);
my $try = sub {
	my ($n) = @_;
	$t->add_sim_user('contoso.example', "room$n\@contoso.example");
	$bg->{stderr} = '';
	$bg->query("SELECT m365sync.add_mailbox('ca-user-$n', 'contoso.example', 'room$n\@contoso.example')");
	return $bg->{stderr};
};
put_ca($t->ca_file);
$bg->query_safe("SET m365sync.ca_file = '$ca_copy'");
is($try->(2), '', 'one session: trusted with ca_file');
put_ca($t->certs . '/other-ca.crt');
like($try->(3), qr/TLS handshake failed/, 'ca_file changed to an unrelated CA: the same session no longer trusts the simulator');
put_ca($t->ca_file);
is($try->(4), '', 'ca_file changed back: trusted again');

# A data directory where the bundle cannot be written (the server never runs
# as root): curl gets it in memory.
chmod 0500, $node->data_dir . '/pg_m365sync';
put_ca($t->certs . '/other-ca.crt', $t->ca_file);
is($try->(5), '', 'bundle directory read-only: still trusted (bundle in memory)');
like(slurp_file($node->logfile), qr/could not write its CA bundle/, '... and the log says so');
chmod 0700, $node->data_dir . '/pg_m365sync';
$bg->quit;

# Timeout and cancel.
$t->sim('POST', '/_sim/faults', { kind => 'slow', delay_ms => 4000, route => 'oauth2/v2.0/token', count => 1 });
my $t0 = time;
($out, $st, $msg) = $t->sql("SET m365sync.http_timeout = '500ms'; $add");
my $took = time - $t0;
is($st, '08006', 'a slow server: error after m365sync.http_timeout');
like($msg, qr/timed out/, '... says it timed out');
ok($took < 3, "... within the timeout, not the server's delay (${took}s)");

$t->sim('POST', '/_sim/faults', { kind => 'slow', delay_ms => 4000, route => 'oauth2/v2.0/token', count => 1 });
$t0 = time;
($out, $st, $msg) = $t->sql("SET statement_timeout = '300ms'; $add");
$took = time - $t0;
is($st, '57014', 'statement_timeout cancels a request in flight');
ok($took < 3, "... promptly (${took}s)");
$t->sim('DELETE', '/_sim/faults');

# No leak: many failed requests in one backend, resident memory flat.
my $closed = do { require IO::Socket::INET; my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0); my $p = $s->sockport; close $s; $p };
my $loop = sub {
	my ($n, $url) = @_;
	return "SET m365sync.login_url = '$url';
	DO \$\$ BEGIN FOR i IN 1..$n LOOP
	  BEGIN PERFORM m365sync.add_mailbox('leak', 'contoso.example', 'room1\@contoso.example');
	  EXCEPTION WHEN others THEN NULL; END;
	END LOOP; END \$\$;
	SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmRSS:\\s+(\\d+)'))[1];";
};
my $n = $ENV{M365_LEAK_N} // 10000;
my $script = $loop->(500, "https://127.0.0.1:$closed") . "\n" . $loop->(200, $wronghost) . "\n"
  . $loop->($n, "https://127.0.0.1:$closed") . "\n" . $loop->(1000, $wronghost) . "\n";
$t0 = time;
my $rss = $node->safe_psql('postgres', $script);
my @rss = grep { /^\d+$/ } split /\n/, $rss;
my $grow = $rss[3] - $rss[1];
note sprintf("RSS after warm-up %d kB, after %d refused + 1000 TLS failures %d kB (%.1fs)", $rss[1], $n, $rss[3], time - $t0);
cmp_ok($grow, '<', 2048, "no leak: RSS grew ${grow} kB over $n refused connections and 1000 failed TLS handshakes");

done_testing();
