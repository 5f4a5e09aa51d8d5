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
# A window of 800 days ahead, so both DST switches of the coming year fit whatever the date.
my $t = M365Test->new(name => 'series',
	conf => "m365sync.sync_interval = '1h'\nrestart_after_crash = on\nm365sync.window_future = '800d'\n");
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
my $range = "now() - interval '30 days', now() + interval '820 days'";

# The pull's window: whole UTC days, 30 back and 800 ahead.
my $day0 = int(time / 86400) * 86400;
sub iso { my @t = gmtime(shift); sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ', $t[5] + 1900, $t[4] + 1, $t[3], $t[2], $t[1], $t[0]) }
my ($wstart, $wend) = (iso($day0 - 30 * 86400), iso($day0 + 800 * 86400));
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
my $far = day(900);
outlook('PATCH', "/events/$conf->{immutable_id}", { start => { dateTime => "${far}T00:00:00", timeZone => 'W. Europe Standard Time' },
	end => { dateTime => day(901) . 'T00:00:00', timeZone => 'W. Europe Standard Time' },
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

# ================================================================== FlowAgent's side (bea)
my $bea = $t->add_sim_user('contoso.example', 'bea@contoso.example');
my $bea_account = $t->connect_user('flow-bea', 'bea@contoso.example');
sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }
sub as_bea { return $t->as_user('flow-bea', $_[0]); }
sub bea_upsert
{
	my ($e, $id) = @_;
	return as_bea('SELECT m365sync.upsert_event(' . lit(ref $e ? $json->encode($e) : $e) . '::jsonb' . (defined $id ? ", $id" : '') . ')');
}
# Push and pull until nothing is pending (sync() waits out a worker round that holds the account).
sub bea_sync
{
	for (1 .. 300)
	{
		my $r = $t->as_admin("SELECT status FROM m365sync.sync($bea_account)");
		next if $r =~ /^busy/ && usleep(100_000) >= 0;
		last if $node->safe_psql('postgres', "SELECT count(*) FROM m365sync.outbox WHERE account_id = $bea_account AND state = 'pending'") eq '0';
		usleep(100_000);
	}
	$t->as_admin("SELECT status FROM m365sync.sync($bea_account)") for 1 .. 2;
}
sub bea_truth
{
	my ($tz) = @_;
	return $t->sim('GET', "/_sim/users/$bea->{id}/truth?expand=1&idtype=immutable&start=$wstart&end=$wend" . ($tz ? "&tz=$tz" : ''));
}
sub bea_master { my ($subject) = @_; my ($m) = grep { $_->{subject} eq $subject && $_->{type} eq 'seriesMaster' } @{ bea_truth()->{events} }; return $m; }
# "local HH:MI" of each occurrence of a local series, in the given zone, and its UTC instants
sub bea_local
{
	my ($master, $zone) = @_;
	return as_bea("SELECT count(*) || '|' || string_agg(DISTINCT to_char(start_at AT TIME ZONE '$zone', 'HH24:MI'), ',')"
		  . " FROM m365sync.events($range) WHERE series_master_id = $master");
}
sub bea_instants_local
{
	my ($master) = @_;
	return as_bea("SELECT string_agg(to_char(start_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI'), ',' ORDER BY start_at)"
		  . " FROM m365sync.events($range) WHERE series_master_id = $master");
}
sub bea_instants_outlook
{
	my ($subject) = @_;
	my $m = bea_master($subject) or return '';
	return join ',', sort map { substr($_->{start}{dateTime}, 0, 16) }
	  grep { ($_->{seriesMasterId} // '') eq $m->{id} } @{ bea_truth('UTC')->{instances} };
}
my $mon = (grep { wday($_) == 1 } 8 .. 14)[0];
my $pfirst = day($mon);
my $weekly = { type => 'weekly', interval => 1, daysOfWeek => ['monday'] };

# ------------------------------------------------------------------ create, move, end early, delete
my $plan = bea_upsert({ subject => 'Planning', start => { dateTime => "${pfirst}T09:00:00", timeZone => 'Europe/Copenhagen' },
	end => { dateTime => "${pfirst}T09:30:00", timeZone => 'Europe/Copenhagen' },
	recurrence => { pattern => $weekly, range => { type => 'numbered', startDate => $pfirst, numberOfOccurrences => 6 } } });
bea_sync();
my $pm = bea_master('Planning');
ok($pm, 'FlowAgent\'s series reaches Outlook');
is($pm && $pm->{originalStartTimeZone}, 'Romance Standard Time', '... written with the Windows zone name (Europe/Copenhagen → Romance Standard Time)');
is(as_bea("SELECT event_type || ':' || time_zone || ':' || sync_state FROM m365sync.event($plan)"), 'seriesMaster:Europe/Copenhagen:synced',
	'the local master keeps the caller\'s zone name');
is(bea_local($plan, 'Europe/Copenhagen'), '6|09:00', 'its six occurrences come back, linked to the master, at 09:00 Copenhagen time');

bea_upsert({ start => { dateTime => "${pfirst}T10:00:00", timeZone => 'Europe/Copenhagen' },
	end => { dateTime => "${pfirst}T10:30:00", timeZone => 'Europe/Copenhagen' } }, $plan);
bea_sync();
like(bea_master('Planning')->{start}{dateTime}, qr/T10:00:00/, 'FlowAgent moves the series an hour later: Outlook\'s master changes');
is(bea_local($plan, 'Europe/Copenhagen'), '6|10:00', '... and the occurrences come back moved');
is(bea_instants_local($plan), bea_instants_outlook('Planning'), '... at the instants Outlook has');

my $pend = day($mon + 14);
bea_upsert({ recurrence => { pattern => $weekly, range => { type => 'endDate', startDate => $pfirst, endDate => $pend } } }, $plan);
bea_sync();
is(bea_local($plan, 'Europe/Copenhagen'), '3|10:00', 'FlowAgent ends the series early: three occurrences are left');
is(scalar(split /,/, bea_instants_outlook('Planning')), 3, '... in Outlook too');

# one occurrence cancelled, one made an exception (as before the series work: keep them tested)
my @pocc = split /\n/, as_bea("SELECT event_id FROM m365sync.events($range) WHERE series_master_id = $plan ORDER BY start_at");
my %etag = map { split /\|/ } split /\n/, as_bea("SELECT graph_id || '|' || (data->>'\@odata.etag') FROM m365sync.events($range)"
	  . " WHERE event_id IN ($pocc[1], $pocc[2])");
my ($gid1, $gid2) = map { as_bea("SELECT graph_id FROM m365sync.events($range) WHERE event_id = $_") } ($pocc[1], $pocc[2]);
$t->sim_clear_log;
as_bea("SELECT m365sync.delete_event($pocc[1])");
bea_upsert({ subject => 'Planning (budget)' }, $pocc[2]);
bea_sync();
# the occurrence writes, single or in a $batch, with the If-Match they carried
my @ow;
for my $e (@{ $t->sim_log })
{
	if ($e->{path} =~ m{/\$batch$})
	{
		push @ow, map { [ $_->{method}, $_->{url}, $_->{headers}{'If-Match'} // '' ] }
		  grep { $_->{method} =~ /^(PATCH|DELETE)$/ } @{ $json->decode($e->{body})->{requests} };
	}
	elsif ($e->{method} =~ /^(PATCH|DELETE)$/)
	{
		my ($im) = map { $e->{headers}{$_} } grep { lc($_) eq 'if-match' } keys %{ $e->{headers} };
		push @ow, [ $e->{method}, $e->{path}, $im // '' ];
	}
}
sub first_write
{
	my ($method, $gid) = @_;
	my ($w) = grep { $_->[0] eq $method && index($_->[1] =~ s/%3D/=/gr, $gid) >= 0 } @ow;
	return $w ? $w->[2] : 'none';
}
is(first_write('DELETE', $gid1), $etag{$gid1}, 'the DELETE of an occurrence carries If-Match from its \@odata.etag');
# (the PATCH may follow a pull that refreshed the etag: the cancel changed the series)
like(first_write('PATCH', $gid2), qr{^W/"[^"]+"$}, '... and the PATCH of one carries the etag it had then');
my ($pmaster) = grep { $_->{subject} eq 'Planning' } @{ bea_truth()->{events} };
is(scalar @{ $pmaster->{cancelledOccurrences} // [] }, 1, 'delete_event(occurrence) cancels it in Outlook');
is(scalar(grep { ($_->{type} // '') eq 'exception' && $_->{subject} eq 'Planning (budget)' } @{ bea_truth()->{events} }), 1,
	'upsert_event(json, occurrence) makes it an exception');
is(as_bea("SELECT string_agg(event_type || '=' || subject, ',' ORDER BY start_at) FROM m365sync.events($range) WHERE series_master_id = $plan"),
	'occurrence=Planning,exception=Planning (budget)', '... and locally');

as_bea("SELECT m365sync.delete_event($plan)");
bea_sync();
ok(!bea_master('Planning'), 'FlowAgent deletes the series: gone in Outlook');
# (the cancel changed the master's changeKey, so the exception's PATCH in the
# same push met a 412: a listed conflict, whose row stays as a tombstone)
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE account_id = $bea_account AND NOT deleted"
	  . " AND (event_id = $plan OR series_master_id = $plan)"),
	'0', '... and locally, master and occurrences')
  or diag($node->safe_psql('postgres', "SELECT event_id, event_type, sync_state, deleted, graph_id IS NOT NULL FROM m365sync.events"
	  . " WHERE account_id = $bea_account AND (event_id = $plan OR series_master_id = $plan)"));

# ------------------------------------------------------------------ DST, both directions
use Time::Local qw(timegm);
sub last_sunday { my ($y, $m) = @_; my $t = timegm(0, 0, 12, 31, $m - 1, $y); $t -= 86400 while (gmtime $t)[6] != 0; return $t; }
my $year = (gmtime)[5] + 1900;
for my $switch ([ 3, 'spring (clocks forward)' ], [ 10, 'autumn (clocks back)' ])
{
	my ($s) = grep { $_ - 6 * 86400 >= time + 2 * 86400 && $_ + 8 * 86400 <= time + 790 * 86400 }
	  map { last_sunday($_, $switch->[0]) } $year .. $year + 2;
	my @st = gmtime($s - 6 * 86400);
	my $d = sprintf('%04d-%02d-%02d', $st[5] + 1900, $st[4] + 1, $st[3]);
	my $subject = "Weekly across the $switch->[1] switch";
	my $id = bea_upsert({ subject => $subject, start => { dateTime => "${d}T09:00:00", timeZone => 'Romance Standard Time' },
		end => { dateTime => "${d}T09:45:00", timeZone => 'Romance Standard Time' },
		recurrence => { pattern => $weekly, range => { type => 'numbered', startDate => $d, numberOfOccurrences => 3 } } });
	bea_sync();
	is(bea_local($id, 'Europe/Paris'), '3|09:00', "$switch->[1]: every occurrence at 09:00 local time in events()");
	is(as_bea("SELECT count(DISTINCT to_char(start_at AT TIME ZONE 'UTC', 'HH24:MI')) FROM m365sync.events($range) WHERE series_master_id = $id"),
		'2', "$switch->[1]: ... so their UTC times differ by the switch");
	is(bea_instants_local($id), bea_instants_outlook($subject), "$switch->[1]: the same instants in Outlook");
	my $m = bea_master($subject);
	is("$m->{start}{dateTime}|$m->{originalStartTimeZone}", "${d}T09:00:00.0000000|Romance Standard Time",
		"$switch->[1]: what went to Outlook is 09:00 Romance Standard Time");
}

# ------------------------------------------------------------------ zone names on write
my $zd = day(20);
for my $zone ([ 'Europe/Copenhagen', 'Romance Standard Time' ], [ 'America/New_York', 'Eastern Standard Time' ],
	[ 'America/Argentina/Cordoba', 'Argentina Standard Time' ], [ 'W. Europe Standard Time', 'W. Europe Standard Time' ])
{
	my ($name, $win) = @$zone;
	my $single = bea_upsert({ subject => "Single in $name", start => { dateTime => "${zd}T11:00:00", timeZone => $name },
		end => { dateTime => "${zd}T12:00:00", timeZone => $name } });
	my $series = bea_upsert({ subject => "Series in $name", start => { dateTime => "${zd}T13:00:00", timeZone => $name },
		end => { dateTime => "${zd}T13:30:00", timeZone => $name },
		recurrence => { pattern => { type => 'daily', interval => 1 },
			range => { type => 'numbered', startDate => $zd, numberOfOccurrences => 2, recurrenceTimeZone => $name } } });
	bea_sync();
	my %ev = map { $_->{subject} => $_ } @{ bea_truth()->{events} };
	my %utc = map { $_->{subject} => $_ } @{ bea_truth('UTC')->{events} };
	is(join('|', map { $ev{$_} ? $ev{$_}{originalStartTimeZone} : 'missing' } "Single in $name", "Series in $name"), "$win|$win",
		"$name: the event and the series reach Outlook with the Windows name $win");
	is($ev{"Series in $name"} && $ev{"Series in $name"}{recurrence}{range}{recurrenceTimeZone}, $win, "$name: ... also recurrenceTimeZone");
	is(as_bea("SELECT to_char(start_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI') || '|' || sync_state || '|' || time_zone FROM m365sync.event($single)"),
		substr($utc{"Single in $name"}{start}{dateTime}, 0, 16) . "|synced|$name", "$name: at the same instant, synced, the local row keeps $name");
	is(bea_instants_local($series), bea_instants_outlook("Series in $name"), "$name: the series' occurrences at the same instants");
}

# ------------------------------------------------------------------ online meetings
my $teams = bea_upsert({ subject => 'Teams call', isOnlineMeeting => JSON::PP::true, onlineMeetingProvider => 'teamsForBusiness',
	body => { contentType => 'html', content => '<p>Agenda</p>' },
	start => { dateTime => "${zd}T15:00:00", timeZone => 'UTC' }, end => { dateTime => "${zd}T15:30:00", timeZone => 'UTC' } });
bea_sync();
my ($tm) = grep { $_->{subject} eq 'Teams call' } @{ bea_truth()->{events} };
ok($tm && $tm->{isOnlineMeeting} && $tm->{onlineMeetingProvider} eq 'teamsForBusiness', 'a Teams meeting created in FlowAgent is pushed as one');
my $join = $tm->{onlineMeeting}{joinUrl};
is(as_bea("SELECT join_url || '|' || my_response FROM m365sync.event($teams)"), "$join|organizer", 'join_url and my_response are typed columns');
bea_upsert({ body => { contentType => 'html', content => '<p>Agenda, revised</p>' } }, $teams);
bea_sync();
($tm) = grep { $_->{subject} eq 'Teams call' } @{ bea_truth()->{events} };
like($tm->{body}{content}, qr/Agenda, revised/, 'a body edit of an online meeting reaches Outlook');
like($tm->{body}{content}, qr/\Q$join\E/, '... and keeps its join link (isOnlineMeeting went with it)');
my ($rc, $out, $stderr) = $node->psql('postgres', "BEGIN; SET LOCAL m365sync.flowagent_user = 'flow-bea';"
	  . " SELECT m365sync.upsert_event('{\"isOnlineMeeting\": false}'::jsonb, $teams);", extra_params => ['-v', 'VERBOSITY=verbose']);
like($stderr, qr/22023.*isOnlineMeeting cannot be turned off/s, 'turning isOnlineMeeting back to false is refused with a clear error (22023)');

# ------------------------------------------------------------------ series conflicts
my $cd = day($mon + 21);
my $conf_series = bea_upsert({ subject => 'Review', start => { dateTime => "${cd}T08:00:00", timeZone => 'UTC' },
	end => { dateTime => "${cd}T08:30:00", timeZone => 'UTC' },
	recurrence => { pattern => { type => 'daily', interval => 1 }, range => { type => 'numbered', startDate => $cd, numberOfOccurrences => 3 } } });
bea_sync();
my $rm = bea_master('Review');
my @rocc = sort { $a->{start}{dateTime} cmp $b->{start}{dateTime} } grep { ($_->{seriesMasterId} // '') eq $rm->{id} } @{ bea_truth()->{instances} };
# Outlook edits one occurrence while FlowAgent renames the series
$t->sim('PATCH', "/_sim/users/$bea->{id}/events/$rocc[1]{id}", { subject => 'Review (Outlook)' });
bea_upsert({ subject => 'Review (FlowAgent)' }, $conf_series);
bea_sync();
is(bea_master('Review (FlowAgent)') && 1, 1, 'FlowAgent renames the series while Outlook edits one occurrence: the series is renamed');
is(as_bea("SELECT string_agg(subject, ',' ORDER BY start_at) FROM m365sync.events($range) WHERE series_master_id = $conf_series"),
	'Review (FlowAgent),Review (Outlook),Review (FlowAgent)', '... and Outlook\'s exception keeps its edit: nothing lost');
# Outlook deletes the series while FlowAgent edits it
$t->sim('DELETE', "/_sim/users/$bea->{id}/events/$rm->{id}");
bea_upsert({ subject => 'Review (FlowAgent, again)' }, $conf_series);
bea_sync();
my $c = as_bea("SELECT kept || '|' || coalesce(lost->>'subject', '') FROM m365sync.conflicts() WHERE event_id = $conf_series");
ok($c ne '', 'Outlook deletes the series while FlowAgent edits it: a listed conflict');
ok(($c =~ /^local\|/ && bea_master('Review (FlowAgent, again)')) || $c eq 'remote|Review (FlowAgent, again)',
	'... settled by the policy, the losing side kept: nothing lost') or diag($c);

done_testing();
