# Crash safety of the pull: kill -9 of the worker or of the postmaster at
# random instants during an initial 20-page sync and during incremental
# rounds; after each recovery the local events equal the simulator's ground
# truth: nothing lost, nothing twice. M365_CRASH_TRIALS sets the number of
# trials (default 10; the full run uses 100). Then the other way a pull
# starts over, a full resync after the delta token is lost: it keeps what it
# did not insert itself and removes what Outlook deleted.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
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

# The days the pull's window always holds: 30 back and 365 ahead (its weekly
# steps hold up to a week more; the events here lie well inside).
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

# ---- a full resync (the delta token lost) keeps what it did not insert ----
# Step by step with m365sync.sync() and no worker, so nothing races the
# steps: the server restarted without the library preloaded, a new user.
# A full resync keeps a create whose answer was lost (it links it) and an
# event whose conflict the pull settled, and removes a listed conflict's
# event deleted in Outlook (as a tombstone; the listing stays).
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$node->restart;
my $json = JSON::PP->new->canonical;
my $bea = $t->add_sim_user('contoso.example', 'bea@contoso.example');
my $bea_account = $t->connect_user('flow-bea', 'bea@contoso.example');
my @d2 = gmtime(time + 2 * 86400);
my $day2 = sprintf('%04d-%02d-%02d', $d2[5] + 1900, $d2[4] + 1, $d2[3]);
my $hour = 7;
sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }
sub as_bea { return $t->as_user('flow-bea', $_[0]); }
sub create
{
	my ($subject) = @_;
	$hour++;
	return as_bea('SELECT m365sync.upsert_event(' . lit($json->encode({ subject => $subject,
		start => { dateTime => sprintf('%sT%02d:00:00', $day2, $hour), timeZone => 'UTC' },
		end => { dateTime => sprintf('%sT%02d:30:00', $day2, $hour), timeZone => 'UTC' } })) . '::jsonb)');
}
sub update { my ($id, $subject) = @_; as_bea("SELECT m365sync.upsert_event('{\"subject\": \"$subject\"}'::jsonb, $id)"); }
sub sync_round { return $t->as_admin("SELECT status || '/' || coalesce(error, '') FROM m365sync.sync($bea_account)"); }
sub full_resync
{
	$t->sim('POST', '/_sim/delta/expire', { upn => 'bea@contoso.example' });
	return sync_round();
}
sub remote
{
	my ($subject) = @_;
	return scalar grep { $_->{subject} eq $subject } @{ $t->sim('GET', "/_sim/users/$bea->{id}/truth")->{events} };
}
sub local_row
{
	my ($id) = @_;
	my ($out, $st) = $t->sql("SELECT subject || '|' || sync_state || '|' || (graph_id IS NOT NULL) FROM m365sync.event($id)",
		role => 'flowagent', user => 'flow-bea');
	return $st eq '' ? $out : "($st)";
}
sub outbox { my ($id) = @_; return $node->safe_psql('postgres',
	"SELECT string_agg(op || ':' || state, ',' ORDER BY outbox_id) FROM m365sync.outbox WHERE event_id = $id"); }
sub listed { my ($id) = @_; return as_bea("SELECT count(*) FROM m365sync.conflicts() WHERE event_id = $id"); }
sub gid { return as_bea("SELECT graph_id FROM m365sync.event($_[0])"); }
sub outlook { my ($m, $gid, $b) = @_; return $t->sim($m, "/_sim/users/$bea->{id}/events/$gid", $b); }

is(sync_round(), 'ok/', 'without a worker, m365sync.sync() runs a first round');

# a create whose answer was lost, linked by a full resync
my $answer_lost = create('Answer lost');
$t->sim('POST', '/_sim/faults', { route => '/events$', method => 'POST', kind => 'truncated', count => 1 });
sync_round();
is(remote('Answer lost'), 1, 'the create reached Outlook, its answer did not');
is(outbox($answer_lost) . '/' . $node->safe_psql('postgres', "SELECT coalesce(seen_round::text, 'none') FROM m365sync.events WHERE event_id = $answer_lost"),
	'create:pending/none', '... so its push waits (never seen by a full round)');
full_resync();
is(local_row($answer_lost), 'Answer lost|synced|true', 'a full resync links the create and keeps it');
is(outbox($answer_lost), 'create:done', '... its outbox entry is done');
is(as_bea("SELECT count(*) FROM m365sync.events(now(), now() + interval '7 days') WHERE subject = 'Answer lost'"),
	1, '... once in FlowAgent');

# a conflict the pull settles (Outlook later: it wins) during a full resync
my $both = create('Both edit');
sync_round();
update($both, 'Both edit local');
usleep(20_000);
outlook('PATCH', gid($both), { subject => 'Both edit remote' });
full_resync();
is(local_row($both) . '/' . listed($both), 'Both edit remote|conflict|true/1',
	'a conflict met by a full resync: the kept version stays, the other is listed');

# a listed conflict's event deleted in Outlook, seen by a full resync
my $gone = create('Listed then deleted');
sync_round();
outlook('PATCH', gid($gone), { subject => 'Listed remote' });
usleep(20_000);
update($gone, 'Listed local');
sync_round();
is(local_row($gone) . '/' . listed($gone), 'Listed local|conflict|true/1', 'the later local edit is kept, the remote one listed');
is(remote('Listed local'), 1, '... and pushed');
outlook('DELETE', gid($gone));
full_resync();
is(local_row($gone), '(P0002)', 'deleted in Outlook, seen by a full resync: gone in FlowAgent too');
is(listed($gone), 1, '... while its conflict stays listed');

is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.outbox WHERE account_id = $bea_account AND state <> 'done'"), '0',
	'after the full resyncs nothing is failed or left pending');
done_testing();
