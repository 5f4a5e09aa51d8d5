# Exactly once across a crash: the worker is killed (-9) after Graph has
# made the event but before its answer arrives. Whatever Graph answers to
# the repeated transactionId (the existing event, or 409), and whether the
# next pull sees the event first (synced calendar) or not (unsynced one),
# Outlook ends with exactly one event, linked to the local row.
# M365_PUSH_CRASH_TRIALS=50 for the long run (default 4).
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use Test::More;
use Time::HiRes qw(usleep);

my $trials = $ENV{M365_PUSH_CRASH_TRIALS} // 4;
my $json = JSON::PP->new->canonical;
my $t = M365Test->new(name => 'push_crash', conf => "m365sync.sync_interval = '1h'\nrestart_after_crash = on\n");
$t->setup_app;
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');
$t->sim('POST', "/_sim/users/$ada->{id}/calendars", { name => 'Unsynced', can_edit => JSON::PP::true });
$t->node->safe_psql('postgres', "SELECT public.refresh_calendars($account)");
my $cal_b = $t->as_user('flow-ada', "SELECT calendar_id FROM m365sync.calendars() WHERE NOT sync_enabled");
my @t0 = gmtime(time + 86400);
my $day = sprintf('%04d-%02d-%02d', $t0[5] + 1900, $t0[4] + 1, $t0[3]);

sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }

for my $i (1 .. $trials)
{
	my $mode = $i % 2 ? 'existing' : '409';
	my $unsynced = ($i % 4) >= 2;
	my $what = "trial $i: repeated transactionId answers $mode, " . ($unsynced ? 'unsynced' : 'synced') . ' calendar';
	$t->sim('POST', '/_sim/config', { txid_duplicate => $mode });
	$t->sim('POST', '/_sim/faults', { route => '/events$', method => 'POST', kind => 'pause', count => 1 });
	my $e = { subject => "Crash $i", start => { dateTime => sprintf('%sT%02d:00:00', $day, $i % 24), timeZone => 'UTC' },
		end => { dateTime => sprintf('%sT%02d:30:00', $day, $i % 24), timeZone => 'UTC' } };
	$e->{calendarId} = $cal_b + 0 if $unsynced;
	my $id = $t->as_user('flow-ada', 'SELECT m365sync.upsert_event(' . lit($json->encode($e)) . '::jsonb)');

	my $paused = 0;
	for (1 .. 300)
	{
		$paused = $t->sim('GET', '/_sim/stats')->{paused};
		last if $paused;
		usleep(50_000);
	}
	die "$what: the POST never arrived" unless $paused;
	my $pid = $t->node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'm365sync worker'");
	kill 'KILL', $pid;
	$t->sim('POST', '/_sim/release', {});

	ok($t->node->poll_query_until('postgres',
		"SELECT state = 'done' FROM m365sync.outbox WHERE event_id = $id AND op = 'create'"),
		"$what: the create is done after the restart");
	my @remote = grep { $_->{subject} eq "Crash $i" } @{ $t->sim('GET', "/_sim/users/$ada->{id}/truth")->{events} };
	is(scalar(@remote), 1, "$what: exactly one event in Outlook");
	is($t->as_user('flow-ada', "SELECT graph_id FROM m365sync.event($id)"), $remote[0]{id} // 'none',
		"$what: linked to the local row");
	$t->sim('DELETE', '/_sim/faults');
}
ok(($t->sim('GET', '/_sim/stats')->{by_status}{409} // 0) >= 1, 'a repeated transactionId answered 409 was settled by finding the event')
  if $trials >= 2;
is($t->as_user('flow-ada', "SELECT count(*) FROM m365sync.events(now(), now() + interval '3 days') WHERE subject LIKE 'Crash %'"),
	$trials, 'no local duplicates either');
# Every trial killed the worker inside a round: the account's next round closes it as interrupted.
$t->node->safe_psql('postgres', "UPDATE m365sync.accounts SET next_sync_at = now() WHERE account_id = $account");
ok($t->node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM m365sync.sync_runs WHERE account_id = $account AND status = 'running'"),
	'no round is left running after the kills');
cmp_ok($t->node->safe_psql('postgres',
		"SELECT count(*) FROM m365sync.sync_runs WHERE account_id = $account AND status = 'interrupted'"),
	'>=', $trials, 'each round a kill cut off is listed as interrupted');

done_testing();
