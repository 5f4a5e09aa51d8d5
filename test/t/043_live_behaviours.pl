# Live-service behaviours (issue 22, GRAPH.md §11): what the real Graph does
# that its reference pages don't say, each driven through the simulator's
# switch with the real server and worker, asserting the outcome: no
# duplicate, no lost edit, the right account state.
#
# One section per behaviour. Each makes its own simulator user, FlowAgent
# user and account, and puts back any simulator setting it changed, so the
# sections do not depend on each other's order.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use Test::More;
use Time::HiRes qw(usleep);

my $json = JSON::PP->new->canonical;
my $t = M365Test->new(name => 'live', conf => "m365sync.sync_interval = '1h'\n");
$t->setup_app;
my $node = $t->node;

# ------------------------------------------------------------ shared helpers

my @day = map { my @g = gmtime(time + 86400 * $_); sprintf('%04d-%02d-%02d', $g[5] + 1900, $g[4] + 1, $g[3]) } 1 .. 9;
sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }

# A FlowAgent user connected to a new simulator user: {user, sim (its JSON), account}.
sub new_account
{
	my ($name) = @_;
	my $sim = $t->add_sim_user('contoso.example', "$name\@contoso.example");
	my $account = $t->connect_user("flow-$name", "$name\@contoso.example");
	return { user => "flow-$name", sim => $sim, account => $account };
}

# A second calendar of the account that is not synced: the pull never reads it,
# so only the push meets what happens there.
sub unsynced_calendar
{
	my ($a) = @_;
	$t->sim('POST', "/_sim/users/$a->{sim}{id}/calendars", { name => 'Unsynced', can_edit => JSON::PP::true });
	$node->safe_psql('postgres', "SELECT public.refresh_calendars($a->{account})");
	return $t->as_user($a->{user}, "SELECT calendar_id FROM m365sync.calendars() WHERE NOT sync_enabled");
}

sub upsert
{
	my ($a, $e, $id) = @_;
	return $t->as_user($a->{user}, 'SELECT m365sync.upsert_event(' . lit($json->encode($e)) . '::jsonb'
		  . (defined $id ? ", $id" : '') . ')');
}

sub ev
{
	my ($subject, $d, $hour, %o) = @_;
	return { subject => $subject,
		start => { dateTime => sprintf('%sT%02d:00:00', $day[$d], $hour), timeZone => 'UTC' },
		end => { dateTime => sprintf('%sT%02d:30:00', $day[$d], $hour), timeZone => 'UTC' }, %o };
}

# The simulator's events of the account whose subject starts with prefix.
sub remote
{
	my ($a, $prefix) = @_;
	return [ grep { index($_->{subject} // '', $prefix) == 0 }
		  @{ $t->sim('GET', "/_sim/users/$a->{sim}{id}/truth")->{events} } ];
}

# Local events (not deleted) of the account whose subject starts with prefix.
sub local_count
{
	my ($a, $prefix) = @_;
	return $t->as_user($a->{user}, "SELECT count(*) FROM m365sync.events(now() - interval '1 day', now() + interval '30 days')"
		  . " WHERE subject LIKE " . lit("$prefix%"));
}

sub sql1 { return $node->safe_psql('postgres', $_[0]); }

sub outbox_states
{
	my ($a) = @_;
	return sql1("SELECT coalesce(string_agg(state, ',' ORDER BY outbox_id), '') FROM m365sync.outbox"
		  . " WHERE account_id = $a->{account} AND state <> 'done'");
}

sub wait_for
{
	my ($sql, $what) = @_;
	ok($node->poll_query_until('postgres', $sql), $what);
}

# m365sync.sync() of the account now, waiting out a worker round that holds it.
sub sync_now
{
	my ($a) = @_;
	for (1 .. 300)
	{
		my $r = $t->as_admin("SELECT status || ':' || coalesce(error, '') FROM m365sync.sync($a->{account})");
		return $r unless $r =~ /^busy/;
		usleep(100_000);
	}
	die 'account stays busy';
}

# The account's status and error as the admin sees them.
sub account_status
{
	my ($a) = @_;
	return $t->as_admin("SELECT status || ':' || coalesce(last_error, '') FROM m365sync.account_status"
		  . " WHERE account_id = $a->{account}");
}

sub log_seq
{
	my $v = $t->sim('GET', '/_sim/log')->{value};
	return @$v ? $v->[-1]{seq} : 0;
}

sub sim_stat { return $t->sim('GET', '/_sim/stats')->{ $_[0] } // 0; }

sub reset_sim_switches
{
	$t->sim('DELETE', '/_sim/faults');
	$t->sim('POST', '/_sim/config', { txid_duplicate => '400', changekey_bump => 0, batch_wave_ms => 0,
		throttled_inner_executes => 0, concurrency_limit => 4 });
}

# ------------------------------------------------------------ behaviour 1: duplicate transactionId → 400
# A create whose answer is lost is sent again with its transactionId; the
# live service refuses the repeat with 400 ErrorDuplicateTransactionId
# (GRAPH.md §11). The push finds the event by its transactionId and links
# it, as for 409: no failed entry, one event remotely, one row locally, also
# after the calendar is pulled.
sub behaviour_1
{
	my $a = new_account('dup');
	my $cal = unsynced_calendar($a);
	reset_sim_switches();
	is($t->sim('GET', '/_sim/config')->{txid_duplicate}, '400', 'b1: the simulator answers a repeated transactionId with 400 by default');

	# single create, then three at once ($batch): each first send applied, its answer lost
	for my $case ([ 'single', 1 ], [ 'batch', 3 ])
	{
		my ($kind, $n) = @$case;
		my $seq = log_seq();
		$t->sim('POST', '/_sim/faults', { route => ($n == 1 ? '/events$' : '\$batch$'), method => 'POST',
			kind => 'drop', after => JSON::PP::true, count => 1 });
		# in one transaction, so that they go together
		my $list = $t->as_user($a->{user}, 'SELECT concat_ws(\',\', ' . join(', ', map {
			'm365sync.upsert_event(' . lit($json->encode(ev("Dup $kind $_", 1, 8 + $_, calendarId => $cal + 0))) . '::jsonb)'
		} 1 .. $n) . ')');
		wait_for("SELECT count(*) = $n FROM m365sync.outbox WHERE event_id IN ($list) AND state = 'done'",
			"b1 $kind: the lost creates are settled");
		my @log = @{ $t->sim('GET', "/_sim/log?since=$seq")->{value} };
		my $refused = $n == 1
		  ? grep { $_->{method} eq 'POST' && $_->{path} =~ m{/events$} && ($_->{status} // 0) == 400 } @log
		  : grep { $_->{path} =~ m{/\$batch$} && ($_->{status} // 0) == 200 } @log;
		ok($refused >= 1, "b1 $kind: the resend was answered (a 400 ErrorDuplicateTransactionId)");
		my $lookups = grep { $_->{method} eq 'GET' && $_->{path} =~ m{/calendars/[^/]+/events$}
			  && ($_->{query} // '') =~ /transactionId/ } @log;
		is($lookups, $n, "b1 $kind: each create found its event by transactionId");
		is(sql1("SELECT count(*) FROM m365sync.outbox WHERE event_id IN ($list) AND state = 'failed'"), '0',
			"b1 $kind: no failed entry");
		is(scalar(@{ remote($a, "Dup $kind") }), $n, "b1 $kind: each event once at Microsoft");
		is(sql1("SELECT count(*) FROM m365sync.events WHERE event_id IN ($list) AND graph_id IS NOT NULL AND sync_state = 'synced'"),
			$n, "b1 $kind: the local rows are linked to them");
	}
	# the calendar is pulled: no second local copy
	$t->as_user($a->{user}, "SELECT m365sync.set_calendar_sync($cal, true)");
	like(sync_now($a), qr/^ok/, 'b1: the calendar with the linked events is pulled');
	is(local_count($a, 'Dup '), '4', 'b1: after the pull, still one local row per event');
	is(sql1("SELECT count(*) FROM m365sync.events WHERE account_id = $a->{account} AND NOT deleted"), '4',
		'b1: no second copy anywhere in the account');
	reset_sim_switches();
}

# ------------------------------------------------------------ behaviour 2: not every 404 is "gone"
# Only 404 ErrorItemNotFound means deleted. MailboxNotEnabledForRESTAPI (a
# lapsed licence, an inactive mailbox; GRAPH.md §11) is a state of the
# account: the writes stay pending, account_status shows mailbox_disabled,
# the account backs off, and once the mailbox answers again everything goes
# through, with no conflict, no tombstone and no recreated event.
sub behaviour_2
{
	my $a = new_account('lapsed');
	reset_sim_switches();
	my $keep = upsert($a, ev('Lapsed keep', 2, 9));
	my $gone = upsert($a, ev('Lapsed gone', 2, 10));
	wait_for("SELECT count(*) = 2 FROM m365sync.events WHERE event_id IN ($keep, $gone) AND graph_id IS NOT NULL"
		  . " AND sync_state = 'synced'", 'b2: two events pushed');

	# (a) the licence lapses between the pull and the push: PATCH and DELETE answer 404 MailboxNotEnabledForRESTAPI
	$t->sim('POST', '/_sim/faults', { route => '/events/', kind => '404', code => 'MailboxNotEnabledForRESTAPI',
		count => 1000 });
	upsert($a, ev('Lapsed keep, edited', 2, 9), $keep);
	$t->as_user($a->{user}, "SELECT m365sync.delete_event($gone)");
	wait_for("SELECT status = 'mailbox_disabled' FROM m365sync.accounts WHERE account_id = $a->{account}",
		'b2a: the account shows mailbox_disabled');
	like(account_status($a), qr/^mailbox_disabled:MailboxNotEnabledForRESTAPI$/, 'b2a: account_status names the code');
	is(outbox_states($a), 'pending,pending', 'b2a: the update and the delete stay pending, none failed');
	is(sql1("SELECT count(*) FROM m365sync.conflicts WHERE account_id = $a->{account}"), '0',
		'b2a: no conflict (a PATCH 404 is not a remote delete)');
	is(sql1("SELECT string_agg(sync_state || '/' || deleted || '/' || (graph_id IS NOT NULL), ',' ORDER BY event_id)"
		  . " FROM m365sync.events WHERE event_id IN ($keep, $gone)"),
		'pending/false/true,pending/true/true', 'b2a: no tombstone, no unlink: the rows wait as they were');
	ok(sql1("SELECT backoff_until > now() + interval '2 minutes' FROM m365sync.accounts WHERE account_id = $a->{account}") eq 't',
		'b2a: the account backs off for minutes');
	is(join(',', sort map { $_->{subject} } @{ remote($a, 'Lapsed') }), 'Lapsed gone,Lapsed keep',
		'b2a: Microsoft still has both, unchanged');
	$t->sim('DELETE', '/_sim/faults');
	like(sync_now($a), qr/^ok/, 'b2a: the mailbox answers again: the round succeeds');
	like(account_status($a), qr/^connected:$/, 'b2a: connected again');
	is(outbox_states($a), '', 'b2a: both writes went through');
	is(join(',', map { $_->{subject} } @{ remote($a, 'Lapsed') }), 'Lapsed keep, edited',
		'b2a: Microsoft has the edit and not the deleted event');
	is(sql1("SELECT count(*) FROM m365sync.conflicts WHERE account_id = $a->{account}"), '0', 'b2a: still no conflict');

	# (b) the whole mailbox is disabled: the pull meets it first, the local edit waits
	$t->sim('POST', "/_sim/users/$a->{sim}{id}/mailbox", { enabled => JSON::PP::false });
	upsert($a, ev('Lapsed keep, while disabled', 2, 9), $keep);
	my $new = upsert($a, ev('Lapsed new while disabled', 2, 11));
	wait_for("SELECT status = 'mailbox_disabled' FROM m365sync.accounts WHERE account_id = $a->{account}",
		'b2b: a disabled mailbox puts the account in mailbox_disabled');
	is(outbox_states($a), 'pending,pending', 'b2b: the edit and the create wait');
	is(local_count($a, 'Lapsed'), '2', 'b2b: nothing was removed locally');
	$t->sim('POST', "/_sim/users/$a->{sim}{id}/mailbox", { enabled => JSON::PP::true });
	like(sync_now($a), qr/^ok/, 'b2b: licence back: the round succeeds');
	like(account_status($a), qr/^connected:$/, 'b2b: connected again');
	is(join(',', sort map { $_->{subject} } @{ remote($a, 'Lapsed') }), 'Lapsed keep, while disabled,Lapsed new while disabled',
		'b2b: both changes reached Microsoft once');

	# (c) a real "gone": DELETE of an event already deleted in Outlook is done; PATCH of one is a remote delete
	my $g = sql1("SELECT graph_id FROM m365sync.events WHERE event_id = $new");
	$t->sim('DELETE', "/_sim/users/$a->{sim}{id}/events/$g");
	$t->as_user($a->{user}, "SELECT m365sync.delete_event($new)");
	like(sync_now($a), qr/^ok/, 'b2c: a delete of an event already gone');
	is(outbox_states($a), '', 'b2c: 404 ErrorItemNotFound on DELETE counts as done');
	like(account_status($a), qr/^connected:$/, 'b2c: and is no account state');
	reset_sim_switches();
}

# ------------------------------------------------------------ behaviour 4: $batch inner requests count
# Graph runs up to 4 inner requests of a batch at a time and they count
# toward the mailbox's 4 concurrent requests (GRAPH.md §11). 80 changes of
# one mailbox are pushed with no throttled answer at all, while the
# simulator holds each batch's slots for the time its waves take.
sub behaviour_4
{
	my $a = new_account('busy');
	reset_sim_switches();
	$t->sim('POST', '/_sim/config', { batch_wave_ms => 40 });
	my $throttled = sim_stat('throttled');
	my $seq = log_seq();
	$t->as_user($a->{user}, "SELECT count(m365sync.upsert_event(jsonb_build_object('subject', 'Busy ' || i,"
		  . " 'start', jsonb_build_object('dateTime', '$day[3]T00:00:00'::timestamp + i * interval '10 minutes', 'timeZone', 'UTC'),"
		  . " 'end', jsonb_build_object('dateTime', '$day[3]T00:05:00'::timestamp + i * interval '10 minutes', 'timeZone', 'UTC'))))"
		  . " FROM generate_series(1, 80) i");
	wait_for("SELECT count(*) = 80 FROM m365sync.events WHERE account_id = $a->{account} AND graph_id IS NOT NULL"
		  . " AND sync_state = 'synced'", 'b4: 80 creates pushed');
	is(sim_stat('throttled') - $throttled, 0, 'b4: 0 throttled answers');
	my $batches = grep { $_->{path} =~ m{/\$batch$} } @{ $t->sim('GET', "/_sim/log?since=$seq")->{value} };
	ok($batches >= 4, "b4: they went as \$batch requests ($batches)");
	is(scalar(@{ remote($a, 'Busy ') }), 80, 'b4: each once at Microsoft');
	is(outbox_states($a), '', 'b4: nothing failed or waits');
	reset_sim_switches();
}

# ------------------------------------------------------------ behaviour 10: app-only permissions, access policies
# App-only access (GRAPH.md §11): GET /users/{id} needs User.Read.All, the
# calendars only Calendars.ReadWrite; an Exchange ApplicationAccessPolicy
# answers 403 ErrorAccessDenied for mailboxes outside its scope. add_mailbox
# works without User.Read.All when given the user id, and says what to do
# when given an address; a 403 ErrorAccessDenied is the account state
# access_denied, retried after a while, never a failure of each write.
sub behaviour_10
{
	reset_sim_switches();
	my $room = $t->add_sim_user('apponly.example', 'room@apponly.example');
	my $q = $t->admin_consent('apponly.example');
	is($q->{admin_consent}, 'True', 'b10: the tenant consented');
	$t->sim('POST', '/_sim/app_permissions', { tenant => 'apponly.example', roles => [ 'Calendars.ReadWrite' ] });
	my ($out, $st, $msg, $err) = $t->sql("SELECT m365sync.add_mailbox('flow-room', 'apponly.example', 'room\@apponly.example')",
		role => 'dba');
	is($st, '42501', 'b10: without User.Read.All an address cannot be looked up');
	like($err, qr/HINT:.*Graph user id.*User\.Read\.All/s, 'b10: the hint says: pass the user id, or grant User.Read.All');
	unlike($err, qr/room\@apponly/, 'b10: the error does not echo the address');
	my $account = $t->as_admin("SELECT m365sync.add_mailbox('flow-room', 'apponly.example', '$room->{id}')");
	like($account, qr/^\d+$/, 'b10: with the Graph user id, add_mailbox needs no User.Read.All');
	my $a = { user => 'flow-room', sim => $room, account => $account };
	is(sql1("SELECT ms_user_id FROM m365sync.accounts WHERE account_id = $account"), $room->{id}, 'b10: the user id is recorded');
	like(sync_now($a), qr/^ok/, 'b10: the mailbox syncs');

	my $id = upsert($a, ev('Room booking', 4, 9));
	wait_for("SELECT graph_id IS NOT NULL FROM m365sync.events WHERE event_id = $id", 'b10: a booking is pushed');

	# the tenant puts an ApplicationAccessPolicy in place that leaves this mailbox out
	$t->sim('POST', "/_sim/users/$room->{id}/app_access", { allowed => JSON::PP::false });
	upsert($a, ev('Room booking, moved', 4, 10), $id);
	my $id2 = upsert($a, ev('Room booking two', 4, 12));
	wait_for("SELECT status = 'access_denied' FROM m365sync.accounts WHERE account_id = $account",
		'b10: the account shows access_denied');
	like(account_status($a), qr/^access_denied:ErrorAccessDenied$/, 'b10: account_status names the code');
	is(outbox_states($a), 'pending,pending', 'b10: the queued writes stay pending, none failed');
	like(sync_now($a), qr/^error:ErrorAccessDenied/, 'b10: a retry meets the policy again');
	is(outbox_states($a), 'pending,pending', 'b10: ... and still fails no write');
	ok(sql1("SELECT backoff_until > now() + interval '2 minutes' FROM m365sync.accounts WHERE account_id = $account") eq 't',
		'b10: the account is retried only after a while');
	# the push meets the policy, which took effect just after the pull read the
	# mailbox: the writes and a read of their calendar are refused
	$t->sim('POST', "/_sim/users/$room->{id}/app_access", { allowed => JSON::PP::true });
	$t->sim('POST', '/_sim/faults', { route => '/events', method => 'PATCH', kind => '403', count => 1000 });
	$t->sim('POST', '/_sim/faults', { route => '/events$', method => 'POST', kind => '403', count => 1000 });
	$t->sim('POST', '/_sim/faults', { route => '/calendars/[^/]+$', method => 'GET', kind => '403', count => 1000 });
	like(sync_now($a), qr/^error:ErrorAccessDenied/, 'b10: writes answered 403 ErrorAccessDenied');
	is(outbox_states($a), 'pending,pending', 'b10: ... are not failed one by one');
	like(account_status($a), qr/^access_denied:/, 'b10: ... the account is access_denied');
	$t->sim('DELETE', '/_sim/faults');
	like(sync_now($a), qr/^ok/, 'b10: the policy includes the mailbox again: the round succeeds');
	like(account_status($a), qr/^connected:$/, 'b10: connected again');
	is(join(',', sort map { $_->{subject} } @{ remote($a, 'Room booking') }), 'Room booking two,Room booking, moved',
		'b10: both writes reached Microsoft once');
	$t->sim('POST', '/_sim/app_permissions', { tenant => 'apponly.example', roles => undef });
	reset_sim_switches();
}

behaviour_1();
behaviour_2();
behaviour_4();
behaviour_10();

done_testing();
