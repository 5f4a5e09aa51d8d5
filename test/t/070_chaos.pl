# Chaos: the simulator answers a share of all requests (20% by default) with
# a fault, every kind in equal parts (429, 503, 504, 410 on delta requests,
# a connection dropped before or after the request was applied, a slow
# answer, a truncated body, a malformed body), while Outlook (through the
# simulator's control API) and FlowAgent (upsert_event / delete_event, as
# m365sync_app with SET LOCAL m365sync.flowagent_user) edit the same
# calendar at random, and the worker or the postmaster is killed with -9 at
# random instants. Then the faults stop, two clean rounds run, and:
#   - local events (decrypted through events()) equal the simulator's ground
#     truth: subject, start/end, all-day, deletions;
#   - every event carries a unique marker in its body; no marker is held
#     twice on either side (0 duplicated);
#   - every event ends as its last edit left it, or that edit is listed in
#     m365sync.conflicts() (0 lost);
#   - recurring series edited on both sides (created, renamed, moved, ended
#     early, an occurrence cancelled or made an exception, deleted; Outlook
#     sends occurrences as stubs and no @removed for a cancelled one) end
#     with the same occurrences on both sides, each linked to its one local
#     master, and no master without occurrences;
# and the figures are printed. M365_CHAOS_TRIALS kill trials (default 10;
# test/chaos/run runs 100), M365_CHAOS_SEED (fixed default),
# M365_CHAOS_FAULT_RATE (0.2), M365_CHAOS_BUDGET seconds for the trials
# (default 20 per trial; past it no new trial starts and the test fails).
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use Test::More;
use Time::HiRes qw(usleep);

my $trials = $ENV{M365_CHAOS_TRIALS} // 10;
my $seed = $ENV{M365_CHAOS_SEED} // 90210;
my $rate = $ENV{M365_CHAOS_FAULT_RATE} // 0.2;
my $budget = $ENV{M365_CHAOS_BUDGET} // 20 * $trials;
my $policy = $ENV{M365_CHAOS_POLICY} // 'latest_wins';
srand($seed);
my $t0 = Time::HiRes::time();
my $json = JSON::PP->new->canonical;

# A little latency on every answer widens the windows a kill can hit.
my $t = M365Test->new(name => 'chaos', seed => $seed, sim_args => [ '--latency-ms', 20 ], conf => <<"CONF");
m365sync.sync_interval = '1s'
m365sync.http_timeout = '5s'
m365sync.conflict_policy = '$policy'
restart_after_crash = on
CONF
my $node = $t->node;
$t->setup_app;
my $upn = 'chaos@contoso.example';
my $fa_user = 'flow-chaos';
my $mbx = $t->add_sim_user('contoso.example', $upn)->{id};
my $account = $t->connect_user($fa_user, $upn);

# ------------------------------------------------------------ helpers

sub day { my @t = gmtime(time + 86400 * $_[0]); sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]) }
my $day = int(time / 86400) * 86400;
sub iso { my @t = gmtime(shift); sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ', $t[5] + 1900, $t[4] + 1, $t[3], $t[2], $t[1], $t[0]) }
my ($wstart, $wend) = (iso($day - 30 * 86400), iso($day + 365 * 86400));

# A random slot within the next two weeks: timed (UTC) or all-day.
sub slot
{
	my $d = 1 + int(rand(14));
	if (rand() < 0.2)
	{
		my $len = 1 + int(rand(2));
		return (isAllDay => JSON::PP::true,
			start => { dateTime => day($d) . 'T00:00:00', timeZone => 'UTC' },
			end => { dateTime => day($d + $len) . 'T00:00:00', timeZone => 'UTC' });
	}
	my $h = 6 + int(rand(14));
	my $m = (0, 15, 30, 45)[ int(rand(4)) ];
	my $len = (15, 30, 60, 90)[ int(rand(4)) ];
	my $end = $h * 60 + $m + $len;
	return (isAllDay => JSON::PP::false,
		start => { dateTime => sprintf('%sT%02d:%02d:00', day($d), $h, $m), timeZone => 'UTC' },
		end => { dateTime => sprintf('%sT%02d:%02d:00', day($d), int($end / 60), $end % 60), timeZone => 'UTC' });
}

sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }

# Run SQL; returns (ok, stdout, sqlstate). Not ok without a SQLSTATE means
# the server was not there (in crash recovery, restarting).
sub run_sql
{
	my ($sql, %o) = @_;
	my ($out, $err) = ('', '');
	my @extra = ('-v', 'VERBOSITY=verbose');
	push @extra, '-U', $o{role} if $o{role};
	my $ret = $node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		extra_params => \@extra, on_error_stop => 1);
	return (1, $out, '') if $ret == 0 && $err !~ /ERROR|FATAL/;
	return (0, $out, $1, $err) if $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return (0, $out, '', $err);
}

# As the FlowAgent app, in one transaction acting for the user.
sub as_flowagent
{
	my ($sql) = @_;
	return run_sql("BEGIN;\nSET LOCAL m365sync.flowagent_user = " . lit($fa_user) . ";\n$sql;\nCOMMIT;",
		role => 'flowagent');
}

sub wait_server
{
	for (1 .. 600)
	{
		my ($ok) = run_sql('SELECT 1');
		return 1 if $ok;
		usleep(100_000);
	}
	die 'the server did not come back';
}

sub worker_pid
{
	for (1 .. 100)
	{
		my ($ok, $pid) = run_sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'm365sync worker'");
		return $pid if $ok && $pid =~ /^\d+$/;
		usleep(100_000);
	}
	return undef;
}

my $marker_re = qr/chaos marker ((?:FA|OL)-\d+)\b/;
my $series_re = qr/chaos series ((?:SF|SO)-\d+)\b/;

# Outlook's side as the simulator holds it: marker => [events].
sub remote_events
{
	my $tr = $t->sim('GET', "/_sim/users/$mbx/truth?idtype=immutable&tz=UTC&body=text");
	my %by;
	for my $e (@{ $tr->{events} })
	{
		next if ($e->{body}{content} // '') =~ $series_re;	# series: see series_remote
		my ($mk) = (($e->{body}{content} // '') =~ $marker_re);
		$mk //= 'unmarked:' . $e->{id};
		push @{ $by{$mk} }, $e;
	}
	return \%by;
}

# FlowAgent's side through events(): marker => [rows].
my @cols = qw(event_id graph_id subject start end is_all_day start_date end_date sync_state body);
sub local_events
{
	my ($ok, $out, $state, $err) = as_flowagent("SET LOCAL TimeZone = 'UTC';\n"
		  . "SELECT json_agg(json_build_object('event_id', event_id, 'graph_id', graph_id, 'subject', subject,"
		  . " 'start', to_char(start_at, 'YYYY-MM-DD\"T\"HH24:MI:SS'), 'end', to_char(end_at, 'YYYY-MM-DD\"T\"HH24:MI:SS'),"
		  . " 'is_all_day', is_all_day, 'start_date', start_date, 'end_date', end_date, 'sync_state', sync_state,"
		  . " 'body', body)) FROM m365sync.events(now() - interval '30 days', now() + interval '400 days')");
	return undef unless $ok;
	my %by;
	for my $e (@{ $out eq '' ? [] : $json->decode($out) })
	{
		next if ($e->{body} // '') =~ $series_re;	# series: see series_local
		my ($mk) = (($e->{body} // '') =~ $marker_re);
		$mk //= 'unmarked:' . $e->{event_id};
		push @{ $by{$mk} }, $e;
	}
	return \%by;
}


# ------------------------------------------------------------ the model

# marker => { edits => [[side, effect]], gids => {graph ids it had} };
# effect is the unique subject an edit set, or 'DELETED'.
my %model;
my ($n_fa, $n_ol) = (0, 0);
my %edits = (FA => {}, OL => {}, both => 0, expired => 0);
my %refused;
my $edit_no = 0;

sub record_edit
{
	my ($mk, $side, $op, $effect) = @_;
	push @{ $model{$mk}{edits} }, [ $side, $effect, sprintf('%.3f', Time::HiRes::time()), $op ];
	$edits{$side}{$op}++;
}

sub fa_create
{
	my $mk = 'FA-' . ++$n_fa;
	my $subject = "$mk e" . ++$edit_no;
	my %e = (subject => $subject, body => { contentType => 'text', content => "chaos marker $mk" }, slot());
	my ($ok, $out, $state, $err) = as_flowagent('SELECT m365sync.upsert_event(' . lit($json->encode(\%e)) . '::jsonb)');
	if ($ok)
	{
		record_edit($mk, 'FA', 'create', $subject);
	}
	else { $refused{"FA create " . ($state || 'no server')}++; }
}

sub fa_update_or_delete
{
	my ($delete) = @_;
	my $loc = local_events() or return;
	my @mks = grep { !/^unmarked/ } sort keys %$loc;
	return fa_create() unless @mks;
	my $mk = $mks[ int(rand(@mks)) ];
	my $id = $loc->{$mk}[0]{event_id};
	if ($delete)
	{
		my ($ok, $out, $state) = as_flowagent("SELECT m365sync.delete_event($id)");
		if ($ok) { record_edit($mk, 'FA', 'delete', 'DELETED'); }
		else { $refused{"FA delete " . ($state || 'no server')}++; }
		return;
	}
	my $subject = "$mk e" . ++$edit_no;
	my %e = (subject => $subject, rand() < 0.4 ? slot() : ());
	my ($ok, $out, $state) = as_flowagent('SELECT m365sync.upsert_event(' . lit($json->encode(\%e)) . "::jsonb, $id)");
	if ($ok) { record_edit($mk, 'FA', 'update', $subject); }
	else { $refused{"FA update " . ($state || 'no server')}++; }
}

sub ol_create
{
	my $mk = 'OL-' . ++$n_ol;
	my $subject = "$mk e" . ++$edit_no;
	my $r = $t->sim('POST', "/_sim/users/$mbx/events",
		{ subject => $subject, body => { contentType => 'text', content => "chaos marker $mk" }, slot() });
	record_edit($mk, 'OL', 'create', $subject);
	$model{$mk}{gids}{ $r->{immutable_id} // $r->{id} } = 1;
}

sub ol_update_or_delete
{
	my ($delete) = @_;
	my $rem = remote_events();
	my @mks = grep { !/^unmarked/ } sort keys %$rem;
	return ol_create() unless @mks;
	my $mk = $mks[ int(rand(@mks)) ];
	my $gid = $rem->{$mk}[0]{id};
	$model{$mk}{gids}{$gid} = 1;
	if ($delete)
	{
		$t->sim('DELETE', "/_sim/users/$mbx/events/$gid");
		record_edit($mk, 'OL', 'delete', 'DELETED');
		return;
	}
	my $subject = "$mk e" . ++$edit_no;
	my $r = $t->sim('PATCH', "/_sim/users/$mbx/events/$gid", { subject => $subject, rand() < 0.4 ? slot() : () });
	if (ref $r eq 'HASH' && !$r->{error}) { record_edit($mk, 'OL', 'update', $subject); }
	else { $refused{'OL update'}++; }
}

# The same event edited on both sides before either change syncs: a
# conflict for the policy to settle (or two edits the pull sees in order).
sub both_sides
{
	my $rem = remote_events();
	my $loc = local_events() or return;
	my @mks = grep { !/^unmarked/ && $loc->{$_} } sort keys %$rem;
	return unless @mks;
	my $mk = $mks[ int(rand(@mks)) ];
	my ($gid, $id) = ($rem->{$mk}[0]{id}, $loc->{$mk}[0]{event_id});
	$model{$mk}{gids}{$gid} = 1;
	my @steps = (
		sub {
			if (rand() < 0.2)
			{
				$t->sim('DELETE', "/_sim/users/$mbx/events/$gid");
				record_edit($mk, 'OL', 'delete', 'DELETED');
				return;
			}
			my $subject = "$mk e" . ++$edit_no;
			my $r = $t->sim('PATCH', "/_sim/users/$mbx/events/$gid", { subject => $subject, rand() < 0.3 ? slot() : () });
			if (ref $r eq 'HASH' && !$r->{error}) { record_edit($mk, 'OL', 'update', $subject); }
			else { $refused{'OL update'}++; }
		},
		sub {
			my ($ok, $out, $state);
			if (rand() < 0.2)
			{
				($ok, $out, $state) = as_flowagent("SELECT m365sync.delete_event($id)");
				if ($ok) { record_edit($mk, 'FA', 'delete', 'DELETED'); }
				else { $refused{'FA delete ' . ($state || 'no server')}++; }
				return;
			}
			my $subject = "$mk e" . ++$edit_no;
			($ok, $out, $state) = as_flowagent('SELECT m365sync.upsert_event('
				  . lit($json->encode({ subject => $subject, rand() < 0.3 ? slot() : () })) . "::jsonb, $id)");
			if ($ok) { record_edit($mk, 'FA', 'update', $subject); }
			else { $refused{'FA update ' . ($state || 'no server')}++; }
		});
	@steps = reverse @steps if rand() < 0.5;
	$_->() for @steps;
	$edits{both}++;
}

# Several FlowAgent creates in one transaction: pushed together ($batch).
sub fa_burst
{
	my $n = 2 + int(rand(6));
	my (@sql, @made);
	for (1 .. $n)
	{
		my $mk = 'FA-' . ++$n_fa;
		my $subject = "$mk e" . ++$edit_no;
		my %e = (subject => $subject, body => { contentType => 'text', content => "chaos marker $mk" }, slot());
		push @sql, 'SELECT m365sync.upsert_event(' . lit($json->encode(\%e)) . '::jsonb)';
		push @made, [ $mk, $subject ];
	}
	my ($ok, $out, $state) = as_flowagent(join(";\n", @sql));
	if ($ok) { record_edit($_->[0], 'FA', 'create', $_->[1]) for @made; }
	else { $refused{'FA burst ' . ($state || 'no server')}++; }
}

# ------------------------------------------------------------ series

# Outlook's occurrences of every chaos series (calendarView of the window): marker => [instances].
sub series_remote
{
	my $tr = $t->sim('GET', "/_sim/users/$mbx/truth?expand=1&idtype=immutable&tz=UTC&body=text&start=$wstart&end=$wend");
	my (%by, %masters);
	for my $e (@{ $tr->{instances} })
	{
		my ($mk) = (($e->{body}{content} // '') =~ $series_re) or next;
		push @{ $by{$mk} }, $e;
	}
	for my $e (@{ $tr->{events} })
	{
		my ($mk) = (($e->{body}{content} // '') =~ $series_re) or next;
		$masters{$mk} = $e if ($e->{type} // '') eq 'seriesMaster';
	}
	return (\%by, \%masters);
}
# FlowAgent's occurrences of every chaos series, through events(): marker => [rows].
sub series_local
{
	my ($ok, $out) = as_flowagent("SET LOCAL TimeZone = 'UTC';\n"
		  . "SELECT json_agg(json_build_object('event_id', event_id, 'graph_id', graph_id, 'subject', subject,"
		  . " 'start', to_char(start_at, 'YYYY-MM-DD\"T\"HH24:MI:SS'), 'end', to_char(end_at, 'YYYY-MM-DD\"T\"HH24:MI:SS'),"
		  . " 'master', series_master_id, 'type', event_type, 'body', body))"
		  . " FROM m365sync.events(now() - interval '30 days', now() + interval '400 days')");
	return undef unless $ok;
	my %by;
	for my $e (@{ $out eq '' ? [] : $json->decode($out) })
	{
		my ($mk) = (($e->{body} // '') =~ $series_re) or next;
		push @{ $by{$mk} }, $e;
	}
	return \%by;
}
my ($n_sf, $n_so) = (0, 0);
my %series_edits;
sub series_body
{
	my ($mk, $d, $h, $n) = @_;
	return { subject => "$mk s" . ++$edit_no, body => { contentType => 'text', content => "chaos series $mk" },
		start => { dateTime => sprintf('%sT%02d:00:00', $d, $h), timeZone => 'UTC' },
		end => { dateTime => sprintf('%sT%02d:30:00', $d, $h), timeZone => 'UTC' },
		recurrence => { pattern => { type => 'daily', interval => 1 },
			range => { type => 'numbered', startDate => $d, numberOfOccurrences => $n } } };
}
sub series_create
{
	my ($fa) = @_;
	my $d = day(1 + int(rand(14)));
	my $h = 6 + int(rand(12));
	if ($fa)
	{
		my $b = series_body('SF-' . ++$n_sf, $d, $h, 3 + int(rand(3)));
		my ($ok, undef, $state) = as_flowagent('SELECT m365sync.upsert_event(' . lit($json->encode($b)) . '::jsonb)');
		$ok ? $series_edits{'FA create'}++ : $refused{'FA series create ' . ($state || 'no server')}++;
	}
	else
	{
		$t->sim('POST', "/_sim/users/$mbx/events", series_body('SO-' . ++$n_so, $d, $h, 3 + int(rand(3))));
		$series_edits{'OL create'}++;
	}
}
# An edit of a series from one side: the whole series (rename, move an hour,
# end early, delete) or one occurrence (cancel, make an exception).
sub series_edit
{
	my ($fa) = @_;
	my ($rem, $rmasters) = series_remote();
	my $loc = series_local() or return;
	my @mks = grep { $fa ? $loc->{$_} : $rmasters->{$_} } sort(keys %$rem, keys %$loc);
	return series_create($fa) unless @mks;
	my $mk = $mks[ int(rand(@mks)) ];
	my $x = rand();
	my $subject = "$mk s" . ++$edit_no;
	if ($fa)
	{
		my @occ = @{ $loc->{$mk} };
		my $master = $occ[0]{master} or return;
		my $occ = $occ[ int(rand(@occ)) ]{event_id};
		my ($sql, $what);
		if ($x < 0.3) { ($sql, $what) = ("SELECT m365sync.upsert_event(" . lit($json->encode({ subject => $subject })) . "::jsonb, $master)", 'rename'); }
		elsif ($x < 0.45)
		{
			my ($ok, $m) = as_flowagent("SET LOCAL TimeZone = 'UTC'; SELECT json_build_object('s', to_char(start_at + interval '1 hour', 'YYYY-MM-DD\"T\"HH24:MI:SS'),"
				  . " 'e', to_char(end_at + interval '1 hour', 'YYYY-MM-DD\"T\"HH24:MI:SS')) FROM m365sync.event($master)");
			return unless $ok && $m;
			$m = $json->decode($m);
			($sql, $what) = ("SELECT m365sync.upsert_event(" . lit($json->encode({ start => { dateTime => $m->{s}, timeZone => 'UTC' },
				end => { dateTime => $m->{e}, timeZone => 'UTC' } })) . "::jsonb, $master)", 'move');
		}
		elsif ($x < 0.55)
		{
			my ($ok, $r) = as_flowagent("SELECT recurrence FROM m365sync.event($master)");
			return unless $ok && $r;
			$r = $json->decode($r);
			return unless ($r->{range}{numberOfOccurrences} // 0) > 1;
			$r->{range}{numberOfOccurrences}--;
			($sql, $what) = ("SELECT m365sync.upsert_event(" . lit($json->encode({ recurrence => $r })) . "::jsonb, $master)", 'end early');
		}
		elsif ($x < 0.62) { ($sql, $what) = ("SELECT m365sync.delete_event($master)", 'delete'); }
		elsif ($x < 0.8) { ($sql, $what) = ("SELECT m365sync.delete_event($occ)", 'cancel one'); }
		else { ($sql, $what) = ("SELECT m365sync.upsert_event(" . lit($json->encode({ subject => $subject })) . "::jsonb, $occ)", 'exception'); }
		my ($ok, undef, $state) = as_flowagent($sql);
		$ok ? $series_edits{"FA $what"}++ : $refused{"FA series $what " . ($state || 'no server')}++;
		return;
	}
	my $mid = $rmasters->{$mk}{id};
	my @occ = @{ $rem->{$mk} || [] };
	my $oid = @occ ? $occ[ int(rand(@occ)) ]{id} : undef;
	my ($what, $r);
	if ($x < 0.3) { $r = $t->sim('PATCH', "/_sim/users/$mbx/events/$mid", { subject => $subject }); $what = 'rename'; }
	elsif ($x < 0.45)
	{
		my $m = $rmasters->{$mk};
		my ($d, $h) = ($m->{start}{dateTime} =~ /^(\d{4}-\d\d-\d\d)T(\d\d)/);
		my $h2 = ($h + 1) % 20;
		$r = $t->sim('PATCH', "/_sim/users/$mbx/events/$mid", { start => { dateTime => sprintf('%sT%02d:00:00', $d, $h2), timeZone => 'UTC' },
			end => { dateTime => sprintf('%sT%02d:30:00', $d, $h2), timeZone => 'UTC' } });
		$what = 'move';
	}
	elsif ($x < 0.55)
	{
		my $rec = $rmasters->{$mk}{recurrence};
		return unless ($rec->{range}{numberOfOccurrences} // 0) > 1;
		$rec->{range}{numberOfOccurrences}--;
		$r = $t->sim('PATCH', "/_sim/users/$mbx/events/$mid", { recurrence => $rec });
		$what = 'end early';
	}
	elsif ($x < 0.62) { $t->sim('DELETE', "/_sim/users/$mbx/events/$mid"); $what = 'delete'; }
	elsif ($oid && $x < 0.8) { $t->sim('DELETE', "/_sim/users/$mbx/events/$oid"); $what = 'cancel one'; }
	elsif ($oid) { $r = $t->sim('PATCH', "/_sim/users/$mbx/events/$oid", { subject => $subject }); $what = 'exception'; }
	else { return; }
	if (ref $r eq 'HASH' && $r->{error}) { $refused{"OL series $what"}++; return; }
	$series_edits{"OL $what"}++;
}

sub random_edit
{
	my $x = rand();
	my $fa = rand() < 0.5;
	if ($x < 0.25) { $fa ? fa_create() : ol_create(); }
	elsif ($x < 0.6) { $fa ? fa_update_or_delete(0) : ol_update_or_delete(0); }
	elsif ($x < 0.75) { $fa ? fa_update_or_delete(1) : ol_update_or_delete(1); }
	elsif ($x < 0.9) { both_sides(); }
	else { fa_burst(); }
	# and a series edit now and then, from either side
	series_edit(rand() < 0.5) if rand() < 0.35;
}

# ------------------------------------------------------------ the run

# A calendar to start with, synced before the faults begin.
# Small delta pages, so that rounds span several pages and transactions.
$t->sim('POST', '/_sim/config', { max_page_size => 5 });
ol_create() for 1 .. 40;
fa_create() for 1 .. 10;
series_create(0) for 1 .. 3;
series_create(1) for 1 .. 2;
ok($node->poll_query_until('postgres',
	"SELECT (SELECT count(*) FROM m365sync.events WHERE account_id = $account AND graph_id IS NOT NULL"
	  . " AND event_type IN ('singleInstance')) = 50"
	  . " AND (SELECT count(*) FROM m365sync.events WHERE account_id = $account AND event_type = 'seriesMaster' AND graph_id IS NOT NULL) = 5"),
	'the starting calendar (50 events, 5 series) is synced both ways');

# Faults: one rule per kind, each taking an equal share of the requests it
# can match (rules are tried in order, so rule i gets q / (1 - (i-1) q)).
# 410 only answers delta requests: Graph says "gone" of a delta token, not
# of an event. 'drop' is split: before the request is applied, and after.
my @kinds = ([ '429' ], [ '503' ], [ '504' ], [ 'drop' ], [ 'drop', after => JSON::PP::true ],
	[ 'slow', delay_ms => 1500 ], [ 'truncated' ], [ 'malformed' ]);
sub faults_on
{
	my $q = $rate / (@kinds + 1);
	$t->sim('POST', '/_sim/faults', { route => '/calendarView/delta$', kind => '410', probability => $q });
	my $i = 0;
	for my $k (@kinds)
	{
		my ($kind, %extra) = @$k;
		$t->sim('POST', '/_sim/faults', { route => '^/(v1\.0|[^_][^/]*/oauth2)/', kind => $kind,
			probability => $q / (1 - $i * $q), %extra });
		$i++;
	}
}
faults_on();

my %kills = (worker => 0, postmaster => 0);
my $done = 0;
for my $trial (1 .. $trials)
{
	if (Time::HiRes::time() - $t0 > $budget)
	{
		diag("time budget of ${budget}s spent after $done trials");
		last;
	}
	wait_server();
	random_edit() for 1 .. 1 + int(rand(6));
	# now and then Graph forgets the delta tokens: a full resync (sweep)
	if (rand() < 0.15)
	{
		$t->sim('POST', '/_sim/delta/expire', { upn => $upn });
		$edits{expired}++;
	}
	usleep(int(rand(2_500_000)));
	if (rand() < 1 / 3)
	{
		$t->kill9_postmaster_and_restart;
		$kills{postmaster}++;
	}
	else
	{
		my $pid = worker_pid();
		die 'no worker running' unless $pid;
		kill 'KILL', $pid;
		$kills{worker}++;
	}
	$done++;
}
is($done, $trials, "$trials kill trials within the time budget");

# ------------------------------------------------------------ settle

my $fault_stats = $t->sim('GET', '/_sim/faults')->{value};
my $stats = $t->sim('GET', '/_sim/stats');
$t->sim('DELETE', '/_sim/faults');
wait_server();

# Settle: the worker goes on meanwhile; pushes that failed during the chaos
# wait out their backoff. Then two clean rounds in a row: sync() ok with
# nothing left in the outbox (busy: the worker has the account just now).
my $settle_t0 = Time::HiRes::time();
my ($clean, $rounds) = (0, 0);
my $settle_deadline = time + ($ENV{M365_CHAOS_SETTLE} // 180);
while ($clean < 2 && time < $settle_deadline)
{
	my ($ok, $out) = run_sql("SELECT status || '|' || coalesce(error, '') || '|' || (SELECT count(*) FROM m365sync.outbox"
		  . " WHERE account_id = $account AND state = 'pending') FROM m365sync.sync($account)");
	$rounds++;
	if ($ok && $out =~ /^ok\|\|0$/) { $clean++; next; }
	$clean = 0;
	diag("settling round: " . ($out || 'no server')) unless $ok && $out =~ /^(busy|ok)\|/;
	usleep(500_000);
}
my $settle_s = Time::HiRes::time() - $settle_t0;
is($clean, 2, 'two clean rounds after the faults stop');

# ------------------------------------------------------------ verdict

my $rem = remote_events();
my $loc = local_events();
my ($ok_c, $conf_out) = as_flowagent("SELECT coalesce(json_agg(json_build_object('event_id', event_id, 'kept', kept,"
	  . " 'policy', policy, 'lost', lost)), '[]') FROM m365sync.conflicts()");
my $conflicts = $json->decode($conf_out);
my %gid2mk;
for my $mk (keys %model) { $gid2mk{$_} = $mk for keys %{ $model{$mk}{gids} || {} }; }
for my $mk (keys %$rem) { $gid2mk{ $_->{id} } = $mk for @{ $rem->{$mk} }; }
my %listed;	# marker => [lost effects]
for my $c (@$conflicts)
{
	my $lost = $c->{lost};
	my ($mk) = (($lost->{body}{content} // '') =~ $marker_re);
	$mk //= ($lost->{subject} // '') =~ /^((?:FA|OL)-\d+) / ? $1 : undef;
	$mk //= $gid2mk{ $lost->{id} // '' };
	$mk //= 'unknown';
	push @{ $listed{$mk} }, exists $lost->{'@removed'} ? 'DELETED' : ($lost->{subject} // '');
}

my ($lost, $dup, $mismatch, $invented) = (0, 0, 0, 0);
my @why;
sub remote_shape
{
	my ($e) = @_;
	my $ad = $e->{isAllDay} ? 1 : 0;
	my ($s, $en) = map { substr($_->{dateTime}, 0, 19) } ($e->{start}, $e->{end});
	return $ad ? "$e->{subject}|allday|" . substr($s, 0, 10) . '|' . substr($en, 0, 10) : "$e->{subject}|$s|$en";
}
sub local_shape
{
	my ($e) = @_;
	return $e->{is_all_day} ? "$e->{subject}|allday|$e->{start_date}|$e->{end_date}" : "$e->{subject}|$e->{start}|$e->{end}";
}
my %all = map { $_ => 1 } (keys %$rem, keys %$loc, keys %model);
for my $mk (sort keys %all)
{
	my @r = @{ $rem->{$mk} || [] };
	my @l = @{ $loc->{$mk} || [] };
	if (@r > 1 || @l > 1)
	{
		$dup += (@r > 1 ? @r - 1 : 0) + (@l > 1 ? @l - 1 : 0);
		push @why, "$mk: " . scalar(@r) . " in Outlook, " . scalar(@l) . " in FlowAgent";
	}
	# local = ground truth
	my $rs = @r ? remote_shape($r[0]) . '|' . $r[0]{id} : 'absent';
	my $ls = @l ? local_shape($l[0]) . '|' . ($l[0]{graph_id} // 'no graph id') : 'absent';
	if ($rs ne $ls)
	{
		$mismatch++;
		push @why, "$mk: Outlook $rs, FlowAgent $ls";
	}
	next unless $model{$mk};
	# every event as its last edit left it, or that edit listed
	my @e = @{ $model{$mk}{edits} };
	my $final = @r ? $r[0]{subject} : 'DELETED';
	my $last = $e[-1][1];
	if (!grep { $_->[1] eq $final } @e)
	{
		$invented++;
		push @why, "$mk: Outlook shows '$final', which no edit made";
	}
	next if $final eq $last;
	next if grep { $_ eq $last } @{ $listed{$mk} || [] };
	$lost++;
	push @why, "$mk: last edit ($e[-1][0]) '$last' lost: Outlook has '$final', conflicts list "
	  . join(',', @{ $listed{$mk} || [] });
}


# series: the same occurrences on both sides, each linked to one local master, no orphan master
my ($srem, $smasters) = series_remote();
my $sloc = series_local();
my ($s_mismatch, $s_unlinked, $s_masters) = (0, 0, 0);
my %sall = map { $_ => 1 } (keys %$srem, keys %$sloc);
for my $mk (sort keys %sall)
{
	my $r = join ',', sort map { "$_->{subject}|" . substr($_->{start}{dateTime}, 0, 19) . '|' . substr($_->{end}{dateTime}, 0, 19) . "|$_->{id}" }
	  @{ $srem->{$mk} || [] };
	my $l = join ',', sort map { "$_->{subject}|$_->{start}|$_->{end}|" . ($_->{graph_id} // 'no graph id') } @{ $sloc->{$mk} || [] };
	if ($r ne $l)
	{
		$s_mismatch++;
		push @why, "series $mk: Outlook [$r], FlowAgent [$l]";
	}
	my %m = map { ($_->{master} // 'none') => 1 } @{ $sloc->{$mk} || [] };
	if (@{ $sloc->{$mk} || [] } && (keys(%m) != 1 || $m{none}))
	{
		$s_unlinked++;
		push @why, "series $mk: occurrences linked to " . join(',', sort keys %m);
	}
}
my ($orphans) = (run_sql("SELECT count(*) FROM m365sync.events m WHERE account_id = $account AND event_type = 'seriesMaster'"
	  . " AND NOT deleted AND NOT EXISTS (SELECT 1 FROM m365sync.events o WHERE o.account_id = m.account_id"
	  . " AND o.series_master_id = m.event_id AND NOT o.deleted)"))[1];
diag('chaos: series edits ' . (join(', ', map { "$_ $series_edits{$_}" } sort keys %series_edits) || 'none')
	  . sprintf('; %d series in Outlook, %d in FlowAgent; differing %d, unlinked %d, masters without occurrences %s',
		scalar(keys %$smasters), scalar(keys %$sloc), $s_mismatch, $s_unlinked, $orphans // '?'));

my ($pending_out) = (run_sql("SELECT count(*) FILTER (WHERE state = 'pending') || ' pending, '"
	  . " || count(*) FILTER (WHERE state = 'failed') || ' failed' FROM m365sync.outbox WHERE account_id = $account"))[1];
my %by_kind;
$by_kind{ $_->{kind} } += $_->{hits} for @$fault_stats;
my $runtime = Time::HiRes::time() - $t0;
diag(sprintf("chaos: seed %s, policy %s, fault rate %.0f%%, %d trials (kills: %d worker, %d postmaster)",
	$seed, $policy, 100 * $rate, $done, $kills{worker}, $kills{postmaster}));
diag(sprintf("chaos: %d Graph and identity requests, %d faults injected (%s)", $stats->{requests}, $stats->{faults},
	join(', ', map { "$_ $by_kind{$_}" } sort keys %by_kind)));
sub edit_figures
{
	my ($side) = @_;
	my $n = 0;
	$n += $_ for values %{ $edits{$side} };
	return "$n (" . join(', ', map { "$_ $edits{$side}{$_}" } sort keys %{ $edits{$side} }) . ')';
}
diag('chaos: edits FlowAgent ' . edit_figures('FA') . ', Outlook ' . edit_figures('OL')
	  . ', the same event on both sides ' . $edits{both} . ' times; delta tokens expired ' . $edits{expired}
	  . ' times; refused: '
	  . (join(', ', map { "$_ $refused{$_}" } sort keys %refused) || 'none'));
diag(sprintf("chaos: %d events in Outlook, %d in FlowAgent; lost %d, duplicated %d, differing %d, invented %d;"
	  . " conflicts listed %d; outbox %s; settled in %.1fs (%d sync() calls); runtime %.0fs",
	scalar(map { @$_ } values %$rem), scalar(map { @$_ } values %$loc), $lost, $dup, $mismatch, $invented,
	scalar(@$conflicts), $pending_out, $settle_s, $rounds, $runtime));
diag($_) for @why[0 .. ($#why < 19 ? $#why : 19)];
if (@why)
{
	# For the post-mortem: the model's edits and the simulator's request log.
	my $dir = $PostgreSQL::Test::Utils::tmp_check;
	open my $fh, '>', "$dir/chaos_model.json" or die $!;
	print $fh JSON::PP->new->canonical->pretty->encode({ model => \%model, conflicts => $conflicts });
	close $fh;
	open $fh, '>', "$dir/chaos_sim_log.json" or die $!;
	print $fh JSON::PP->new->canonical->encode($t->sim('GET', '/_sim/log'));
	close $fh;
	diag("model and simulator log in $dir");
}

is($mismatch, 0, 'local events equal the ground truth (subject, start/end, all-day, deletions)');
is($dup, 0, '0 duplicated: every marker held at most once on each side');
is($lost, 0, '0 lost: every event as its last edit left it, or that edit listed in conflicts()');
is($invented, 0, 'no state that no edit made');
is($s_mismatch, 0, 'series: the same occurrences (subject, start, end, id) in FlowAgent as in Outlook');
is($s_unlinked, 0, 'series: every local occurrence linked to its one master');
is($orphans, '0', 'series: no master left without occurrences');
ok($stats->{faults} > 0, 'faults were injected');
is((run_sql("SELECT count(*) FROM m365sync.events WHERE account_id = $account AND graph_id IS NOT NULL"
	  . " GROUP BY graph_id HAVING count(*) > 1"))[1], '', 'no graph id twice in the table');

done_testing();
