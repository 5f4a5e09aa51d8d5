# The sync worker's life around a DBA's own commands: DROP / CREATE / ALTER
# EXTENSION with rounds in flight, DROP DATABASE and RENAME of the served
# database without FORCE, start-up faults that are waited out calmly (one
# log line each, then syncing once fixed, without a restart), and a
# streaming standby that stays idle until it is promoted.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use File::Copy qw(copy);
use IPC::Run;
use M365Test;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $t = M365Test->new(name => 'lifecycle', db => 'flowagent',
	init => { allows_streaming => 1 },
	conf => "m365sync.sync_interval = '2s'\n");
my $node = $t->node;
my $db = $t->db;
$t->setup_app;

my @d = map { my @t = gmtime(time + 86400 * $_); sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]) } 1 .. 3;
my $n_events = 0;

# A user in the simulator with one event; returns the simulator's user.
sub sim_user_with_event
{
	my ($upn) = @_;
	my $u = $t->add_sim_user('contoso.example', $upn);
	add_outlook_event($u, 'Planning');
	return $u;
}

sub add_outlook_event
{
	my ($u, $subject) = @_;
	$n_events++;
	$t->sim('POST', "/_sim/users/$u->{id}/events", { subject => "$subject $n_events",
		start => { dateTime => "$d[0]T09:00:00", timeZone => 'UTC' },
		end => { dateTime => "$d[0]T10:00:00", timeZone => 'UTC' } });
}

sub events_of
{
	my ($n, $account) = @_;
	return $n->safe_psql($db, "SELECT count(*) FROM m365sync.events WHERE account_id = $account");
}

sub worker_pid
{
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity WHERE backend_type = 'm365sync worker'");
}

sub log_since
{
	my ($n, $offset) = @_;
	return slurp_file($n->logfile, $offset);
}

sub count_of
{
	my ($text, $re) = @_;
	my $c = () = $text =~ /$re/g;
	return $c;
}

# ---- DROP / CREATE / ALTER EXTENSION with the worker racing ----

# The shipped 0.1.0 script, so that some cycles can ALTER EXTENSION UPDATE.
$t->stage_old_version('0.1.0');
my $extdir = $node->config_data('--sharedir') . '/extension';
my $can_update = -f "$extdir/m365sync--0.1.0.sql";

my $u0 = sim_user_with_event('first@contoso.example');
my $a0 = $t->connect_user('flow-first', 'first@contoso.example');
ok($node->poll_query_until($db, "SELECT count(*) = 1 FROM m365sync.events WHERE account_id = $a0"),
	'the worker syncs a connected account');
my $pid = worker_pid();
like($pid, qr/^\d+$/, 'one sync worker runs');

my $offset = -s $node->logfile;
my @errors;
my $updates = 0;

# One step in its own session; a failure is kept for the report.
sub step
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql, timeout => 120);
	push @errors, "$sql: $err" if $ret != 0 || $err =~ /ERROR|deadlock/;
}

$node->safe_psql($db, 'DROP EXTENSION m365sync');
for my $i (1 .. 20)
{
	my $old = $can_update && $i % 4 == 0;
	step($old ? "CREATE EXTENSION m365sync VERSION '0.1.0'" : 'CREATE EXTENSION m365sync');
	step("SELECT m365sync.configure('$t->{client_id}', '$t->{client_secret}', '$t->{redirect_uri}')");
	sim_user_with_event("cycle$i\@contoso.example");
	eval { $t->connect_user("flow-cycle$i", "cycle$i\@contoso.example"); 1 }
	  or push @errors, "connect in cycle $i: $@";
	# let the worker's round get somewhere different each time
	select(undef, undef, undef, rand(1.5));
	if ($old)
	{
		step('ALTER EXTENSION m365sync UPDATE');
		$updates++;
		select(undef, undef, undef, rand(0.5));
	}
	if ($i % 3 == 0)
	{
		# the issue's sequence, statement by statement in one session
		step("DROP EXTENSION m365sync;\nCREATE EXTENSION m365sync;\nDROP EXTENSION m365sync;");
	}
	else
	{
		step('DROP EXTENSION m365sync');
	}
}
is(scalar(@errors), 0, "20 CREATE/DROP cycles ($updates with ALTER EXTENSION UPDATE) with the worker racing: no error")
  or diag(join("\n", @errors));
my $cycles_log = log_since($node, $offset);
is(count_of($cycles_log, qr/deadlock/), 0, 'no deadlock in the server log');
is(count_of($cycles_log, qr/\bERROR:/), 0, 'no ERROR in the server log')
  or diag(join("\n", grep { /ERROR:/ } split /\n/, $cycles_log));
ok($can_update, 'the 0.1.0 script could be installed, so ALTER EXTENSION UPDATE ran in the cycles');
is(worker_pid(), $pid, 'the same worker throughout (never crashed)');

# After all that, syncing works.
$node->safe_psql($db, 'CREATE EXTENSION m365sync');
$t->as_admin("SELECT m365sync.configure('$t->{client_id}', '$t->{client_secret}', '$t->{redirect_uri}')");
my $ua = sim_user_with_event('ada@contoso.example');
my $ada = $t->connect_user('flow-ada', 'ada@contoso.example');
ok($node->poll_query_until($db, "SELECT count(*) = 1 FROM m365sync.events WHERE account_id = $ada"),
	'after the cycles the worker syncs a new account');

# ---- DROP DATABASE of the served database, without FORCE ----

$offset = -s $node->logfile;
my ($ret, $out, $err) = $node->psql('postgres', "DROP DATABASE $db", timeout => 120);
is($ret, 0, 'DROP DATABASE of the served database succeeds without FORCE') or diag($err);
unlike($err, qr/being accessed/, 'no "being accessed by other users"');
$node->wait_for_log(qr/database "$db" does not exist, waiting/, $offset);
is(worker_pid(), '', 'no sync worker while the database is gone');
sleep 12;								# more than one launcher poll
my $gone_log = log_since($node, $offset);
is(count_of($gone_log, qr/does not exist, waiting/), 1, 'the launcher says once that the database is missing');
# (the worker stopped by the launcher ends like any terminated background worker: one FATAL line)
my @bad = grep { /\b(ERROR|FATAL):/ && !/terminating background worker "m365sync worker" due to administrator command/ }
  split /\n/, $gone_log;
is(scalar(@bad), 0, 'no error and no FATAL loop') or diag(join("\n", @bad));

# Start-up fault: m365sync.database names no database.
$node->stop;
$offset = -s $node->logfile;
$node->start;
$node->wait_for_log(qr/database "$db" does not exist, waiting/, $offset);
sleep 12;
$gone_log = log_since($node, $offset);
is(count_of($gone_log, qr/does not exist, waiting/), 1, 'at start-up with no database: one line, no loop');
@bad = grep { /\b(ERROR|FATAL):/ } split /\n/, $gone_log;
is(scalar(@bad), 0, 'no error at start-up') or diag(join("\n", @bad));

# Created again, with the extension: syncing resumes without a restart.
$offset = -s $node->logfile;
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->wait_for_log(qr/m365sync is not installed in database "$db", waiting/, $offset);
ok(1, 'a worker starts in the re-created database and waits for the extension');
$node->safe_psql($db, 'CREATE EXTENSION m365sync');
$node->wait_for_log(qr/m365sync worker: extension found, syncing/, $offset);
$t->as_admin("SELECT m365sync.configure('$t->{client_id}', '$t->{client_secret}', '$t->{redirect_uri}')");
$ada = $t->connect_user('flow-ada', 'ada@contoso.example');
ok($node->poll_query_until($db, "SELECT count(*) = 1 FROM m365sync.events WHERE account_id = $ada"),
	'in the re-created database the worker syncs again');

# ---- ALTER DATABASE ... RENAME: no hang, the worker lets go and comes back ----

$offset = -s $node->logfile;
($ret, $out, $err) = $node->psql('postgres', "ALTER DATABASE $db RENAME TO ${db}_old", timeout => 120);
is($ret, 0, 'renaming the served database succeeds') or diag($err);
$node->wait_for_log(qr/database "$db" does not exist, waiting/, $offset);
is(worker_pid(), '', 'no worker in the renamed database');
($ret, $out, $err) = $node->psql('postgres', "ALTER DATABASE ${db}_old RENAME TO $db", timeout => 120);
is($ret, 0, 'and renaming it back succeeds') or diag($err);
$node->wait_for_log(qr/m365sync worker: extension found, syncing/, $offset);
add_outlook_event($ua, 'After rename');
ok($node->poll_query_until($db, "SELECT count(*) = 2 FROM m365sync.events WHERE account_id = $ada"),
	'after the rename back an Outlook change arrives');

# A DROP DATABASE that fails for another reason (a session of FlowAgent is
# connected) gives PostgreSQL's own error, and the worker comes back at once.
my $sleeper = IPC::Run::start([ $node->installed_command('psql'), '-X', '-d', $node->connstr($db),
	'-c', 'SELECT pg_sleep(60)' ], '>', \my $sleep_out, '2>', \my $sleep_err);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = '$db' AND query LIKE 'SELECT pg_sleep%'")
  or die 'sleeper did not connect';
$offset = -s $node->logfile;
($ret, $out, $err) = $node->psql('postgres', "DROP DATABASE $db", timeout => 120);
isnt($ret, 0, 'DROP DATABASE with another session connected still fails');
like($err, qr/being accessed by other users/, 'with PostgreSQL\'s own error');
$node->wait_for_log(qr/m365sync worker: extension found, syncing/, $offset);
ok(1, 'and the worker is back in the database at once');
$sleeper->kill_kill;

# ---- start-up fault: the master key file missing, then unreadable ----

my $key = $t->keyfile;
$node->stop;
rename($key, "$key.away") or die "rename: $!";
$offset = -s $node->logfile;
$node->start;
$node->wait_for_log(qr/master key unavailable, waiting/, $offset);
add_outlook_event($ua, 'While the key is missing');
sleep 12;
my $key_log = log_since($node, $offset);
is(count_of($key_log, qr/master key unavailable/), 1, 'a missing key file: one log line, no loop');
like($key_log, qr/could not access master key file/, 'the line says what is wrong');
is(count_of($key_log, qr/\b(ERROR|FATAL):/), 0, 'no error loop');
is(events_of($node, $ada), '2', 'nothing synced without the key');

# The file back but readable by others: one new line (another fault).
$offset = -s $node->logfile;
copy("$key.away", $key) or die "copy: $!";
chmod 0644, $key;
$node->reload;
$node->wait_for_log(qr/has group or world access/, $offset);
sleep 3;
is(count_of(log_since($node, $offset), qr/master key unavailable/), 1, 'an unreadable key file: one line');

# Fixed: syncing starts without a restart.
chmod 0600, $key;
$node->reload;
$node->wait_for_log(qr/m365sync worker: extension found, syncing/, $offset);
ok($node->poll_query_until($db, "SELECT count(*) = 3 FROM m365sync.events WHERE account_id = $ada"),
	'with the key file fixed and a reload the change made meanwhile arrives');

# ---- failover: a streaming standby stays idle, then syncs once promoted ----

$node->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('lifecycle_standby');
$standby->init_from_backup($node, 'b1', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
sleep 5;
is($standby->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'm365sync%'"),
	'0', 'no m365sync process on the standby');
is($standby->safe_psql($db, "SELECT count(*) FROM m365sync.events WHERE account_id = $ada"), '3',
	'the standby has the synced events');

$node->stop;
$t->sim_clear_log;
add_outlook_event($ua, 'While the primary is down');
sleep 5;
is(scalar(grep { $_->{path} !~ m{^/_sim} } @{ $t->sim_log }), 0, 'the standby sends no request to Graph');
is(count_of(slurp_file($standby->logfile), qr/m365sync/), 0, 'the standby logs nothing of m365sync');

$standby->promote;
ok($standby->poll_query_until($db, "SELECT count(*) = 4 FROM m365sync.events WHERE account_id = $ada"),
	'after promote the worker syncs: the change made while the primary was down arrives');
like(slurp_file($standby->logfile), qr/m365sync worker: extension found, syncing/, 'the promoted server runs the worker');
is($standby->safe_psql($db, "SELECT status FROM m365sync.sync_run_log WHERE account_id = $ada ORDER BY run_id DESC LIMIT 1"),
	'ok', 'its round succeeded');

$standby->stop;
done_testing();
