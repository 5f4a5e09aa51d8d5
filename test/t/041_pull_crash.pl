# Crash safety of the pull: kill -9 of the worker or of the postmaster at
# random instants during an initial 20-page sync and during incremental
# rounds; after each recovery the local events equal the simulator's ground
# truth: nothing lost, nothing twice. M365_CRASH_TRIALS sets the number of
# trials (default 10; the full run uses 100).
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use Test::More;
use Time::HiRes qw(usleep);

my $trials = $ENV{M365_CRASH_TRIALS} // 10;
srand($ENV{M365_CRASH_SEED} // 4242);

my $t = M365Test->new(name => 'crash', conf => "m365sync.sync_interval = '1s'\nrestart_after_crash = on\n");
my $node = $t->node;
$t->setup_app;
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');

my @now = gmtime(time);
my $tomorrow = sprintf('%04d-%02d-%02dT09:00:00', $now[5] + 1900, $now[4] + 1, $now[3]);
$t->sim('POST', "/_sim/users/$ada->{id}/events/bulk",
	{ count => 2000, start => $tomorrow, interval_minutes => 60, duration_minutes => 30 });

# The pull's window: whole UTC days, 30 back and 365 ahead.
my $day = int(time / 86400) * 86400;
sub iso { my @t = gmtime(shift); sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ', $t[5] + 1900, $t[4] + 1, $t[3], $t[2], $t[1], $t[0]) }
my ($wstart, $wend) = (iso($day - 30 * 86400), iso($day + 365 * 86400));

sub truth
{
	my $tr = $t->sim('GET', "/_sim/users/$ada->{id}/truth?expand=1&idtype=immutable&start=$wstart&end=$wend");
	my @ids = map { "$_->{id}/$_->{changeKey}" } @{ $tr->{instances} };
	return join ',', sort(@ids);
}

sub local_set
{
	my @ids = split(/\n/, $node->safe_psql('postgres',
		"SELECT graph_id || '/' || change_key FROM m365sync.events WHERE account_id = $account"));
	return join ',', sort(@ids);
}

# Wait until the worker has finished a round after the latest change.
sub settle
{
	$node->safe_psql('postgres', "UPDATE m365sync.accounts SET next_sync_at = now(), backoff_until = NULL WHERE account_id = $account");
	my $target = truth();
	for (1 .. 240)
	{
		my $done = $node->safe_psql('postgres',
			"SELECT bool_and(delta_is_final) FROM m365sync.calendars WHERE account_id = $account AND sync_enabled");
		return 1 if $done eq 't' && local_set() eq $target;
		usleep(250_000);
	}
	return 0;
}

sub worker_pid
{
	return $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'm365sync worker'");
}

my ($ok_trials, $lost, $extra) = (0, 0, 0);
for my $trial (1 .. $trials)
{
	my $initial = $trial % 2;	# odd trials: a fresh initial sync; even: incremental
	if ($initial)
	{
		# Reset under the account's round lock (0x4D33 = 19763), so that no
		# round in flight writes its cursor over the reset.
		$node->safe_psql('postgres', "SELECT pg_advisory_lock(19763, $account);"
			  . " DELETE FROM m365sync.events WHERE account_id = $account;"
			  . " UPDATE m365sync.calendars SET delta_link = NULL, delta_is_final = false, full_round_id = NULL WHERE account_id = $account;"
			  . " SELECT pg_advisory_unlock(19763, $account)");
	}
	else
	{
		# Outlook edits: a few creates, renames and deletes.
		my $tr = $t->sim('GET', "/_sim/users/$ada->{id}/truth?expand=1&idtype=immutable&start=$wstart&end=$wend");
		my @ids = map { $_->{id} } @{ $tr->{instances} };
		for (1 .. 5)
		{
			my $id = $ids[ int(rand(@ids)) ];
			$t->sim('PATCH', "/_sim/users/$ada->{id}/events/$id", { subject => "renamed $trial" });
		}
		$t->sim('DELETE', "/_sim/users/$ada->{id}/events/" . $ids[ int(rand(@ids)) ]);
		$t->sim('POST', "/_sim/users/$ada->{id}/events", { subject => "new $trial",
			start => { dateTime => $tomorrow, timeZone => 'UTC' }, end => { dateTime => $tomorrow =~ s/09:00/09:30/r, timeZone => 'UTC' } });
	}
	$node->safe_psql('postgres', "UPDATE m365sync.accounts SET next_sync_at = now(), backoff_until = NULL WHERE account_id = $account");

	# Kill at a random instant of the round.
	usleep(int(rand($initial ? 2_500_000 : 1_200_000)));
	if ($trial % 3 == 0)
	{
		$t->kill9_postmaster_and_restart;
	}
	else
	{
		my $pid = worker_pid();
		kill 'KILL', $pid if $pid;
		$node->poll_query_until('postgres', 'SELECT true') or die 'server did not come back';
	}

	if (settle())
	{
		$ok_trials++;
	}
	else
	{
		my %l = map { $_ => 1 } split /,/, local_set();
		my %r = map { $_ => 1 } split /,/, truth();
		my @lost = grep { !$l{$_} } keys %r;
		my @extra = grep { !$r{$_} } keys %l;
		$lost += @lost;
		$extra += @extra;
		diag("trial $trial: local differs from the ground truth: " . scalar(@lost) . " missing, "
			  . scalar(@extra) . " stale; e.g. missing $lost[0]");
	}
}

is($ok_trials, $trials, "after $trials kill -9 trials the local events equal Outlook's every time");
is($lost, 0, '0 lost');
is($extra, 0, '0 duplicated or stale');
is($node->safe_psql('postgres', "SELECT count(*) - count(DISTINCT graph_id) FROM m365sync.events WHERE account_id = $account"),
	'0', 'no event twice');
# A round cut off by a kill is closed by the account's next round, never left 'running' (see 052).
$node->safe_psql('postgres', "UPDATE m365sync.accounts SET next_sync_at = now() WHERE account_id = $account");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM m365sync.sync_runs WHERE account_id = $account AND status = 'running'"),
	'no round is left running after the kills');
done_testing();
