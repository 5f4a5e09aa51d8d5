# Conflicts: a local change meets a remote one (edit or delete, seen by the
# pull, by a 412 or by a 404), under each m365sync.conflict_policy. One
# version is kept on both sides, the other is listed in conflicts() and
# nothing is lost; resolve_conflict() brings a listed version back.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use Test::More;
use Time::HiRes qw(usleep);

my $json = JSON::PP->new->canonical;
my $t = M365Test->new(name => 'conflicts', conf => "m365sync.sync_interval = '1h'\n");
$t->setup_app;
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');
my $calb = $t->sim('POST', "/_sim/users/$ada->{id}/calendars", { name => 'Unsynced', can_edit => JSON::PP::true });
$t->node->safe_psql('postgres', "SELECT public.refresh_calendars($account)");
my $cal_b = $t->as_user('flow-ada', "SELECT calendar_id FROM m365sync.calendars() WHERE NOT sync_enabled");
like($cal_b, qr/^\d+$/, 'a second calendar, not synced (its changes are never pulled)');

my @d = map { my @t = gmtime(time + 86400 * $_); sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]) } 1 .. 9;
my $hour = 6;
sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }
sub as_ada { return $t->as_user('flow-ada', $_[0]); }
sub create
{
	my ($subject, %o) = @_;
	$hour++;
	my $e = { subject => $subject, start => { dateTime => sprintf('%sT%02d:00:00', $d[2], $hour % 24), timeZone => 'UTC' },
		end => { dateTime => sprintf('%sT%02d:30:00', $d[2], $hour % 24), timeZone => 'UTC' }, %o };
	return as_ada('SELECT m365sync.upsert_event(' . lit($json->encode($e)) . '::jsonb)');
}
sub drain
{
	die 'outbox not drained' unless $t->node->poll_query_until('postgres',
		"SELECT (SELECT count(*) FROM m365sync.outbox WHERE state = 'pending'"
		  . "   AND coalesce(next_attempt_at, '-infinity') <= now()) = 0"
		  . " AND (SELECT count(*) FROM m365sync.sync_run_log WHERE finished_at IS NULL) = 0");
}
sub sync_now
{
	for (1 .. 100)
	{
		my $r = $t->as_admin("SELECT status FROM m365sync.sync($account)");
		return $r unless $r eq 'busy';
		usleep(100_000);
	}
}
sub outlook { my ($m, $gid, $b) = @_; return $t->sim($m, "/_sim/users/$ada->{id}/events/$gid", $b); }
sub remote_subjects
{
	my ($prefix) = @_;
	return join ',', sort map { $_->{subject} } grep { index($_->{subject}, $prefix) == 0 }
	  @{ $t->sim('GET', "/_sim/users/$ada->{id}/truth")->{events} };
}
sub local_subject
{
	my ($id) = @_;
	my ($out, $st) = $t->sql("SELECT subject FROM m365sync.event($id)", role => 'flowagent', user => 'flow-ada');
	return $st eq '' ? $out : "($st)";
}
sub conflict_of
{
	my ($id) = @_;
	my $r = as_ada("SELECT kept || '|' || policy || '|' || coalesce(lost->>'subject', '') || '|' || (lost ? '\@removed')"
		  . " FROM m365sync.conflicts() WHERE event_id = $id");
	return $r eq '' ? 'none' : $r;
}
sub set_policy
{
	my ($p) = @_;
	$t->node->safe_psql('postgres', "ALTER SYSTEM SET m365sync.conflict_policy = '$p'; SELECT pg_reload_conf();");
	usleep(500_000);
}
sub gid { return as_ada("SELECT graph_id FROM m365sync.event($_[0])"); }

drain();
# policy => expected [remote subjects, local subject, conflict] per case
for my $p (qw(latest_wins remote_wins local_wins))
{
	set_policy($p);
	my $remote_first = $p eq 'remote_wins';

	# 1. local edit vs remote edit, seen by the pull
	my $e1 = create("E1 $p");
	drain();
	outlook('PATCH', gid($e1), { subject => "E1 $p remote" });
	usleep(20_000);
	as_ada("SELECT m365sync.upsert_event('{\"subject\": \"E1 $p local\"}'::jsonb, $e1)");
	drain();
	my $win = $remote_first ? 'remote' : 'local';
	my $lose = $remote_first ? 'local' : 'remote';
	is(remote_subjects("E1 $p"), "E1 $p $win", "$p, local edit vs remote edit: Outlook has the $win version");
	is(local_subject($e1), "E1 $p $win", "$p, local edit vs remote edit: FlowAgent has the $win version");
	is(conflict_of($e1), "$win|$p|E1 $p $lose|false", "$p, local edit vs remote edit: the $lose version is listed");
	is(as_ada("SELECT sync_state FROM m365sync.event($e1)"), 'conflict', "$p: sync_state conflict while listed");

	# 2. local edit vs remote delete (the PATCH meets a 404)
	my $e2 = create("E2 $p");
	drain();
	outlook('DELETE', gid($e2));
	as_ada("SELECT m365sync.upsert_event('{\"subject\": \"E2 $p local\"}'::jsonb, $e2)");
	drain();
	if ($p eq 'local_wins')
	{
		is(remote_subjects("E2 $p"), "E2 $p local", "$p, local edit vs remote delete: created again in Outlook");
		is(local_subject($e2), "E2 $p local", "$p, local edit vs remote delete: FlowAgent keeps it");
		is(conflict_of($e2), "local|$p||true", "$p, local edit vs remote delete: the remote deletion is listed");
	}
	else
	{
		is(remote_subjects("E2 $p"), '', "$p, local edit vs remote delete: stays deleted in Outlook");
		is(local_subject($e2), '(P0002)', "$p, local edit vs remote delete: gone in FlowAgent");
		is(conflict_of($e2), "remote|$p|E2 $p local|false", "$p, local edit vs remote delete: the local edit is listed");
	}

	# 3. local delete vs remote edit, seen by the pull
	my $e3 = create("E3 $p");
	drain();
	outlook('PATCH', gid($e3), { subject => "E3 $p remote" });
	usleep(20_000);
	as_ada("SELECT m365sync.delete_event($e3)");
	drain();
	if ($remote_first)
	{
		is(remote_subjects("E3 $p"), "E3 $p remote", "$p, local delete vs remote edit: Outlook keeps the edit");
		is(local_subject($e3), "E3 $p remote", "$p, local delete vs remote edit: FlowAgent has it back");
		is(conflict_of($e3), "remote|$p|E3 $p|true", "$p, local delete vs remote edit: the local deletion is listed");
	}
	else
	{
		is(remote_subjects("E3 $p"), '', "$p, local delete vs remote edit: deleted in Outlook");
		is(local_subject($e3), '(P0002)', "$p, local delete vs remote edit: gone in FlowAgent");
		is(conflict_of($e3), "local|$p|E3 $p remote|false", "$p, local delete vs remote edit: the remote edit is listed");
	}

	# 4. local delete vs remote delete: no conflict
	my $e4 = create("E4 $p");
	drain();
	outlook('DELETE', gid($e4));
	as_ada("SELECT m365sync.delete_event($e4)");
	drain();
	is(remote_subjects("E4 $p") . '/' . local_subject($e4) . '/' . conflict_of($e4), "/(P0002)/none",
		"$p, local delete vs remote delete: gone on both sides, nothing to list");

	# 5. local edit vs remote edit the pull never saw: the PATCH meets a 412
	my $e5 = as_ada('SELECT m365sync.upsert_event(' . lit($json->encode({ subject => "E5 $p", calendarId => $cal_b + 0,
		start => { dateTime => "$d[3]T10:00:00", timeZone => 'UTC' }, end => { dateTime => "$d[3]T11:00:00", timeZone => 'UTC' } }))
		  . '::jsonb)');
	drain();
	outlook('PATCH', gid($e5), { subject => "E5 $p remote" });
	usleep(20_000);
	$t->sim_clear_log;
	as_ada("SELECT m365sync.upsert_event('{\"subject\": \"E5 $p local\"}'::jsonb, $e5)");
	drain();
	is(scalar(grep { ($_->{status} // 0) == 412 } @{ $t->sim_log }), 1, "$p: a stale If-Match gives 412");
	is(remote_subjects("E5 $p"), "E5 $p $win", "$p, after a 412: Outlook has the $win version");
	is(local_subject($e5), "E5 $p $win", "$p, after a 412: FlowAgent has the $win version");
	is(conflict_of($e5), "$win|$p|E5 $p $lose|false", "$p, after a 412: the $lose version is listed");
}

# resolve_conflict: bring the listed version back, or accept what was kept
set_policy('remote_wins');
my ($e1) = as_ada("SELECT event_id FROM m365sync.conflicts() WHERE lost->>'subject' = 'E1 remote_wins local'");
as_ada("SELECT m365sync.resolve_conflict($e1, 'local')");
drain();
is(remote_subjects('E1 remote_wins'), 'E1 remote_wins local', 'resolve_conflict(local) pushes the listed version');
is(local_subject($e1), 'E1 remote_wins local', '... and FlowAgent has it');
is(conflict_of($e1), 'none', '... and it is no longer listed');
is(as_ada("SELECT sync_state FROM m365sync.event($e1)"), 'synced', '... the event is synced');

my ($e2) = as_ada("SELECT event_id FROM m365sync.conflicts() WHERE lost->>'subject' = 'E2 latest_wins local'");
as_ada("SELECT m365sync.resolve_conflict($e2, 'local')");
drain();
is(remote_subjects('E2 latest_wins'), 'E2 latest_wins local', 'resolve_conflict(local) of a remotely deleted event creates it again');
is(local_subject($e2), 'E2 latest_wins local', '... visible again in FlowAgent');

my $before = as_ada("SELECT count(*) FROM m365sync.conflicts()");
my ($e3) = as_ada("SELECT event_id FROM m365sync.conflicts() WHERE lost->>'subject' = 'E3 latest_wins remote'");
as_ada("SELECT m365sync.resolve_conflict($e3, 'kept')");
is(as_ada("SELECT count(*) FROM m365sync.conflicts()"), $before - 1, "resolve_conflict(kept) only clears the listing");
is($t->node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE event_id = $e3"), '0', '... and the deleted event\'s tombstone goes');

my ($o, $st) = $t->sql("SELECT m365sync.resolve_conflict($e3, 'kept')", role => 'flowagent', user => 'flow-ada');
is($st, 'P0002', 'no open conflict: P0002');
($o, $st) = $t->sql("SELECT m365sync.resolve_conflict($e1, 'mine')", role => 'flowagent', user => 'flow-ada');
is($st, '22023', 'keep must be local, remote or kept: 22023');
($o, $st) = $t->sql("SELECT * FROM m365sync.conflicts()", role => 'flowagent', user => 'someone-else');
is($o, '', "another FlowAgent user sees none of ada's conflicts");
($o, $st) = $t->sql("SELECT * FROM m365sync.conflicts()", role => 'flowagent');
is($st, '28000', 'conflicts() without flowagent_user: 28000');
is($t->node->safe_psql('postgres', "SELECT count(*) FROM m365sync.conflicts WHERE position(convert_to('E1 ', 'UTF8') in lost) > 0"),
	'0', 'losing versions are stored encrypted');

done_testing();
