# Without the worker (no preload), pg_cron drives syncing with the
# documented recipe: SELECT cron.schedule('m365sync', '* * * * *', 'SELECT m365sync.sync()').
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use Test::More;

my $t = M365Test->new(name => 'cron', conf => <<'CONF');
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
CONF
my $node = $t->node;
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'm365sync worker'"),
	'0', 'no m365sync worker without preload');

$t->setup_app;
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');
my @d = gmtime(time + 86400);
my $day = sprintf('%04d-%02d-%02d', $d[5] + 1900, $d[4] + 1, $d[3]);
$t->sim('POST', "/_sim/users/$ada->{id}/events", { subject => 'Planned by cron',
	start => { dateTime => "${day}T10:00:00", timeZone => 'UTC' },
	end => { dateTime => "${day}T11:00:00", timeZone => 'UTC' } });

$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
$node->safe_psql('postgres', "SELECT cron.schedule('m365sync', '* * * * *', 'SELECT m365sync.sync()')");
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM m365sync.sync_runs WHERE account_id = $account AND status = 'ok' AND applied = 1"),
	'the pg_cron job ran m365sync.sync() on schedule');
is($t->as_user('flow-ada', "SELECT subject FROM m365sync.events(now(), now() + interval '3 days')"),
	'Planned by cron', "and Outlook's event is in FlowAgent");
is($node->safe_psql('postgres', "SELECT status FROM cron.job_run_details ORDER BY runid DESC LIMIT 1"),
	'succeeded', 'pg_cron records the run as succeeded');

# postgresql.conf names m365sync.database (M365Test writes it) although the
# library is not preloaded: sessions loading the library must not warn.
is($node->safe_psql('postgres', 'LOAD \'m365sync\'; SHOW m365sync.database'), 'postgres',
	'without preload m365sync.database is still a known setting');
my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
unlike($log, qr/invalid configuration parameter name "m365sync/, 'no session warned about an unknown m365sync setting');
done_testing();
