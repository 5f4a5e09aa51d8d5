# Live-service behaviours of Microsoft Graph that the reference pages do not
# show (issue 22; GRAPH.md §11): one section per behaviour, each driving the
# simulator's switch and asserting the outcome. Sections share the cluster
# and the simulator but each works on a mailbox (and FlowAgent user) of its
# own, so one section's state never meets another's.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $t = M365Test->new(name => 'live', conf => "m365sync.sync_interval = '1h'\n");
my $node = $t->node;
$t->setup_app;
my $json = JSON::PP->new->canonical;

sub db { return $node->safe_psql('postgres', $_[0]); }
sub wait_for { my ($sql, $secs) = @_; my $end = time + ($secs // 60);
	while (time < $end) { return 1 if db($sql) eq 't'; sleep 0.05; } return 0; }
sub day { my @g = gmtime(time + 86400 * $_[0]); return sprintf('%04d-%02d-%02d', $g[5] + 1900, $g[4] + 1, $g[3]); }
my $n_event = 0;
# An Outlook-side event in the given calendar (simulator id) of a simulator user.
sub outlook_create
{
	my ($who, $subject, $cal) = @_;
	$n_event++;
	return $t->sim('POST', "/_sim/users/$who->{id}/events", { subject => $subject,
		start => { dateTime => sprintf('%sT%02d:00:00', day(1 + $n_event % 5), $n_event % 20), timeZone => 'UTC' },
		end => { dateTime => sprintf('%sT%02d:30:00', day(1 + $n_event % 5), $n_event % 20), timeZone => 'UTC' },
		defined $cal ? (calendar_id => $cal) : () });
}
sub subject_sql { my ($account, $subject) = @_;
	return "m365sync._decrypt_jsonb('events', 'content', e.account_id, e.event_id, e.content)->>'subject' = '$subject'"
	  . " AND e.account_id = $account"; }
# SQL: the account has exactly one event with this subject (optionally in this local calendar).
sub has_event { my ($account, $subject, $cal) = @_;
	return "SELECT count(*) = 1 FROM m365sync.events e WHERE " . subject_sql($account, $subject)
	  . (defined $cal ? " AND e.calendar_id = $cal" : ''); }
sub local_cal { my ($account, $graph_id) = @_;
	return db("SELECT calendar_id FROM m365sync.calendars WHERE account_id = $account AND graph_id = '$graph_id'"); }
sub sim_subs { my ($who) = @_;
	return [ grep { $_->{mailbox} eq $who->{id} } @{ $t->sim('GET', '/_sim/subscriptions')->{value} } ]; }
sub sync_now { my ($account) = @_;
	my ($out, $state, $msg) = $t->sql("SELECT CASE WHEN status IN ('ok', 'busy') THEN status"
		  . " ELSE status || coalesce(':' || error, '') END FROM m365sync.sync($account)");
	return $state eq '' ? $out : "ERROR $state $msg"; }
# A round of the account now (m365sync.sync), waiting while the worker runs one.
sub sync_round { my ($account) = @_;
	for (1 .. 300) { my $r = sync_now($account); return $r if $r ne 'busy'; sleep 0.1; } return 'busy'; }
sub quiet { my ($account) = @_;
	return wait_for("SELECT NOT EXISTS (SELECT 1 FROM m365sync.sync_run_log WHERE account_id = $account AND finished_at IS NULL)"
	  . " AND NOT EXISTS (SELECT 1 FROM m365sync.account_wakeups WHERE account_id = $account)", 60); }

my $rx = $t->start_receiver;
$node->safe_psql('postgres', "ALTER SYSTEM SET m365sync.notification_url = '$rx/notify';"
	  . " ALTER SYSTEM SET m365sync.lifecycle_url = '$rx/lifecycle'; SELECT pg_reload_conf();");

# --- behaviour 6: subscriptions per calendar ---------------------------------
# GRAPH.md §11: a subscription on users/{id}/events reports the default
# calendar only (contrib 51, docs 6595); every synced calendar needs its own
# on users/{id}/calendars/{cid}/events, made, renewed, remade and deleted
# with the calendar's sync switch. The simulator notifies only for the
# calendar a subscription names.
my %b6;
sub behaviour_6
{
	my $who = $t->add_sim_user('contoso.example', 'sub6@contoso.example');
	my $team = $t->sim('POST', "/_sim/users/$who->{id}/calendars", { name => 'Team', can_edit => JSON::PP::true });
	my $account = $t->connect_user('flow-sub6', 'sub6@contoso.example');
	my $default_cal = local_cal($account, $who->{calendars}[0]{id});
	my $team_cal = local_cal($account, $team->{id});
	%b6 = (who => $who, account => $account, team => $team, team_cal => $team_cal);

	ok(wait_for("SELECT count(*) = 1 FROM m365sync.subscriptions WHERE account_id = $account AND calendar_id = $default_cal"),
		'6: the synced default calendar gets a subscription');
	my $subs = sim_subs($who);
	is_deeply([ map { $_->{resource} } @$subs ], [ "users/$who->{id}/calendars/$who->{calendars}[0]{id}/events" ],
		'6: one subscription at Microsoft, on users/{id}/calendars/{cid}/events, none for the unsynced calendar');

	$t->as_user('flow-sub6', "SELECT m365sync.set_calendar_sync($team_cal, true)");
	ok(wait_for("SELECT count(*) = 1 FROM m365sync.subscriptions WHERE account_id = $account AND calendar_id = $team_cal"),
		'6: switching a calendar\'s sync on makes its subscription');
	is_deeply([ sort map { $_->{resource} } @{ sim_subs($who) } ],
		[ sort map { "users/$who->{id}/calendars/$_/events" } $who->{calendars}[0]{id}, $team->{id} ],
		'6: two subscriptions at Microsoft, one per synced calendar');
	my $team_sid = db("SELECT subscription_id FROM m365sync.subscriptions WHERE account_id = $account AND calendar_id = $team_cal");

	# sync_interval is an hour: only a notification brings these in.
	ok(quiet($account), '6: the first rounds are over');
	outlook_create($who, 'Sub6 in Team', $team->{id});
	ok(wait_for(has_event($account, 'Sub6 in Team', $team_cal), 30),
		'6: an Outlook change in the second calendar arrives through its notification');
	outlook_create($who, 'Sub6 in default', $who->{calendars}[0]{id});
	ok(wait_for(has_event($account, 'Sub6 in default', $default_cal), 30),
		'6: and one in the default calendar through the default calendar\'s');
	my @by = map { $_->{body}{value}[0]{subscriptionId} }
	  grep { $_->{url} =~ m{/notify$} } @{ $t->sim('GET', '/_sim/notifications')->{value} };
	is(scalar(grep { $_ eq $team_sid } @by), 1, '6: the second calendar\'s subscription notified once (its one change)');

	# renewal at half its lifetime keeps the subscription
	db("UPDATE m365sync.subscriptions SET renew_at = now() WHERE subscription_id = '$team_sid'");
	ok(wait_for("SELECT renewed_at IS NOT NULL FROM m365sync.subscriptions WHERE subscription_id = '$team_sid'", 30),
		'6: a calendar\'s subscription is renewed');
	# removed at Microsoft: remade for the same calendar
	$t->sim('POST', "/_sim/subscriptions/$team_sid/lifecycle", { event => 'subscriptionRemoved' });
	ok(wait_for("SELECT count(*) = 1 AND bool_and(subscription_id <> '$team_sid') FROM m365sync.subscriptions"
		  . " WHERE account_id = $account AND calendar_id = $team_cal", 30),
		'6: a removed subscription is remade for its calendar');
	is(scalar @{ sim_subs($who) }, 2, '6: still two at Microsoft');

	$t->as_user('flow-sub6', "SELECT m365sync.set_calendar_sync($team_cal, false)");
	ok(wait_for("SELECT NOT EXISTS (SELECT 1 FROM m365sync.subscriptions WHERE account_id = $account AND calendar_id = $team_cal)", 30),
		'6: switching the calendar\'s sync off deletes its subscription');
	is_deeply([ map { $_->{resource} } @{ sim_subs($who) } ], [ "users/$who->{id}/calendars/$who->{calendars}[0]{id}/events" ],
		'6: at Microsoft too; the default calendar\'s stays');
	$t->as_user('flow-sub6', "SELECT m365sync.set_calendar_sync($team_cal, true)");
	ok(wait_for("SELECT count(*) = 1 FROM m365sync.subscriptions WHERE account_id = $account AND calendar_id = $team_cal", 30)
		  && @{ sim_subs($who) } == 2, '6: and on again makes a new one');

	# 0.1.0's account-wide subscription (no calendar) is replaced
	db("UPDATE m365sync.subscriptions SET calendar_id = NULL WHERE account_id = $account AND calendar_id = $default_cal");
	db("UPDATE m365sync.accounts SET subscription_retry_at = NULL WHERE account_id = $account");
	ok(wait_for("SELECT count(*) = 2 AND count(calendar_id) = 2 FROM m365sync.subscriptions WHERE account_id = $account", 30),
		'6: an account-wide subscription (0.1.0) is replaced by one for the calendar');
	is(scalar @{ sim_subs($who) }, 2, '6: and deleted at Microsoft');
}

# --- behaviour 9: notification POSTs with several items ---------------------
# GRAPH.md §11: one POST can carry items of several subscriptions, and a
# non-2xx answer makes Graph retry all of it for hours, then drop it. Each
# item's clientState is checked; bad items are ignored and logged by
# subscription id, the good ones acted on; only a POST without a good item
# is refused (42501).
sub behaviour_9
{
	my $account = $b6{account};
	my $who = $b6{who};
	my $other = $t->add_sim_user('contoso.example', 'note9@contoso.example');
	my $other_account = $t->connect_user('flow-note9', 'note9@contoso.example');
	ok(wait_for("SELECT count(*) = 1 FROM m365sync.subscriptions WHERE account_id = $other_account"),
		'9: a second account has its subscription');
	my %state = map { $_->{id} => $_->{clientState} } @{ $t->sim('GET', '/_sim/subscriptions')->{value} };
	my @mine = map { $_->{id} } @{ sim_subs($who) };
	my ($other_sid) = map { $_->{id} } @{ sim_subs($other) };
	my $item = sub { my ($sid, $cs) = @_;
		return { subscriptionId => $sid, clientState => $cs, changeType => 'updated',
			resource => "Users/x/Events/y", tenantId => '00000000-0000-0000-0000-000000000001' }; };
	my $wrong = 'W' x 43;
	my $handle = sub { my ($body) = @_;
		return $t->sql("BEGIN; SELECT m365sync.handle_notification(\$b\$" . $json->encode($body) . "\$b\$);"
			  . " SELECT coalesce(string_agg(account_id::text, ',' ORDER BY account_id), '') FROM m365sync.account_wakeups"
			  . "  WHERE account_id IN ($account, $other_account); ROLLBACK;"); };

	ok(quiet($account) && quiet($other_account), '9: both accounts are quiet');
	my $offset = -s $node->logfile;
	my ($out, $st, $msg) = $handle->({ value => [ $item->($mine[0], $state{ $mine[0] }),
		$item->($other_sid, $wrong), $item->('0badc0de-0000-0000-0000-000000000000', $state{ $mine[0] }),
		$item->($mine[1], $state{ $mine[1] }), $item->($other_sid, $wrong) ] });
	is("$st|$out", "|accepted\n$account", '9: good and bad items: accepted, only the good items\' account marked due');
	my $log = slurp_file($node->logfile, $offset);
	like($log, qr/ignored a notification item for subscription \Q$other_sid\E/, '9: a bad clientState is logged by subscription id');
	like($log, qr/ignored a notification item for subscription 0badc0de-0000-0000-0000-000000000000/,
		'9: so is an unknown subscription');
	is(scalar(() = $log =~ /ignored a notification item for subscription \Q$other_sid\E/g), 1,
		'9: once per subscription id and request');
	unlike($log, qr/\Q$wrong\E|\Q$state{$mine[0]}\E|\Q$state{$mine[1]}\E|\Q$state{$other_sid}\E/,
		'9: no clientState, given or stored, reaches the log');
	unlike($msg // '', qr/\Q$wrong\E/, '9: nor the answer');

	($out, $st, $msg) = $handle->({ value => [ $item->($mine[0], $wrong), $item->($other_sid, $state{ $mine[0] }) ] });
	is($st, '42501', '9: a POST without one good item is refused with 42501');
	unlike($msg, qr/\Q$wrong\E|\Q$state{$mine[0]}\E/, '9: its message echoes no clientState');

	($out, $st) = $handle->({ value => [ $item->($other_sid, $state{$other_sid}), $item->($mine[0], $wrong) ] });
	is("$st|$out", "|accepted\n$other_account", '9: the good item may be any of them: the other account is marked');

	# end to end: the real notification of a change reaches the account even
	# with a stranger's bad item in the same POST
	my ($delivered) = grep { $_->{url} =~ m{/notify$} } reverse @{ $t->sim('GET', '/_sim/notifications')->{value} };
	my $body = $delivered->{body};
	$body->{value}[0]{subscriptionId} = $mine[0];	# as its calendar's current subscription sends it
	$body->{value}[0]{clientState} = $state{ $mine[0] };
	# a change not pulled yet (another etag): a replay of one already pulled marks nothing (061)
	$body->{value}[0]{resourceData}{'@odata.etag'} = 'W/"not-pulled-yet"';
	push @{ $body->{value} }, $item->($other_sid, $wrong);
	my $runs = db("SELECT count(*) FROM m365sync.sync_run_log WHERE account_id = $account");
	($out, $st) = $t->sql("SELECT m365sync.handle_notification(\$b\$" . $json->encode($body) . "\$b\$)", role => 'flowagent');
	is("$st|$out", '|accepted', '9: a delivered notification plus a bad item: accepted');
	ok(wait_for("SELECT count(*) > $runs FROM m365sync.sync_run_log WHERE account_id = $account AND status = 'ok'", 30),
		'9: and its account is pulled');
}

# --- behaviour 8: the 1825-day cap ------------------------------------------
# GRAPH.md §11 (docs 6284): calendarView over more than 1825 days answers
# 400 ErrorInvalidRequest. window_past + window_future is the pull's range,
# so the settings check refuses a sum above 1825 days and says why.
sub behaviour_8
{
	my ($out, $st, $msg) = $t->sql("ALTER SYSTEM SET m365sync.window_future = '1800d'");
	is($st, '22023', '8: window_future 1800d with window_past 30d: refused');
	like($msg, qr/m365sync.window_future = 1800\.0 days would make the sync window 1830\.0 days wide, more than 1825/,
		'8: the message names the setting, the width and the limit');
	my ($o2, $st2, $m2, $msg2) = $t->sql("ALTER SYSTEM SET m365sync.window_past = '1461d'");
	is($st2, '22023', '8: window_past 1461d with window_future 365d: refused');
	like($msg2, qr/DETAIL:.*must stay within 1825 days: Microsoft Graph answers a calendarView over a longer range with 400 ErrorInvalidRequest/s,
		'8: the detail says why');
	like($msg2, qr/HINT:\s+Lower this setting or m365sync.window_future first/, '8: the hint says what to do');
	($out, $st) = $t->sql("ALTER SYSTEM SET m365sync.window_past = '1460d'");
	is($st, '', '8: 1460d + 365d = 1825 days: accepted');
	$node->reload;
	ok($node->poll_query_until('postgres', "SELECT pg_catalog.current_setting('m365sync.window_past') = '1460d'"),
		'8: and in force after a reload');
	($out, $st) = $t->sql("ALTER SYSTEM SET m365sync.window_future = '366d'");
	is($st, '22023', '8: then one more day of window_future is refused');
	# a reload with a too wide window keeps the old value and logs why
	my $offset = -s $node->logfile;
	$node->append_conf('postgresql.conf', "m365sync.window_future = '1900d'\n");
	$node->reload;
	ok($node->poll_query_until('postgres', "SELECT pg_catalog.current_setting('m365sync.window_past') = '1460d'"),
		'8: the accepted window_past is in force');
	is(db("SELECT pg_catalog.current_setting('m365sync.window_future')"), '365d', '8: the too wide window_future is not');
	my $log = '';
	for (1 .. 100) { $log = slurp_file($node->logfile, $offset); last if $log =~ /window_future/; sleep 0.1; }
	like($log, qr/m365sync.window_future = 1900\.0 days would make the sync window \d+\.0 days wide, more than 1825.*\n.*DETAIL:.*must stay within 1825 days/,
		'8: the server log says why');
	# the pull never asks Graph for more: its requests span exactly the window
	my $who = $t->add_sim_user('contoso.example', 'cap8@contoso.example');
	my $account = $t->connect_user('flow-cap8', 'cap8@contoso.example');
	ok(wait_for("SELECT count(*) > 0 FROM m365sync.sync_run_log WHERE account_id = $account AND status = 'ok'"),
		'8: a round over a 1825-day window succeeds');
	my @views = grep { $_->{path} =~ m{/calendarView/delta$} && ($_->{query} // '') =~ /startDateTime/ }
	  @{ $t->sim_log() };
	ok(@views > 0, '8: the round asked for calendarView/delta');
	is(scalar(grep { $_->{status} != 200 } @views), 0, '8: Graph accepted every window it was asked');
	$node->safe_psql('postgres', "ALTER SYSTEM RESET m365sync.window_past; ALTER SYSTEM RESET m365sync.window_future;");
	$node->adjust_conf('postgresql.conf', 'm365sync.window_future', undef);
	$node->reload;
	ok($node->poll_query_until('postgres', "SELECT pg_catalog.current_setting('m365sync.window_past') = '30d'"),
		'8: windows back to the defaults');
}

# --- behaviour 3: an event moved to another calendar keeps its id -----------
# GRAPH.md §11 (contrib 72): with immutable ids a moved event keeps its id;
# the old calendar's delta reports @removed and the new one's the event, in
# either order across the two calendars' rounds. It stays one local row
# with the same event_id, and its calendar_id follows. Calendars are pulled
# in calendar_id order, so a move from the first calendar to the second
# meets the @removed first, and the move back meets the event first.
sub behaviour_3
{
	my $who = $t->add_sim_user('contoso.example', 'move3@contoso.example');
	my $second = $t->sim('POST', "/_sim/users/$who->{id}/calendars", { name => 'Projects', can_edit => JSON::PP::true });
	my $account = $t->connect_user('flow-move3', 'move3@contoso.example');
	my $cal_a = local_cal($account, $who->{calendars}[0]{id});
	my $cal_b = local_cal($account, $second->{id});
	cmp_ok($cal_a, '<', $cal_b, '3: the default calendar is pulled first');
	$t->as_user('flow-move3', "SELECT m365sync.set_calendar_sync($cal_b, true)");
	my $ev = outlook_create($who, 'Move3 wanderer', $who->{calendars}[0]{id});
	outlook_create($who, 'Move3 stays', $who->{calendars}[0]{id});
	my $sync = sub { sync_round($account) };
	is($sync->(), 'ok', '3: a round');
	ok(wait_for(has_event($account, 'Move3 wanderer', $cal_a), 30), '3: the event is in the first calendar');
	my $event_id = db("SELECT e.event_id FROM m365sync.events e WHERE " . subject_sql($account, 'Move3 wanderer'));
	my $count = sub { db("SELECT count(*) FROM m365sync.events WHERE account_id = $account") };
	is($count->(), '2', '3: two events');
	my $where = sub { db("SELECT string_agg(e.event_id || '\@' || e.calendar_id, ',') FROM m365sync.events e WHERE "
		  . subject_sql($account, 'Move3 wanderer')) };

	# first to second: @removed in the first calendar's delta, then the event in the second's
	$t->sim('PATCH', "/_sim/users/$who->{id}/events/$ev->{id}", { calendar_id => $second->{id} });
	my $offset = -s $node->logfile;
	is($sync->(), 'ok', '3: moved to the second calendar: a round');
	is($where->(), "$event_id\@$cal_b", '3: @removed first: one row, the same event_id, in the second calendar');
	is($count->(), '2', '3: no copy, nothing lost');
	is(db("SELECT count(*) FROM m365sync.removed_events WHERE account_id = $account"), '0',
		'3: the kept id was taken back');

	# and back: the event in the first calendar's delta, then @removed in the second's
	$t->sim('PATCH', "/_sim/users/$who->{id}/events/$ev->{id}", { calendar_id => $who->{calendars}[0]{id} });
	is($sync->(), 'ok', '3: moved back: a round');
	is($where->(), "$event_id\@$cal_a", '3: event first, @removed after: still one row, same event_id, in the first calendar');
	is($count->(), '2', '3: no copy, nothing lost');

	# an edit in Outlook after the moves lands on that row
	$t->sim('PATCH', "/_sim/users/$who->{id}/events/$ev->{id}", { subject => 'Move3 wanderer renamed' });
	is($sync->(), 'ok', '3: an edit after the moves: a round');
	is(db("SELECT string_agg(e.event_id || '\@' || e.calendar_id, ',') FROM m365sync.events e WHERE "
		  . subject_sql($account, 'Move3 wanderer renamed')), "$event_id\@$cal_a", '3: the edit reaches the same row');

	# rounds apart: the second calendar is not synced when the event moves there
	$t->as_user('flow-move3', "SELECT m365sync.set_calendar_sync($cal_b, false)");
	$t->sim('PATCH', "/_sim/users/$who->{id}/events/$ev->{id}", { calendar_id => $second->{id} });
	is($sync->(), 'ok', '3: moved to a calendar not synced: a round');
	is($where->() // '', '', '3: it left the first calendar');
	is(db("SELECT event_id FROM m365sync.removed_events WHERE account_id = $account"), $event_id,
		'3: its event_id is kept');
	$t->as_user('flow-move3', "SELECT m365sync.set_calendar_sync($cal_b, true)");
	is($sync->(), 'ok', '3: the second calendar synced again: a round');
	is(db("SELECT string_agg(e.event_id || '\@' || e.calendar_id, ',') FROM m365sync.events e WHERE "
		  . subject_sql($account, 'Move3 wanderer renamed')), "$event_id\@$cal_b",
		'3: rounds apart: the same event_id, now in the second calendar');
	is($count->(), '2', '3: two events, as in Outlook');
	is($t->as_user('flow-move3', "SELECT string_agg(subject, ',' ORDER BY subject)"
		  . " FROM m365sync.events(now() - interval '1 day', now() + interval '30 days')"),
		'Move3 stays,Move3 wanderer renamed', '3: events() shows both once');
	my $log = slurp_file($node->logfile, $offset);
	unlike($log, qr/Move3/, '3: no subject in the server log');
}

# --- behaviour 7: calendars change ------------------------------------------
# GRAPH.md §11 (docs 11296, 5580): calendar ids change and calendars get
# deleted. A calendar answering 404 is marked gone and the account's other
# calendars go on in the same round; the calendar list is read again at once
# after such a 404 and at least daily, so new calendars appear in
# calendars() and deleted ones leave with their events.
sub behaviour_7
{
	my $who = $t->add_sim_user('contoso.example', 'cal7@contoso.example');
	my $team = $t->sim('POST', "/_sim/users/$who->{id}/calendars", { name => 'Team', can_edit => JSON::PP::true });
	my $archive = $t->sim('POST', "/_sim/users/$who->{id}/calendars", { name => 'Archive', can_edit => JSON::PP::true });
	my $account = $t->connect_user('flow-cal7', 'cal7@contoso.example');
	my $cal_team = local_cal($account, $team->{id});
	my $cal_archive = local_cal($account, $archive->{id});
	$t->as_user('flow-cal7', "SELECT m365sync.set_calendar_sync($_, true)") for $cal_team, $cal_archive;
	outlook_create($who, 'Cal7 default', $who->{calendars}[0]{id});
	outlook_create($who, 'Cal7 team', $team->{id});
	my $old_archive = outlook_create($who, 'Cal7 archive', $archive->{id});
	is(sync_round($account), 'ok', '7: a round');
	ok(db(has_event($account, 'Cal7 team', $cal_team)) eq 't' && db(has_event($account, 'Cal7 archive', $cal_archive)) eq 't',
		'7: events of all three calendars are in');
	my $archive_event_id = db("SELECT e.event_id FROM m365sync.events e WHERE " . subject_sql($account, 'Cal7 archive'));
	my $calendars = sub { $t->as_user('flow-cal7', "SELECT string_agg(name || ':' || sync_enabled, ',' ORDER BY name) FROM m365sync.calendars()") };
	is($calendars->(), 'Archive:true,Calendar:true,Team:true', '7: calendars() lists the three, synced');
	ok(wait_for("SELECT count(*) = 3 FROM m365sync.subscriptions WHERE account_id = $account", 30),
		'7: each has its subscription');

	# Team is deleted in Outlook; a new event in Archive waits for the same round
	# (the worker may run it first, woken by the notifications of the deletion)
	ok(quiet($account), '7: the account is quiet');
	my $lists = sub { scalar grep { $_->{path} =~ m{/users/[^/]+/calendars$} && $_->{method} eq 'GET' } @{ $t->sim_log() } };
	my $lists_before = $lists->();
	my $runs_before = db("SELECT coalesce(max(run_id), 0) FROM m365sync.sync_run_log WHERE account_id = $account");
	my $offset = -s $node->logfile;
	outlook_create($who, 'Cal7 archive later', $archive->{id});
	$t->sim('DELETE', "/_sim/users/$who->{id}/calendars/$team->{id}");
	is(sync_round($account), 'ok', '7: the round after the deletion succeeds');
	ok(db(has_event($account, 'Cal7 archive later', $cal_archive)) eq 't', '7: the other calendars went on syncing');
	is(db("SELECT string_agg(DISTINCT status, ',') FROM m365sync.sync_run_log WHERE account_id = $account AND run_id > $runs_before"),
		'ok', '7: no round failed');
	my $log = slurp_file($node->logfile, $offset);
	like($log, qr/calendar $cal_team of account $account answered 404 ErrorItemNotFound/, '7: the 404 is logged by ids');
	cmp_ok($lists->() - $lists_before, '>=', 1, '7: the calendar list was read again at once');
	is($calendars->(), 'Archive:true,Calendar:true', '7: the deleted calendar left calendars()');
	is(db("SELECT count(*) FROM m365sync.events WHERE account_id = $account AND calendar_id = $cal_team"), '0',
		'7: with its events');
	is(db("SELECT count(*) FROM m365sync.events WHERE account_id = $account"), '3', '7: the others\' events stay');
	ok(wait_for("SELECT NOT EXISTS (SELECT 1 FROM m365sync.subscriptions WHERE account_id = $account AND calendar_id = $cal_team)", 30)
		  && wait_for("SELECT count(*) = 2 FROM m365sync.subscriptions WHERE account_id = $account", 30),
		'7: its subscription went too');

	# Archive's id changes: the old id answers 404; the calendar of the same name takes its place
	my $renamed = $t->sim('POST', "/_sim/users/$who->{id}/calendars/$archive->{id}/change_id");
	is(sync_round($account), 'ok', '7: the round after the id change succeeds');
	my $cal_new = local_cal($account, $renamed->{id});
	ok($cal_new ne '' && $cal_new != $cal_archive, '7: the calendar with the new id is listed');
	is($calendars->(), 'Archive:true,Calendar:true', '7: calendars() shows it once, synced as the old one was');
	is(sync_round($account), 'ok', '7: a round of the new calendar');
	is(db("SELECT string_agg(e.event_id || '\@' || e.calendar_id, ',') FROM m365sync.events e WHERE "
		  . subject_sql($account, 'Cal7 archive')), "$archive_event_id\@$cal_new",
		'7: its events are back under their event_ids');
	is(db("SELECT count(*) FROM m365sync.events WHERE account_id = $account"), '3', '7: no copies');

	# a new calendar appears with the daily read of the list, not before
	$t->sim('POST', "/_sim/users/$who->{id}/calendars", { name => 'Later', can_edit => JSON::PP::true });
	$lists_before = $lists->();
	is(sync_round($account), 'ok', '7: a round within the day');
	is($lists->() - $lists_before, 0, '7: the list is not read again within the day');
	db("UPDATE m365sync.accounts SET calendars_listed_at = now() - interval '25 hours' WHERE account_id = $account");
	is(sync_round($account), 'ok', '7: a round a day later');
	is($lists->() - $lists_before, 1, '7: reads the list again');
	is($calendars->(), 'Archive:true,Calendar:true,Later:false', '7: the new calendar is in calendars(), not synced');
	# switched on, it is pulled at once (the worker's round, not the hourly poll; no notification: it had no subscription)
	my $later = (grep { $_->{name} eq 'Later' } @{ $t->sim('GET', "/_sim/users/$who->{id}")->{calendars} })[0];
	outlook_create($who, 'Cal7 later', $later->{id});
	my $cal_later = local_cal($account, $later->{id});
	$t->as_user('flow-cal7', "SELECT m365sync.set_calendar_sync($cal_later, true)");
	ok(wait_for(has_event($account, 'Cal7 later', $cal_later), 30), '7: switched on, its events arrive at once');
	ok(wait_for("SELECT count(*) = 1 FROM m365sync.subscriptions WHERE account_id = $account AND calendar_id = $cal_later", 30),
		'7: and it gets its subscription');
}

behaviour_6();
behaviour_9();
behaviour_8();
behaviour_3();
behaviour_7();

done_testing();
