# The sync worker's life: one per server, quiet while the extension is
# missing, survives DROP/CREATE EXTENSION and reload, restarts after kill -9.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use PostgreSQL::Test::Utils;
use Test::More;

# No simulator and no extension yet: the worker alone, in database postgres.
my $t = M365Test->new(name => 'worker', sim => 0, extension => 0, conf => "restart_after_crash = on\n");
my $node = $t->node;

sub worker_pids
{
	return $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'm365sync worker'");
}

$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'm365sync worker'")
  or die 'worker did not start';
ok(1, 'exactly one m365sync worker runs with the library preloaded');

$node->wait_for_log(qr/m365sync is not installed in database "postgres", waiting/);
ok(1, 'without the extension the worker says once that it waits');

# Quiet while waiting: count the worker's lines over 25 seconds.
my $offset = -s $node->logfile;
sleep 25;
my $log = slurp_file($node->logfile, $offset);
my $lines = () = $log =~ /m365sync/g;
cmp_ok($lines, '<=', 2, "waiting worker logs at most a few lines ($lines in 25 s)");

my $pid = worker_pids();
$offset = -s $node->logfile;
$node->safe_psql('postgres', 'CREATE EXTENSION m365sync');
$node->wait_for_log(qr/m365sync worker: extension found, syncing/, $offset);
ok(1, 'the worker notices CREATE EXTENSION');

$node->safe_psql('postgres', 'DROP EXTENSION m365sync');
$node->safe_psql('postgres', 'CREATE EXTENSION m365sync');
sleep 1;
is(worker_pids(), $pid, 'the worker survives DROP/CREATE EXTENSION');

$node->reload;
sleep 1;
is(worker_pids(), $pid, 'reload keeps the same worker');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'cluster healthy after reload');

# kill -9: the postmaster runs its crash-restart cycle and starts a new worker.
kill 'KILL', $pid;
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'm365sync worker' AND pid <> $pid")
  or die 'worker did not come back after kill -9';
ok(1, 'after kill -9 the postmaster restarts the worker');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_extension WHERE extname = \'m365sync\''),
	'1', 'cluster healthy after the crash-restart cycle');

# SIGTERM ends the worker cleanly; it is restarted after bgw_restart_time.
my $pid2 = worker_pids();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid2)");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'm365sync worker' AND pid <> $pid2")
  or die 'worker did not restart after SIGTERM';
ok(1, 'a terminated worker is restarted');

$node->stop('fast');
ok(!$node->{_pid}, 'fast shutdown completes with the worker running');
done_testing();
