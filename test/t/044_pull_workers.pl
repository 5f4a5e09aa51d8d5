# Parallel sync workers (m365sync.max_workers = 2): the launcher runs both,
# each syncs only its share of the accounts (account_id modulo 2), every
# account is synced, a write wakes the worker of its account, and kill -9 of
# one worker during initial syncs loses nothing and duplicates nothing.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use Test::More;
use Time::HiRes qw(usleep);

my $t = M365Test->new(name => 'workers', conf => "m365sync.max_workers = 2\n"
	  . "m365sync.sync_interval = '1h'\nrestart_after_crash = on\nlog_min_messages = debug1\n");
my $node = $t->node;
$t->setup_app;

ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'm365sync worker'"),
	'the launcher runs two sync workers');

my @now = gmtime(time);
my $tomorrow = sprintf('%04d-%02d-%02dT09:00:00', $now[5] + 1900, $now[4] + 1, $now[3]);
my $day = int(time / 86400) * 86400;
sub iso { my @t = gmtime(shift); sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ', $t[5] + 1900, $t[4] + 1, $t[3], $t[2], $t[1], $t[0]) }
my ($wstart, $wend) = (iso($day - 30 * 86400), iso($day + 365 * 86400));

# Six mailboxes, 300 events each (3 pages): both workers have work at once.
my (%user, %account);
for my $i (1 .. 6)
{
	my $upn = "user$i\@contoso.example";
	$user{$i} = $t->add_sim_user('contoso.example', $upn);
	$t->sim('POST', "/_sim/users/$user{$i}{id}/events/bulk",
		{ count => 300, start => $tomorrow, interval_minutes => 60, duration_minutes => 30 });
	$account{$i} = $t->connect_user("flow-$i", $upn);
}

sub truth
{
	my ($i) = @_;
	my $tr = $t->sim('GET', "/_sim/users/$user{$i}{id}/truth?expand=1&idtype=immutable&start=$wstart&end=$wend");
	return join ',', sort(map { "$_->{id}/$_->{changeKey}" } @{ $tr->{instances} });
}

sub local_set
{
	my ($i) = @_;
	return join ',', sort(split(/\n/, $node->safe_psql('postgres',
		"SELECT graph_id || '/' || change_key FROM m365sync.events WHERE account_id = $account{$i}")));
}

sub all_synced
{
	for (1 .. 480)
	{
		my $ok = 1;
		for my $i (1 .. 6)
		{
			$ok = 0, last if local_set($i) ne truth($i);
		}
		return 1 if $ok;
		usleep(250_000);
	}
	return 0;
}

ok(all_synced(), 'every account is synced, each equal to Outlook');

# Which worker ran which account: the workers' DEBUG1 lines.
sub rounds_by_worker
{
	my %by;
	open(my $fh, '<', $node->logfile) or die $!;
	while (<$fh>)
	{
		$by{$2}{$1} = 1 if /m365sync worker (\d+): round of account (\d+)/;
	}
	close $fh;
	return \%by;
}
my $by = rounds_by_worker();
my @both = grep { keys %{ $by->{$_} } > 1 } keys %$by;
is(scalar(@both), 0, 'no account was synced by two workers');
my @wrong = grep { my $a = $_; grep { $_ != $a % 2 } keys %{ $by->{$a} } } keys %$by;
is(scalar(@wrong), 0, 'each account by the worker of its share (account_id modulo 2)');
is(join(',', sort { $a <=> $b } grep { $by->{$_} } values %account), join(',', sort { $a <=> $b } values %account),
	'all six accounts had rounds');
my %workers_used = map { (keys %{ $by->{$_} })[0] => 1 } keys %$by;
is(join(',', sort keys %workers_used), '0,1', 'both workers synced accounts');

# A FlowAgent write wakes the worker of its account, which pushes it.
my $odd = (grep { $account{$_} % 2 == 1 } 1 .. 6)[0];
my $even = (grep { $account{$_} % 2 == 0 } 1 .. 6)[0];
for my $i ($odd, $even)
{
	$t->as_user("flow-$i", "SELECT m365sync.upsert_event(jsonb_build_object('subject', 'From FlowAgent $i',"
		  . " 'start', jsonb_build_object('dateTime', '${tomorrow}', 'timeZone', 'UTC'),"
		  . " 'end', jsonb_build_object('dateTime', '" . ($tomorrow =~ s/09:00/09:30/r) . "', 'timeZone', 'UTC')))");
}
for my $i ($odd, $even)
{
	ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM m365sync.outbox WHERE account_id = $account{$i} AND state = 'pending'"),
		"account $i\'s write is pushed");
	my $tr = $t->sim('GET', "/_sim/users/$user{$i}{id}/truth?expand=1&idtype=immutable&start=$wstart&end=$wend");
	is(scalar(grep { ($_->{subject} // '') eq "From FlowAgent $i" } @{ $tr->{instances} }), 1, "and reaches Outlook once");
}
$by = rounds_by_worker();
is(join(',', map { join('', keys %{ $by->{$account{$_}} }) } ($odd, $even)), '1,0',
	'by the worker of each account');

# kill -9 of one worker during the initial syncs of all six: the server
# restarts, both workers come back, nothing is lost or duplicated.
for my $i (1 .. 6)
{
	$node->safe_psql('postgres', "SELECT pg_advisory_lock(19763, $account{$i});"
		  . " DELETE FROM m365sync.events WHERE account_id = $account{$i} AND sync_state = 'synced';"
		  . " UPDATE m365sync.calendars SET delta_link = NULL, delta_is_final = false, full_round_id = NULL"
		  . " WHERE account_id = $account{$i};"
		  . " UPDATE m365sync.accounts SET next_sync_at = now(), backoff_until = NULL WHERE account_id = $account{$i};"
		  . " SELECT pg_advisory_unlock(19763, $account{$i})");
}
usleep(700_000);
my $victim = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'm365sync worker'"
	  . " AND wait_event IS DISTINCT FROM 'Extension' ORDER BY pid LIMIT 1")
  || $node->safe_psql('postgres', "SELECT min(pid) FROM pg_stat_activity WHERE backend_type = 'm365sync worker'");
ok($victim, 'a worker to kill');
kill 'KILL', $victim;
$node->poll_query_until('postgres', 'SELECT true') or die 'server did not come back';
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'm365sync worker'"),
	'both workers run again after the crash');
$node->safe_psql('postgres', "UPDATE m365sync.accounts SET next_sync_at = now(), backoff_until = NULL");
ok(all_synced(), 'after kill -9 of a worker every account equals Outlook again: nothing lost');
is($node->safe_psql('postgres', "SELECT count(*) FROM (SELECT account_id, graph_id FROM m365sync.events"
	  . " GROUP BY 1, 2 HAVING count(*) > 1) d"), '0', 'nothing twice');

done_testing();
