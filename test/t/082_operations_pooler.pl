# Behind a connection pooler: FlowAgent sits behind PgBouncer in transaction
# mode, where one server session serves many clients in turn. The acting
# user counts only in the transaction that set it, so a client can never act
# for the user of the client before it, even when that client left a
# session-level SET behind on the shared server session. The README's
# FlowAgent pattern works through the pooler: set_config(..., true), the API
# calls, and the wake at commit that pushes a change at once.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pgbouncer = (grep { -x $_ } '/usr/sbin/pgbouncer', map { "$_/pgbouncer" } split /:/, $ENV{PATH})[0]
  or die 'pgbouncer is not installed (Debian package pgbouncer; test/check installs it)';

my $json = JSON::PP->new->canonical;
# A long poll interval: only the wake at commit can push promptly.
my $t = M365Test->new(name => 'pooler', conf => "m365sync.sync_interval = '1h'\n");
my $node = $t->node;
$t->setup_app;
my @d = gmtime(time + 86400);
my $day = sprintf('%04d-%02d-%02d', $d[5] + 1900, $d[4] + 1, $d[3]);
my %sim_user;
for my $u ([ 'flow-ada', 'ada@contoso.example', 'Ada board meeting' ],
	[ 'flow-grace', 'grace@contoso.example', 'Grace design review' ])
{
	my ($fa, $upn, $subject) = @$u;
	$sim_user{$fa} = $t->add_sim_user('contoso.example', $upn);
	$t->sim('POST', "/_sim/users/$sim_user{$fa}{id}/events", { subject => $subject,
		start => { dateTime => "${day}T10:00:00", timeZone => 'UTC' },
		end => { dateTime => "${day}T11:00:00", timeZone => 'UTC' } });
	$t->connect_user($fa, $upn);
}
ok($node->poll_query_until('postgres', 'SELECT count(*) = 2 FROM m365sync.events'),
	"both users' first rounds brought their Outlook event");

# ------------------------------------------------------------------ PgBouncer
my $dir = PostgreSQL::Test::Utils::tempdir;
my $port = PostgreSQL::Test::Cluster::get_free_port();
open my $fh, '>', "$dir/userlist.txt" or die $!;
print $fh qq{"flowagent" ""\n};
close $fh;
open $fh, '>', "$dir/pgbouncer.ini" or die $!;
my $host = $node->host;
my $pgport = $node->port;
print $fh <<"INI";
[databases]
postgres = host=$host port=$pgport dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 1
max_db_connections = 1
max_client_conn = 20
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
close $fh;
my ($bout, $berr) = ('', '');
my $bouncer = IPC::Run::start([ $pgbouncer, "$dir/pgbouncer.ini" ], '>', \$bout, '2>', \$berr);
my $via_pooler = "host=127.0.0.1 port=$port dbname=postgres user=flowagent";
my $up = 0;
for (1 .. 100)
{
	my ($o, $e) = ('', '');
	IPC::Run::run([ $node->installed_command('psql'), '-XAtq', '-d', $via_pooler, '-c', 'SELECT 1' ],
		'>', \$o, '2>', \$e);
	last if ($up = $o =~ /^1$/m);
	select(undef, undef, undef, 0.1);
}
ok($up, 'PgBouncer answers in transaction mode with one server connection')
  or diag("pgbouncer: $berr " . (slurp_file("$dir/pgbouncer.log") // ''));

# Two FlowAgent clients, each with its own connection to the pooler.
sub client
{
	my $c = $node->background_psql('postgres', on_error_stop => 0,
		extra_params => [ '-d', $via_pooler, '-v', 'VERBOSITY=verbose' ]);
	return $c;
}
my $client_a = client();
my $client_b = client();
# Run SQL as a client: (stdout, SQLSTATE or '').
sub run
{
	my ($c, $sql) = @_;
	$c->{stderr} = '';    # BackgroundPsql keeps stderr across queries
	my $out = $c->query($sql);
	my $state = $c->{stderr} =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '';
	return ($out, $state);
}
my $window = "m365sync.events(now(), now() + interval '3 days')";

# ------------------------------------------------------------------ the two clients alternate
my ($pid_a) = run($client_a, 'SELECT pg_backend_pid()');
my ($pid_b) = run($client_b, 'SELECT pg_backend_pid()');
is($pid_b, $pid_a, 'both clients are served by the same server session');

my ($out, $st) = run($client_a, "BEGIN; SELECT set_config('m365sync.flowagent_user', 'flow-ada', true) \\g /dev/null\n"
	  . "SELECT string_agg(subject, ',') FROM $window; COMMIT;");
is("$st|$out", '|Ada board meeting', "A in its transaction reads ada's events");

# A leaves a session-level SET behind on the shared server session.
($out, $st) = run($client_a, "SET m365sync.flowagent_user = 'flow-ada'");
is($st, '', 'A sets the user at session level (the mistake a pooler punishes)');
($out, $st) = run($client_b, "SELECT current_setting('m365sync.flowagent_user')");
is($out, 'flow-ada', "B's server session still holds A's session-level value");

($out, $st) = run($client_b, "SELECT string_agg(subject, ',') FROM $window");
is($st, '28000', "B's transaction without its own user: 28000");
unlike($out, qr/Ada/, "... and none of ada's data");
like($client_b->{stderr}, qr/was not set in this transaction/, '... saying the value is from an earlier transaction');
($out, $st) = run($client_b, "BEGIN; SELECT count(*) FROM m365sync.calendars(); COMMIT;");
is($st, '28000', 'B in an explicit transaction without setting it: 28000');
($out, $st) = run($client_b, "SELECT m365sync.upsert_event('{\"subject\": \"B writes as ada?\"}'::jsonb)");
is($st, '28000', "B cannot write as ada either");
($out, $st) = run($client_b, "SET LOCAL m365sync.flowagent_user = 'flow-grace'");
($out, $st) = run($client_b, "SELECT string_agg(subject, ',') FROM $window");
is($st, '28000', 'B with SET LOCAL in autocommit (a no-op): 28000, not the older value');

($out, $st) = run($client_b, "BEGIN; SELECT set_config('m365sync.flowagent_user', 'flow-grace', true) \\g /dev/null\n"
	  . "SELECT string_agg(subject, ',') FROM $window; COMMIT;");
is("$st|$out", '|Grace design review', "B with its own set_config sees only grace's events");
($out, $st) = run($client_a, "SELECT string_agg(subject, ',') FROM $window");
is($st, '28000', 'and A, back on the session after B, must set its user again');
($out, $st) = run($client_a, "BEGIN; SET LOCAL m365sync.flowagent_user = 'flow-ada';\n"
	  . "SELECT string_agg(subject, ',') FROM $window; COMMIT;");
is("$st|$out", '|Ada board meeting', 'A with SET LOCAL in its transaction reads ada again');
run($client_a, 'RESET m365sync.flowagent_user');

# ------------------------------------------------------------------ the README's FlowAgent pattern
# One transaction per request: set_config(..., true), the API calls, commit.
# The commit wakes the worker, which pushes at once: the poll interval is an
# hour, so an upsert that reaches Outlook within the wait was pushed by the
# wake, not by a timer.
my $new = $json->encode({ subject => 'Lunch via the pooler',
	start => { dateTime => "${day}T12:00:00", timeZone => 'UTC' },
	end => { dateTime => "${day}T13:00:00", timeZone => 'UTC' } });
$new =~ s/'/''/g;
($out, $st) = run($client_a, "BEGIN; SELECT set_config('m365sync.flowagent_user', 'flow-ada', true) \\g /dev/null\n"
	  . "SELECT count(*) FROM m365sync.calendars() \\g /dev/null\n"
	  . "SELECT m365sync.upsert_event('$new'::jsonb); COMMIT;");
is($st, '', 'upsert_event through the pooler');
my $id = $out;
like($id, qr/^\d+$/, '... returns the new event id');
my $pushed = 0;
for (1 .. 600)
{
	last if ($pushed = grep { $_->{subject} eq 'Lunch via the pooler' }
		  @{ $t->sim('GET', "/_sim/users/$sim_user{'flow-ada'}{id}/truth")->{events} });
	select(undef, undef, undef, 0.1);
}
ok($pushed, 'the wake at commit pushed the event to Outlook without waiting for the poll interval');
ok($node->poll_query_until('postgres', "SELECT sync_state = 'synced' FROM m365sync.events WHERE event_id = $id"),
	'... and the event is synced');
($out, $st) = run($client_b, "BEGIN; SELECT set_config('m365sync.flowagent_user', 'flow-grace', true) \\g /dev/null\n"
	  . "SELECT count(*) FROM m365sync.events(now(), now() + interval '3 days') WHERE subject LIKE 'Lunch%'; COMMIT;");
is("$st|$out", '|0', "grace, on the same server session right after, does not see ada's new event");
($out, $st) = run($client_a, "BEGIN; SELECT set_config('m365sync.flowagent_user', 'flow-ada', true) \\g /dev/null\n"
	  . "SELECT subject || '|' || sync_state FROM m365sync.event($id); COMMIT;");
is("$st|$out", '|Lunch via the pooler|synced', 'ada reads it back through the pooler, synced');

$client_a->quit;
$client_b->quit;
$bouncer->kill_kill;
done_testing();
