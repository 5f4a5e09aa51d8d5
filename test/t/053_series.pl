# Recurring series as the live service sends them (GRAPH.md §11): in
# calendarView/delta an occurrence is a stub (id, seriesMasterId, type,
# start, end, @odata.etag) and a cancelled occurrence gets no @removed. The
# pull fetches each series' master, fills the occurrences from it, links
# them (series_master_id), and reconciles a touched series with its
# instances; FlowAgent edits and deletes whole series through the master.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use Test::More;
use Time::HiRes qw(usleep);

my $json = JSON::PP->new->canonical;
my $t = M365Test->new(name => 'series', conf => "m365sync.sync_interval = '1h'\nrestart_after_crash = on\n");
my $node = $t->node;
$t->setup_app;
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');

sub day { my @t = gmtime(time + 86400 * $_[0]); sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]) }
sub wday { (gmtime(time + 86400 * $_[0]))[6] }
my @dow = qw(sunday monday tuesday wednesday thursday friday saturday);
sub outlook { my ($m, $p, $b) = @_; return $t->sim($m, "/_sim/users/$ada->{id}$p", $b); }
sub as_ada { return $t->as_user('flow-ada', $_[0]); }
sub sync_now
{
	return $t->as_admin("SELECT status || ':' || fetched || ':' || applied || ':' || deleted FROM m365sync.sync($account)");
}
my $range = "now() - interval '30 days', now() + interval '400 days'";

# The pull's window: whole UTC days, 30 back and 365 ahead.
my $day0 = int(time / 86400) * 86400;
sub iso { my @t = gmtime(shift); sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ', $t[5] + 1900, $t[4] + 1, $t[3], $t[2], $t[1], $t[0]) }
my ($wstart, $wend) = (iso($day0 - 30 * 86400), iso($day0 + 365 * 86400));
sub truth
{
	return $t->sim('GET', "/_sim/users/$ada->{id}/truth?expand=1&idtype=immutable&tz=UTC&start=$wstart&end=$wend");
}
# Outlook's occurrences of a series: "start=subject" sorted, from the ground truth.
sub outlook_series
{
	my ($master_gid) = @_;
	return join ',', map { substr($_->{start}{dateTime}, 0, 16) . "=$_->{subject}" }
	  sort { $a->{start}{dateTime} cmp $b->{start}{dateTime} }
	  grep { ($_->{seriesMasterId} // '') eq $master_gid } @{ truth()->{instances} };
}
sub local_series
{
	my ($master_id) = @_;
	return as_ada("SELECT string_agg(to_char(start_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI') || '=' || subject, ','"
		  . " ORDER BY start_at) FROM m365sync.events($range) WHERE series_master_id = $master_id");
}

# ------------------------------------------------------------------ stubs filled from the master
$t->sim_clear_log;
my $first = day(1);
my $team = outlook('POST', '/events', { subject => 'Team sync',
	body => { contentType => 'text', content => 'Agenda: the week ahead' },
	location => { displayName => 'Room 4' }, categories => ['Blue category'],
	attendees => [ { emailAddress => { address => 'bo@contoso.example', name => 'Bo' }, type => 'required' } ],
	showAs => 'tentative', sensitivity => 'private',
	start => { dateTime => "${first}T10:00:00", timeZone => 'Romance Standard Time' },
	end => { dateTime => "${first}T10:30:00", timeZone => 'Romance Standard Time' },
	recurrence => { pattern => { type => 'weekly', interval => 1, daysOfWeek => [ $dow[ wday(1) ] ] },
		range => { type => 'numbered', startDate => $first, numberOfOccurrences => 6 } } });
my $conf = outlook('POST', '/events', { subject => 'Conference', isAllDay => JSON::PP::true,
	start => { dateTime => day(3) . 'T00:00:00', timeZone => 'W. Europe Standard Time' },
	end => { dateTime => day(4) . 'T00:00:00', timeZone => 'W. Europe Standard Time' },
	recurrence => { pattern => { type => 'daily', interval => 1 },
		range => { type => 'numbered', startDate => day(3), numberOfOccurrences => 3 } } });

is($t->sim('GET', '/_sim/config')->{full_occurrences}, JSON::PP::false, 'the simulator sends occurrence stubs (the default)');
sync_now();
ok($node->poll_query_until('postgres', "SELECT count(*) = 9 FROM m365sync.events WHERE account_id = $account AND event_type = 'occurrence'")
	  || (sync_now() && 0), 'the first round brings the 9 occurrences');
my $team_id = as_ada("SELECT event_id FROM m365sync.events($range) WHERE event_type = 'occurrence' AND subject = 'Team sync' LIMIT 1");
$team_id = as_ada("SELECT series_master_id FROM m365sync.event($team_id)");
ok($team_id, 'the occurrences are linked to their local master');
is(as_ada("SELECT count(*) || ':' || count(DISTINCT series_master_id) || ':' || bool_and(body LIKE '%Agenda: the week ahead%')"
	  . " || ':' || bool_and(location = 'Room 4') || ':' || bool_and(attendees->0->'emailAddress'->>'address' = 'bo\@contoso.example')"
	  . " || ':' || bool_and(categories = '{\"Blue category\"}') || ':' || bool_and(show_as = 'tentative')"
	  . " || ':' || bool_and(sensitivity = 'private') || ':' || bool_and(NOT is_all_day)"
	  . " FROM m365sync.events($range) WHERE subject = 'Team sync'"),
	'6:1:true:true:true:true:true:true:true', 'every occurrence has its series\' subject, body, location, attendees, categories, showAs and sensitivity');
is(local_series($team_id), outlook_series($team->{immutable_id}), '... at the times Outlook has them');
is(as_ada("SELECT count(*) || ':' || bool_and(is_all_day) || ':' || string_agg(start_date::text || '/' || end_date::text, ',' ORDER BY start_date)"
	  . " FROM m365sync.events($range) WHERE subject = 'Conference'"),
	'3:true:' . join(',', map { day($_) . '/' . day($_ + 1) } 3 .. 5), 'the all-day series keeps its dates (all-day flag from the master)');
is(as_ada("SELECT event_type || ':' || subject || ':' || (recurrence->'pattern'->>'type') || ':' || (recurrence->'range'->>'numberOfOccurrences')"
	  . " FROM m365sync.event($team_id)"), 'seriesMaster:Team sync:weekly:6', 'event(master) returns the master with its recurrence');
is(as_ada("SELECT count(*) FROM m365sync.events($range) WHERE event_type = 'seriesMaster'"), '0', 'events() lists occurrences, never their master');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE account_id = $account AND event_type = 'seriesMaster' AND content IS NOT NULL"),
	'2', 'both masters are stored (encrypted content)');
my @batches = grep { $_->{path} =~ m{/\$batch$} } @{ $t->sim_log };
ok(@batches >= 1, 'the masters were fetched through $batch');
like(join(' ', map { $_->{body} // '' } @batches), qr{/events/\Q${\ ($team->{immutable_id} =~ s/=/%3D/gr)}\E"}, '... a GET of the master by its id');
is(as_ada("SELECT count(*) FROM m365sync.events($range) WHERE event_type = 'occurrence' AND (data->>'changeKey') IS NULL"), '0',
	'each occurrence keeps an etag (changeKey from @odata.etag)');

like(sync_now(), qr/^ok:0:0:0$/, 'a second round changes nothing');

# ------------------------------------------------------------------ Outlook renames the series
outlook('PATCH', "/events/$team->{immutable_id}", { subject => 'Team sync (renamed)' });
like(sync_now(), qr/^ok:/, 'one round');
is(as_ada("SELECT count(*) FROM m365sync.events($range) WHERE series_master_id = $team_id AND subject = 'Team sync (renamed)'"), '6',
	'the master\'s new subject reaches every occurrence in one round');
is(as_ada("SELECT subject FROM m365sync.event($team_id)"), 'Team sync (renamed)', '... and the master');

# ------------------------------------------------------------------ Outlook cancels one, edits another
my @occ = map { $_->{id} } sort { $a->{start}{dateTime} cmp $b->{start}{dateTime} }
  grep { ($_->{seriesMasterId} // '') eq $team->{immutable_id} } @{ truth()->{instances} };
outlook('DELETE', "/events/$occ[2]");
$t->sim_clear_log;
like(sync_now(), qr/^ok:\d+:\d+:1$/, 'a round after Outlook cancelled an occurrence deletes one event');
is(as_ada("SELECT count(*) FROM m365sync.events($range) WHERE graph_id = '$occ[2]'"), '0', 'the cancelled occurrence left events() within one round');
is(as_ada("SELECT count(*) FROM m365sync.events($range) WHERE series_master_id = $team_id"), '5', '... the other five stay');
outlook('PATCH', "/events/$occ[3]", { subject => 'Team sync (offsite)', location => { displayName => 'Harbour' } });
like(sync_now(), qr/^ok:/, 'a round after Outlook edited an occurrence');
is(as_ada("SELECT event_type || ':' || subject || ':' || location || ':' || series_master_id FROM m365sync.events($range) WHERE graph_id = '$occ[3]'"),
	"exception:Team sync (offsite):Harbour:$team_id", 'the exception arrives in full and keeps its own content');
is(local_series($team_id), outlook_series($team->{immutable_id}), 'the series with an edited and a cancelled occurrence matches Outlook');
is(as_ada("SELECT (recurrence->'pattern'->>'type') || ':' || event_type FROM m365sync.event($team_id)"), 'weekly:seriesMaster',
	'... and FlowAgent shows its master and pattern');

# ------------------------------------------------------------------ Outlook: every other week
outlook('PATCH', "/events/$team->{immutable_id}", { recurrence => { pattern => { type => 'weekly', interval => 2, daysOfWeek => [ $dow[ wday(1) ] ] },
		range => { type => 'numbered', startDate => $first, numberOfOccurrences => 6 } } });
like(sync_now(), qr/^ok:/, 'a round after Outlook changed the pattern');
is(local_series($team_id), outlook_series($team->{immutable_id}), 'FlowAgent\'s occurrences follow weekly → every other week');
is(as_ada("SELECT recurrence->'pattern'->>'interval' FROM m365sync.event($team_id)"), '2', '... and the master\'s pattern');

# ------------------------------------------------------------------ a series leaves the window
my $conf_id = as_ada("SELECT series_master_id FROM m365sync.events($range) WHERE subject = 'Conference' LIMIT 1");
my $far = day(500);
outlook('PATCH', "/events/$conf->{immutable_id}", { start => { dateTime => "${far}T00:00:00", timeZone => 'W. Europe Standard Time' },
	end => { dateTime => day(501) . 'T00:00:00', timeZone => 'W. Europe Standard Time' },
	recurrence => { pattern => { type => 'daily', interval => 1 }, range => { type => 'numbered', startDate => $far, numberOfOccurrences => 3 } } });
like(sync_now(), qr/^ok:\d+:\d+:3$/, 'the round removes its three occurrences');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE account_id = $account AND (event_id = $conf_id OR series_master_id = $conf_id)"),
	'0', 'a series that leaves the window loses its master');

# ------------------------------------------------------------------ kill -9 while masters are fetched
# The worker's round is held at its $batch of masters (the simulator
# applies the request and holds the answer), then the postmaster or the
# worker is killed. The page that revealed the masters commits with them or
# not at all: after recovery local = Outlook, 0 lost, 0 twice, no orphan master.
$node->safe_psql('postgres', "ALTER SYSTEM SET m365sync.sync_interval = '1s'; SELECT pg_reload_conf()");
sub local_set
{
	return join ',', sort split /\n/, $node->safe_psql('postgres',
		"SELECT graph_id || '/' || change_key FROM m365sync.events WHERE account_id = $account AND event_type <> 'seriesMaster'");
}
sub truth_set
{
	return join ',', sort map { "$_->{id}/$_->{changeKey}" } @{ truth()->{instances} };
}
sub masters_ok
{
	# one local master per series with an instance in the window, none without an occurrence
	my %want = map { ($_->{seriesMasterId} // '') => 1 } @{ truth()->{instances} };
	delete $want{''};
	my $got = $node->safe_psql('postgres', "SELECT string_agg(graph_id, ',' ORDER BY graph_id) FROM m365sync.events m"
		  . " WHERE account_id = $account AND event_type = 'seriesMaster' AND EXISTS (SELECT 1 FROM m365sync.events o"
		  . "   WHERE o.account_id = m.account_id AND o.series_master_id = m.event_id)");
	my $orphans = $node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events m WHERE account_id = $account"
		  . " AND event_type = 'seriesMaster' AND NOT EXISTS (SELECT 1 FROM m365sync.events o"
		  . "   WHERE o.account_id = m.account_id AND o.series_master_id = m.event_id)");
	return $got eq join(',', sort keys %want) && $orphans eq '0';
}
sub settle
{
	for (1 .. 240)
	{
		$node->safe_psql('postgres', "UPDATE m365sync.accounts SET next_sync_at = now(), backoff_until = NULL WHERE account_id = $account");
		return 1 if local_set() eq truth_set() && masters_ok();
		usleep(250_000);
	}
	return 0;
}
my ($lost, $twice, $orphan_trials, $ok_trials) = (0, 0, 0, 0);
my $trials = 4;
for my $trial (1 .. $trials)
{
	# The fault first: the worker polls every second and must not see the changes before it.
	$t->sim('POST', '/_sim/faults', { route => '\$batch$', method => 'POST', kind => 'pause', count => 1 });
	# Outlook: two new series (a batch of masters to fetch), a renamed one, a cancelled occurrence.
	for my $k (1 .. 2)
	{
		my $d = day(2 + $trial + $k);
		outlook('POST', '/events', { subject => "Crash series $trial.$k",
			start => { dateTime => "${d}T07:00:00", timeZone => 'GMT Standard Time' },
			end => { dateTime => "${d}T07:30:00", timeZone => 'GMT Standard Time' },
			recurrence => { pattern => { type => 'daily', interval => 1 },
				range => { type => 'numbered', startDate => $d, numberOfOccurrences => 4 } } });
	}
	outlook('PATCH', "/events/$team->{immutable_id}", { subject => "Team sync $trial" });
	my @o = grep { ($_->{seriesMasterId} // '') eq $team->{immutable_id} && $_->{type} eq 'occurrence' } @{ truth()->{instances} };
	outlook('DELETE', "/events/$o[-1]{id}") if @o > 1;
	$node->safe_psql('postgres', "UPDATE m365sync.accounts SET next_sync_at = now(), backoff_until = NULL WHERE account_id = $account");
	my $held = 0;
	for (1 .. 240) { last if ($held = $t->sim('GET', '/_sim/stats')->{paused}); usleep(100_000); }
	ok($held, "trial $trial: the worker's round is held at its \$batch of masters");
	if ($trial % 2)
	{
		$t->kill9_postmaster_and_restart;
	}
	else
	{
		my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'm365sync worker'");
		kill 'KILL', $pid if $pid;
		$node->poll_query_until('postgres', 'SELECT true') or die 'server did not come back';
	}
	$t->sim('POST', '/_sim/release', {});
	$t->sim('DELETE', '/_sim/faults');
	if (settle())
	{
		$ok_trials++;
		next;
	}
	my %l = map { $_ => 1 } split /,/, local_set();
	my %r = map { $_ => 1 } split /,/, truth_set();
	$lost += grep { !$l{$_} } keys %r;
	$twice += grep { !$r{$_} } keys %l;
	$orphan_trials++ unless masters_ok();
}
is($ok_trials, $trials, "after $trials kill -9 trials mid-fetch, the local events equal Outlook's");
is($lost, 0, '0 lost');
is($twice, 0, '0 duplicated or stale');
is($orphan_trials, 0, 'no orphan master, and one master per series');
is($node->safe_psql('postgres', "SELECT count(*) FROM (SELECT graph_id FROM m365sync.events WHERE account_id = $account"
	  . " AND graph_id IS NOT NULL GROUP BY graph_id HAVING count(*) > 1) d"), '0', 'no Graph id twice');
$node->safe_psql('postgres', "ALTER SYSTEM RESET m365sync.sync_interval; SELECT pg_reload_conf()");

done_testing();
