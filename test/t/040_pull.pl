# Pull: Outlook's changes reach FlowAgent through m365sync.sync() and the
# worker, with stable event_ids, surviving lost cursors and faults.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use Test::More;
use Time::HiRes qw(sleep);

my $t = M365Test->new(name => 'pull', conf => "m365sync.sync_interval = '1h'\n");
$t->setup_app;
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');
like($account, qr/^\d+$/, 'ada is connected');

my @d = map { my @t = gmtime(time + 86400 * $_); sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]) } 1 .. 4;
sub outlook { my ($m, $p, $b) = @_; return $t->sim($m, "/_sim/users/$ada->{id}$p", $b); }
my $board = outlook('POST', '/events', { subject => 'Board meeting',
	start => { dateTime => "$d[0]T09:00:00", timeZone => 'Romance Standard Time' },
	end => { dateTime => "$d[0]T10:30:00", timeZone => 'Romance Standard Time' } });
outlook('POST', '/events', { subject => 'Holiday', isAllDay => JSON::PP::true,
	start => { dateTime => "$d[1]T00:00:00", timeZone => 'UTC' },
	end => { dateTime => "$d[2]T00:00:00", timeZone => 'UTC' } });
outlook('POST', '/events', { subject => 'Stand-up',
	start => { dateTime => "$d[0]T08:00:00", timeZone => 'UTC' },
	end => { dateTime => "$d[0]T08:15:00", timeZone => 'UTC' },
	recurrence => { pattern => { type => 'daily', interval => 1 },
		range => { type => 'numbered', startDate => $d[0], numberOfOccurrences => 3 } } });

sub sync_now
{
	return $t->as_admin("SELECT status || ':' || fetched || ':' || applied || ':' || deleted"
		  . " FROM m365sync.sync($account)");
}
sub events
{
	return $t->as_user('flow-ada', "SELECT string_agg(event_id || '=' || subject || '\@' ||"
		  . " coalesce(start_date::text, to_char(start_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')), ',' ORDER BY start_at, event_id)"
		  . " FROM m365sync.events(now() - interval '1 day', now() + interval '10 days')");
}

# The worker syncs a new account at once, perhaps before the events above
# existed; sync() then brings the rest (or finds the worker's round busy).
sync_now();
ok($t->node->poll_query_until('postgres', "SELECT count(*) = 5 FROM m365sync.events WHERE account_id = $account AND event_type <> 'seriesMaster'")
	  || (sync_now() && $t->node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE account_id = $account AND event_type <> 'seriesMaster'") eq '5'),
	'the first rounds bring 5 events (1 + all-day + 3 occurrences)');
# (the master of the series is a sixth row, not listed by events())
my $first = events();
like($first, qr/=Board meeting\@$d[0] 08:00/, 'Romance Standard Time 09:00 lands at 08:00 UTC in winter or 07:00 in summer')
  or like($first, qr/=Board meeting\@$d[0] 07:00/);
like($first, qr/=Holiday\@$d[1]/, 'the all-day event keeps its date');
is(() = $first =~ /Stand-up/g, 3, 'three occurrences of the series');
# calendarView/delta sends the occurrences as stubs and never the master: the
# pull fetched it, stored it, and linked the occurrences to it (053 has the rest).
is($t->as_user('flow-ada', "SELECT count(DISTINCT series_master_id) || ':' || count(*) FILTER (WHERE event_type = 'seriesMaster')"
	  . " FROM m365sync.events(now() - interval '1 day', now() + interval '10 days') WHERE event_type IN ('occurrence', 'seriesMaster')"),
	'1:0', 'the occurrences are linked to their fetched master, which events() does not list beside them');

like(sync_now(), qr/^ok:\d+:0:0$/, 'a second sync applies nothing (idempotent)');
is(events(), $first, 'and changes nothing');

# A change outside the window: the poll's answer is empty, with a new
# deltaLink. Nothing to commit with it, so the link is saved as the round
# ends (with the others of its wave); it must be saved all the same.
my $link_sql = "SELECT string_agg(m365sync._decrypt_text('calendars', 'delta_link', account_id, calendar_id, delta_link), ',')"
  . " FROM m365sync.calendars WHERE account_id = $account AND sync_enabled";
my $link_before = $t->node->safe_psql('postgres', $link_sql);
outlook('POST', '/events', { subject => 'Far ahead',
	start => { dateTime => '2040-01-02T09:00:00', timeZone => 'UTC' },
	end => { dateTime => '2040-01-02T10:00:00', timeZone => 'UTC' } });
like(sync_now(), qr/^ok:\d+:0:0$/, 'a change outside the window applies nothing');
my $link_after = $t->node->safe_psql('postgres', $link_sql);
isnt($link_after, $link_before, 'and the empty answer\'s new deltaLink is saved');
like(sync_now(), qr/^ok:\d+:0:0$/, 'the next poll from it applies nothing either');
is(events(), $first, 'and changes nothing');

# Outlook edits: rename and move; the event keeps its event_id.
my ($board_id) = $first =~ /(\d+)=Board meeting/;
outlook('PATCH', "/events/$board->{id}", { subject => 'Board meeting (moved)',
	start => { dateTime => "$d[0]T13:00:00", timeZone => 'UTC' },
	end => { dateTime => "$d[0]T14:00:00", timeZone => 'UTC' } });
like(sync_now(), qr/^ok:1:1:0$/, 'an Outlook edit is one change');
like(events(), qr/\b$board_id=Board meeting \(moved\)\@$d[0] 13:00/, 'renamed and moved, same event_id');

# A lost cursor: a full round that keeps event_ids and drops nothing.
$t->sim('POST', '/_sim/delta/expire', { upn => 'ada@contoso.example' });
like(sync_now(), qr/^ok:5:0:0$/, 'after 410 the full round fetches all and changes nothing');
is(events(), events(), 'stable');
like(events(), qr/\b$board_id=Board meeting \(moved\)/, 'event_ids survive a resync');

# Delete in Outlook.
outlook('DELETE', "/events/$board->{id}");
like(sync_now(), qr/^ok:1:0:1$/, 'an Outlook delete removes the event');
unlike(events(), qr/Board meeting/, 'gone locally');

# Faults: a throttled round fails cleanly, the next succeeds.
$t->sim('POST', '/_sim/faults', { route => 'calendarView/delta', kind => '429', retry_after => '0.5', count => 1 });
like($t->as_admin("SELECT status || ':' || error FROM m365sync.sync($account)"), qr/^error:/, '429 fails the round');
outlook('POST', '/events', { subject => 'After throttling',
	start => { dateTime => "$d[3]T10:00:00", timeZone => 'UTC' },
	end => { dateTime => "$d[3]T11:00:00", timeZone => 'UTC' } });
$t->sim('POST', '/_sim/faults', { route => 'calendarView/delta', kind => 'malformed', count => 1 });
like($t->as_admin("SELECT status || ':' || error FROM m365sync.sync($account)"), qr/^error:malformedResponse/, 'a malformed page fails the round');
unlike(events(), qr/After throttling/, 'nothing of the failed round was applied');
like(sync_now(), qr/^ok:1:1:0$/, 'the next round succeeds');
like(events(), qr/After throttling/, 'and brings the change');

# NOTIFY m365sync carries no payload (issue 23: any role may LISTEN): a role
# with no grants at all hears that something changed, never for whom; the
# app asks changes_since() acting for its user.
$t->node->safe_psql('postgres', 'CREATE ROLE nobody LOGIN');
my $listener = $t->node->background_psql('postgres', extra_params => [ '-U', 'nobody' ]);
$listener->query_safe('LISTEN m365sync');
my $seen = $t->as_user('flow-ada', 'SELECT coalesce(max(change), 0) FROM m365sync.changes_since()');
outlook('POST', '/events', { subject => 'Notify me',
	start => { dateTime => "$d[3]T12:00:00", timeZone => 'UTC' },
	end => { dateTime => "$d[3]T13:00:00", timeZone => 'UTC' } });
like(sync_now(), qr/^ok:1:1:0$/, 'a round applies one change');
my $heard = '';
for (1 .. 100)
{
	$heard .= $listener->query_safe('SELECT 1');
	last if $heard =~ /Asynchronous notification/;
	sleep 0.2 if $_ > 1;
}
like($heard, qr/Asynchronous notification "m365sync" received from server process with PID \d+\./,
	'a role with no grants that LISTENs hears NOTIFY m365sync');
unlike($heard, qr/with payload/, 'with no payload: nothing ties it to anyone');
$listener->quit;
my $changes = $t->as_user('flow-ada', "SELECT string_agg((change > $seen) || ':' || changed, ',') FROM m365sync.changes_since($seen)");
is($changes, 'true:1', 'changes_since() tells the app, acting for its user, that one event changed since it last looked');
is($t->as_user('flow-nobody', 'SELECT count(*) FROM m365sync.changes_since()'), '0',
	"and tells another user nothing of ada's rounds");
my @r = $t->sql('SELECT * FROM m365sync.changes_since()', role => 'flowagent');
is($r[1], '28000', 'changes_since() without an acting user is refused (28000)');
@r = $t->sql('SELECT * FROM m365sync.changes_since()', role => 'nobody');
is($r[1], '42501', 'and a role with no grants may not call it (42501)');

# The worker may have run rounds of its own besides our nine sync() calls.
like($t->as_admin("SELECT count(*) FILTER (WHERE status = 'error') || '/' || (count(*) >= 9) || '/' || bool_and(finished_at IS NOT NULL)"
	  . " FROM m365sync.sync_runs WHERE account_id = $account"),
	qr{^2/true/true$}, 'every round is in sync_runs, the two failed ones as errors');

# History is bounded: rounds older than 14 days are pruned by the worker.
$t->node->safe_psql('postgres', "INSERT INTO m365sync.sync_run_log (account_id, started_at, finished_at, status)"
	  . " VALUES ($account, now() - interval '15 days', now() - interval '15 days', 'ok')");

# The worker: a due account is synced without anyone calling sync().
outlook('POST', '/events', { subject => 'Seen by the worker',
	start => { dateTime => "$d[3]T15:00:00", timeZone => 'UTC' },
	end => { dateTime => "$d[3]T16:00:00", timeZone => 'UTC' } });
my $last_run = $t->node->safe_psql('postgres', 'SELECT max(run_id) FROM m365sync.sync_run_log');
$t->node->safe_psql('postgres', "UPDATE m365sync.accounts SET next_sync_at = now(), backoff_until = NULL WHERE account_id = $account");
ok($t->node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM m365sync.sync_run_log WHERE account_id = $account AND applied = 1 AND run_id > $last_run"),
	'the worker syncs a due account');
like(events(), qr/Seen by the worker/, 'and the change is there');
is($t->node->safe_psql('postgres', "SELECT count(*) FROM m365sync.sync_run_log WHERE started_at < now() - interval '14 days'"),
	'0', 'rounds older than 14 days are pruned');

# The window moves in weekly steps (pull.c): it starts window_past before
# the start of the current week (weeks from 2000-01-01, a Saturday) and
# reaches window_future plus a week beyond it, so it always holds
# [now - window_past, now + window_future] and a day change starts no relist.
is($t->node->safe_psql('postgres', "SELECT bool_and(extract(epoch FROM window_start + interval '30 days'"
	  . " - timestamptz '2000-01-01 00:00+00')::bigint % (7 * 86400) = 0"
	  . " AND window_start <= now() - interval '30 days' AND window_end >= now() + interval '365 days'"
	  . " AND window_end - window_start = interval '402 days')"
	  . " FROM m365sync.calendars WHERE account_id = $account"),
	't', 'the stored window is the current week\'s: a week longer, aligned to the week');
my ($wend) = $t->node->safe_psql('postgres', "SELECT to_char(window_end AT TIME ZONE 'UTC' - interval '2 hours',"
	  . " 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM m365sync.calendars WHERE account_id = $account LIMIT 1");
my ($wend1) = $t->node->safe_psql('postgres', "SELECT to_char(window_end AT TIME ZONE 'UTC' - interval '1 hour',"
	  . " 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM m365sync.calendars WHERE account_id = $account LIMIT 1");
outlook('POST', '/events', { subject => 'At the horizon',
	start => { dateTime => $wend, timeZone => 'UTC' }, end => { dateTime => $wend1, timeZone => 'UTC' } });
like(sync_now(), qr/^ok:1:1:0$/, 'an event an hour before the window\'s end (beyond a daily window\'s) comes by the delta');
my $before_move = events();
# As if the week had just changed: the stored window is last week's.
$t->node->safe_psql('postgres', "UPDATE m365sync.calendars SET window_start = window_start - interval '7 days',"
	  . " window_end = window_end - interval '7 days' WHERE account_id = $account");
$t->sim_clear_log;
# (series masters are not in calendarView: the pull fetches them apart)
my $n_live = $t->node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE account_id = $account"
	  . " AND event_type <> 'seriesMaster'");
like(sync_now(), qr/^ok:$n_live:0:0$/, 'a moved window is one full round: every event fetched, none changed or lost');
is(events(), $before_move, 'event_ids and content unchanged by the move');
my @starts = grep { /startDateTime=/ } map { ($_->{path} // '') . '?' . ($_->{query} // '') } @{ $t->sim_log };
is(scalar(@starts), 1, 'the full round sent its window once');
my ($ws) = $t->node->safe_psql('postgres', "SELECT to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
	  . " FROM m365sync.calendars WHERE account_id = $account LIMIT 1");
like($starts[0] // '', qr/startDateTime=${ws}T00(:|%3A)00(:|%3A)00Z/, 'over the current week\'s window');
like(sync_now(), qr/^ok:0:0:0$/, 'and the next round is incremental again');

# An initial sync meets an event again on a later page (GRAPH.md: the same
# event may appear more than once in one round). A round that began on an
# account holding no Graph ids inserts a page without looking its ids up
# unless the round stored one of them already: the repeat must be found,
# not inserted twice (which the unique index would refuse, failing the round).
{
	my $hedy = $t->add_sim_user('contoso.example', 'hedy@contoso.example');
	my $n = 250;	# three pages of up to 100
	my @t0 = gmtime(time + 86400);
	$t->sim('POST', "/_sim/users/$hedy->{id}/events/bulk", { count => $n, interval_minutes => 30, duration_minutes => 15,
		start => sprintf('%04d-%02d-%02dT00:00:00', $t0[5] + 1900, $t0[4] + 1, $t0[3]) });
	$t->sim('POST', '/_sim/config', { duplicates_in_round => 'pages' });
	$t->sim_clear_log;
	my $hedy_account = $t->connect_user('flow-hedy', 'hedy@contoso.example');
	ok($t->node->poll_query_until('postgres',
		"SELECT count(*) = $n FROM m365sync.events WHERE account_id = $hedy_account"),
		'an initial sync whose later pages repeat an earlier page\'s event brings every event');
	my @pages = grep { ($_->{path} // '') =~ m{$hedy->{id}/calendars/.*/calendarView/delta} } @{ $t->sim_log };
	cmp_ok(scalar(@pages), '>=', 3, 'over three pages or more');
	is($t->node->safe_psql('postgres', "SELECT count(*) || ':' || count(DISTINCT graph_id) || ':'"
		  . " || (SELECT count(*) FILTER (WHERE status <> 'ok') || '/' || count(*) FROM m365sync.sync_run_log WHERE account_id = $hedy_account)"
		  . " FROM m365sync.events WHERE account_id = $hedy_account"),
		"$n:$n:0/1", 'each event once, in one round that did not fail');
	$t->sim('POST', '/_sim/config', { duplicates_in_round => JSON::PP::false });
}

# A new mailbox of $n events, connected while the events table is locked:
# its initial sync holds its first page, unapplied, until the caller
# commits $bg. Returns the simulator's user, the bulk answer, the account,
# $bg, the delta route and how many pages were asked for by then (2: the
# next page goes out while a page waits to be applied).
sub connect_held
{
	my ($upn, $n) = @_;
	my $user = $t->add_sim_user('contoso.example', $upn);
	my @t0 = gmtime(time + 86400);
	my $bulk = $t->sim('POST', "/_sim/users/$user->{id}/events/bulk", { count => $n, interval_minutes => 30,
		duration_minutes => 15, start => sprintf('%04d-%02d-%02dT00:00:00', $t0[5] + 1900, $t0[4] + 1, $t0[3]) });
	my $route = "users/$user->{id}/calendars/.*/calendarView/delta";
	# the first page comes late, so the lock below is taken before it is applied
	$t->sim('POST', '/_sim/faults', { route => $route, kind => 'slow', delay_ms => 3000, count => 1 });
	$t->sim_clear_log;
	(my $flow = "flow-$upn") =~ s/\@.*//;
	my $account = $t->connect_user($flow, $upn);
	my $bg = $t->node->background_psql('postgres', on_error_stop => 0);
	$bg->query_safe('BEGIN; LOCK TABLE m365sync.events IN SHARE MODE');
	my $asked = 0;
	for (1 .. 300)
	{
		$asked = grep { ($_->{path} // '') =~ m{$route} } @{ $t->sim_log };
		last if $asked >= 2;
		sleep(0.1);
	}
	return ($user, $bulk, $account, $bg, $route, $asked);
}

# An initial sync keeps no sweep for its end: every row it holds it stored
# itself, seen. Not so once its cursor is lost half-way: the round starts
# again, and what the first attempt stored that Graph no longer lists must
# go. Here the first page waits for a lock while Graph deletes its first
# event and expires the round's cursor; the first pages are then applied,
# the next request answers 410, and the new round must sweep the event.
{
	my $n = 250;
	my ($jo, $bulk, $jo_account, $bg, $route, $asked) = connect_held('jo@contoso.example', $n);
	is($asked, 2, 'an initial sync has its first two pages while the first waits to be applied');
	$t->sim('DELETE', "/_sim/users/$jo->{id}/events/$bulk->{first_id}");
	$t->sim('POST', '/_sim/delta/expire', { upn => 'jo@contoso.example' });
	$bg->query_safe('COMMIT');
	$bg->quit;
	ok($t->node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM m365sync.sync_run_log WHERE account_id = $jo_account AND status = 'ok'"),
		'its round ends, the cursor lost on the way');
	is($t->node->safe_psql('postgres', "SELECT count(*) || ':' || count(DISTINCT graph_id) || ':'"
		  . " || count(*) FILTER (WHERE graph_id = '$bulk->{first_id}') FROM m365sync.events WHERE account_id = $jo_account"),
		($n - 1) . ':' . ($n - 1) . ':0', 'the restarted round swept the event deleted at Graph, and kept the rest once each');
	$t->sim('DELETE', '/_sim/faults');
}

# The next page is asked for while a page is applied. Here the apply waits
# for a lock: the next page's request is out all the same. The wait is then
# cancelled, which fails the round with that page unapplied; the answer that
# was sent ahead must be dropped, not applied (its cursor would skip the
# failed page's events): the next round brings every event, each once.
{
	my $n = 250;
	my ($ida, $bulk, $ida_account, $bg, $route, $asked) = connect_held('ida@contoso.example', $n);
	is($asked, 2, 'the second page is asked for while the first waits to be applied');
	is($t->node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events WHERE account_id = $ida_account"),
		'0', 'and the first is not applied yet');
	ok($t->node->poll_query_until('postgres', "SELECT pg_catalog.pg_cancel_backend(pid) FROM pg_catalog.pg_stat_activity"
		  . " WHERE backend_type = 'm365sync worker' AND wait_event_type = 'Lock'"),
		'the waiting apply is cancelled');
	ok($t->node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM m365sync.sync_run_log WHERE account_id = $ida_account AND status <> 'ok' AND status <> 'running'"),
		'which fails the round');
	$bg->query_safe('COMMIT');
	$bg->quit;
	like($t->as_admin("SELECT status FROM m365sync.sync($ida_account)"), qr/^ok$/, 'the next round');
	is($t->node->safe_psql('postgres', "SELECT count(*) || ':' || count(DISTINCT graph_id) FROM m365sync.events"
		  . " WHERE account_id = $ida_account"), "$n:$n", 'brings every event, each once');
	$t->sim('DELETE', '/_sim/faults');
}

# Events longer than a day are read by their end (is_long, a generated
# column): the pull's page insert computes it for each row as the
# executor would. A window that opens in the middle of such events lists them.
{
	my $kay = $t->add_sim_user('contoso.example', 'kay@contoso.example');
	my @k = map { my @t = gmtime(time + 86400 * $_); sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]) } 1 .. 6;
	$t->sim('POST', "/_sim/users/$kay->{id}/events", { subject => 'Conference',
		start => { dateTime => "$k[0]T09:00:00", timeZone => 'UTC' },
		end => { dateTime => "$k[3]T17:00:00", timeZone => 'UTC' } });
	$t->sim('POST', "/_sim/users/$kay->{id}/events", { subject => 'Trip', isAllDay => JSON::PP::true,
		start => { dateTime => "$k[0]T00:00:00", timeZone => 'UTC' },
		end => { dateTime => "$k[4]T00:00:00", timeZone => 'UTC' } });
	$t->sim('POST', "/_sim/users/$kay->{id}/events", { subject => 'Lunch',
		start => { dateTime => "$k[2]T12:00:00", timeZone => 'UTC' },
		end => { dateTime => "$k[2]T13:00:00", timeZone => 'UTC' } });
	my $kay_account = $t->connect_user('flow-kay', 'kay@contoso.example');
	ok($t->node->poll_query_until('postgres', "SELECT count(*) = 3 FROM m365sync.events WHERE account_id = $kay_account"),
		'three events pulled, two of them longer than a day');
	is($t->as_user('flow-kay', "SELECT string_agg(subject, ',' ORDER BY subject) FROM m365sync.events("
		  . "'$k[2]T00:00:00Z', '$k[2]T23:00:00Z')"),
		'Conference,Lunch,Trip', 'a window that opens two days into the long events lists them');
	is($t->node->safe_psql('postgres', "SELECT count(*) FILTER (WHERE is_long) || ':' || count(*) FILTER (WHERE is_long IS DISTINCT FROM"
		  . " CASE WHEN is_all_day THEN end_date - start_date > 1 ELSE end_at - start_at > interval '24 hours' END)"
		  . " FROM m365sync.events WHERE account_id = $kay_account"),
		'2:0', 'is_long as its expression has it, for every row the pull inserted');
}

# Two accounts, one throttled hard: the other still syncs on time.
my $grace = $t->add_sim_user('contoso.example', 'grace@contoso.example');
my $grace_account = $t->connect_user('flow-grace', 'grace@contoso.example');
$t->sim('POST', "/_sim/users/$grace->{id}/events", { subject => 'Grace on time',
	start => { dateTime => "$d[3]T09:00:00", timeZone => 'UTC' },
	end => { dateTime => "$d[3]T10:00:00", timeZone => 'UTC' } });
$t->sim('POST', '/_sim/faults', { route => "users/$ada->{id}/calendars/.*/calendarView/delta", kind => '429',
	retry_after => '120', probability => 1.0 });
$t->node->safe_psql('postgres', "UPDATE m365sync.accounts SET next_sync_at = now(), backoff_until = NULL");
ok($t->node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM m365sync.sync_run_log WHERE account_id = $grace_account AND status = 'ok' AND applied = 1"),
	'the healthy account is synced while the other is throttled');
is($t->as_user('flow-grace', "SELECT string_agg(subject, ',') FROM m365sync.events(now(), now() + interval '10 days')"),
	'Grace on time', "and grace sees her event");
ok($t->node->poll_query_until('postgres',
	"SELECT last_error = 'TooManyRequests' AND backoff_until > now() + interval '100 seconds' FROM m365sync.accounts WHERE account_id = $account"),
	'the throttled account backs off alone, honouring Retry-After');
$t->sim('DELETE', '/_sim/faults');

done_testing();
