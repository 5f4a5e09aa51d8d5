# Push: every change FlowAgent makes reaches Outlook exactly once, with
# transactionId on creates and If-Match on updates and deletes; rollbacks
# send nothing, edits in one transaction collapse, our own changes do not
# echo back, permanent failures stop, transient ones are retried, and a
# success whose answer came back garbled is still a success, linked once.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use Test::More;
use Time::HiRes qw(usleep);

my $json = JSON::PP->new->canonical;
my $t = M365Test->new(name => 'push', conf => "m365sync.sync_interval = '1h'\n");
$t->setup_app;
my $ada = $t->add_sim_user('contoso.example', 'ada@contoso.example');
my $account = $t->connect_user('flow-ada', 'ada@contoso.example');
like($account, qr/^\d+$/, 'ada is connected');

my @d = map { my @t = gmtime(time + 86400 * $_); sprintf('%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3]) } 1 .. 9;

sub lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }
sub ev
{
	my ($subject, $day, $hour, %o) = @_;
	my $e = { subject => $subject,
		start => { dateTime => sprintf('%sT%02d:00:00', $d[$day], $hour), timeZone => 'UTC' },
		end => { dateTime => sprintf('%sT%02d:30:00', $d[$day], $hour), timeZone => 'UTC' }, %o };
	return $json->encode($e);
}
sub as_ada { return $t->as_user('flow-ada', $_[0]); }
sub upsert
{
	my ($e, $id) = @_;
	return as_ada('SELECT m365sync.upsert_event(' . lit($e) . '::jsonb' . (defined $id ? ", $id" : '') . ')');
}
sub truth
{
	my ($uid) = @_;
	return $t->sim('GET', "/_sim/users/" . ($uid // $ada->{id}) . '/truth')->{events};
}
sub subjects { return join ',', sort map { $_->{subject} } @{ truth(@_) }; }

# Wait until the worker has sent everything due and finished its round.
sub drain
{
	ok($t->node->poll_query_until('postgres',
		"SELECT (SELECT count(*) FROM m365sync.outbox WHERE state = 'pending'"
		  . "   AND coalesce(next_attempt_at, '-infinity') <= now()) = 0"
		  . " AND (SELECT count(*) FROM m365sync.sync_run_log WHERE finished_at IS NULL) = 0"),
		$_[0] // 'the worker drains the outbox');
}
# m365sync.sync() now, waiting out a worker round that holds the account.
sub sync_now
{
	for (1 .. 100)
	{
		my $r = $t->as_admin("SELECT status || ':' || pushed || ':' || applied || ':' || conflicts || ':' || coalesce(error, '')"
			  . " FROM m365sync.sync($account)");
		return $r unless $r =~ /^busy/;
		usleep(100_000);
	}
	die 'account stays busy';
}
# Graph writes in the simulator's log, $batch unpacked: {method, url, headers, body}.
sub writes
{
	my @out;
	for my $e (@{ $t->sim_log })
	{
		if ($e->{path} =~ m{/\$batch$})
		{
			my $b = $json->decode($e->{body});
			# (the pull's GETs of series masters travel in $batch too: not writes)
			push @out, map { { method => $_->{method}, url => $_->{url}, headers => $_->{headers} // {},
				body => $_->{body}, batched => 1 } } grep { $_->{method} ne 'GET' } @{ $b->{requests} };
		}
		elsif ($e->{method} =~ /^(POST|PATCH|DELETE)$/ && $e->{path} =~ m{/events})
		{
			my %h = map { lc($_) => $e->{headers}{$_} } keys %{ $e->{headers} };
			push @out, { method => $e->{method}, url => $e->{path}, headers => { 'If-Match' => $h{'if-match'} },
				body => $e->{body} ne '' ? $json->decode($e->{body}) : undef };
		}
	}
	return @out;
}
sub header { my ($w, $n) = @_; my ($k) = grep { lc($_) eq lc($n) } keys %{ $w->{headers} }; return $k ? $w->{headers}{$k} : undef; }

drain('the first round finishes');

# ------------------------------------------------------------------ every kind of change, exactly once
$t->sim_clear_log;
my $a = upsert(ev('Alpha', 0, 9));
my $b = upsert(ev('Bravo', 0, 11, location => { displayName => 'Room 1' }));
my $c = upsert(json_allday('Holiday', 1, 2));
sub json_allday { my ($s, $from, $to) = @_; return $json->encode({ subject => $s, isAllDay => JSON::PP::true,
	start => { dateTime => "$d[$from]T00:00:00", timeZone => 'UTC' }, end => { dateTime => "$d[$to]T00:00:00", timeZone => 'UTC' } }); }
drain('creates are pushed');
is(subjects(), 'Alpha,Bravo,Holiday', 'three creates reach Outlook once each');
my @w = writes();
is(scalar(grep { $_->{method} eq 'POST' } @w), 3, 'three POSTs');
is(scalar(grep { $_->{method} eq 'POST' && !($_->{body}{transactionId} // '') } @w), 0, 'every POST carries a transactionId');
is(as_ada("SELECT count(*) FROM m365sync.events(now(), now() + interval '10 days') WHERE sync_state = 'synced' AND graph_id IS NOT NULL"),
	'3', 'local rows synced, with their Graph ids');
is($t->node->safe_psql('postgres', "SELECT count(*) FROM m365sync.outbox WHERE state = 'done' AND done_at IS NOT NULL"),
	'3', 'outbox entries done');

$t->sim_clear_log;
upsert('{"subject": "Alpha 2"}', $a);
upsert('{"location": {"displayName": "Room 2"}}', $b);
as_ada("SELECT m365sync.delete_event($c)");
drain('updates and a delete are pushed');
is(subjects(), 'Alpha 2,Bravo', 'update and delete reach Outlook');
my ($bravo) = grep { $_->{subject} eq 'Bravo' } @{ truth() };
is($bravo->{location}{displayName}, 'Room 2', 'the location change arrived');
@w = writes();
is(join(',', sort map { $_->{method} } @w), 'DELETE,PATCH,PATCH', 'two PATCHes and a DELETE');
is(scalar(grep { !(header($_, 'If-Match') // '') =~ m{^W/".+"$} } @w), 0, 'every PATCH and DELETE carries If-Match: W/"<changeKey>"');
my ($pa) = grep { $_->{method} eq 'PATCH' && exists $_->{body}{subject} } @w;
is(join(',', sort keys %{ $pa->{body} }), 'subject', 'a PATCH sends only the changed field');

# ------------------------------------------------------------------ echo
$t->sim_clear_log;
my $r = sync_now();
like($r, qr/^ok:0:0:0:/, 'the next pull applies nothing of our own changes and pushes nothing');
my @log = grep { $_->{path} !~ m{/_sim/} } @{ $t->sim_log };
is(join(',', map { $_->{method} . ' ' . ($_->{path} =~ m{(calendarView/delta)} ? $1 : $_->{path}) } @log),
	'GET calendarView/delta', 'a round after the push: only the delta call');
$t->sim_clear_log;
sync_now();
@log = grep { $_->{path} !~ m{/_sim/} } @{ $t->sim_log };
is(scalar(@log), 1, 'and the round after that: only the delta call again');

# ------------------------------------------------------------------ rollback and collapse
$t->sim_clear_log;
as_ada("BEGIN; SELECT m365sync.upsert_event(" . lit(ev('Never', 2, 9)) . "::jsonb); ROLLBACK;");
as_ada("BEGIN; SELECT m365sync.upsert_event('{\"subject\": \"Alpha 3\"}'::jsonb, $a);"
	  . " SELECT m365sync.upsert_event('{\"showAs\": \"tentative\"}'::jsonb, $a); COMMIT;");
as_ada("BEGIN; SELECT m365sync.upsert_event(" . lit(ev('Brief', 2, 10)) . "::jsonb) AS id \\gset\n"
	  . " SELECT m365sync.delete_event(:id); COMMIT;");
drain();
sync_now();
@w = writes();
is(scalar(grep { ($_->{body}{subject} // '') eq 'Never' } @w), 0, 'a rolled back create is never sent');
is(scalar(grep { ($_->{body}{subject} // '') eq 'Brief' } @w), 0, 'create + delete in one transaction: nothing sent');
my @patches = grep { $_->{method} eq 'PATCH' } @w;
is(scalar(@patches), 1, 'two edits in one transaction: one PATCH');
is(join(',', sort keys %{ $patches[0]{body} }), 'showAs,subject', '... carrying both fields');
is(subjects(), 'Alpha 3,Bravo', 'Outlook has the result');

# ------------------------------------------------------------------ permanent failures: failed, clear, no storm
$t->sim('POST', '/_sim/faults', { route => '/events$', method => 'POST', kind => '403', count => 1000 });
$t->sim_clear_log;
my $ro = upsert(ev('Read-only', 3, 9));
drain();
is($t->node->safe_psql('postgres', "SELECT state || ':' || last_error FROM m365sync.outbox WHERE event_id = $ro"),
	'failed:ErrorAccessDenied', '403: the entry failed with Graph\'s error code');
is(as_ada("SELECT sync_state FROM m365sync.event($ro)"), 'failed', 'the event shows failed and is kept');
like($t->as_admin("SELECT last_error FROM m365sync.account_status WHERE account_id = $account"),
	qr/^push failed: ErrorAccessDenied$/, 'account_status names the error');
sync_now() for 1 .. 3;
is(scalar(grep { $_->{method} eq 'POST' } writes()), 1, 'no retry storm: one POST in three more rounds');
$t->sim('DELETE', '/_sim/faults');

$t->sim('POST', '/_sim/faults', { route => '/events/', method => 'PATCH', kind => '400', count => 1 });
$t->sim_clear_log;
upsert('{"subject": "Bravo bad"}', $b);
drain();
is($t->node->safe_psql('postgres', "SELECT state || ':' || last_error FROM m365sync.outbox WHERE event_id = $b ORDER BY outbox_id DESC LIMIT 1"),
	'failed:ErrorInvalidParameter', '400: failed with the Graph error code');
sync_now();
is(scalar(grep { $_->{method} eq 'PATCH' } writes()), 1, '... and not sent again');
upsert('{"showAs": "free"}', $b);
drain();
my ($b2) = grep { $_->{subject} =~ /^Bravo/ } @{ truth() };
is("$b2->{subject}/$b2->{showAs}", 'Bravo bad/free', 'the next edit carries the failed fields too');
is(as_ada("SELECT sync_state FROM m365sync.event($b)"), 'synced', '... and the event is synced again');
$t->sim('DELETE', '/_sim/faults');

# ------------------------------------------------------------------ transient failures: retried, Retry-After honoured
$t->sim('POST', '/_sim/faults', { route => '/events$', method => 'POST', kind => '503', retry_after => '1', count => 1 });
$t->sim_clear_log;
my $tr = upsert(ev('Throttled', 3, 11));
ok($t->node->poll_query_until('postgres', "SELECT state = 'done' FROM m365sync.outbox WHERE event_id = $tr"),
	'503 with Retry-After: sent again and done');
my @posts = grep { $_->{method} eq 'POST' } @{ $t->sim_log };
is(scalar(@posts), 2, 'two attempts');
is(scalar(grep { $_->{subject} eq 'Throttled' } @{ truth() }), 1, 'one event in Outlook');
$t->sim('DELETE', '/_sim/faults');
drain();

# ------------------------------------------------------------------ a $batch refused as a whole
# Graph answers the $batch request itself with a 400 whenever it holds the
# update of Bravo, and refuses that update on its own too. Three creates and
# the update go out in one $batch: the refusal of the whole is no verdict on
# each change, so each is sent again alone; the creates arrive, once each,
# and only the update Graph refuses singly is failed.
# (the id without its final '=', which the request path carries escaped)
my $bravo_gid = as_ada("SELECT graph_id FROM m365sync.event($b)") =~ s/=+$//r;
$t->sim('POST', '/_sim/faults', { route => '/\$batch$', method => 'POST', kind => '400',
	batch_contains => "/events/\Q$bravo_gid\E", count => 1000 });
$t->sim('POST', '/_sim/faults', { route => "/events/\Q$bravo_gid\E", method => 'PATCH', kind => '400', count => 1000 });
$t->sim_clear_log;
my @good = split /\n/, as_ada('BEGIN; ' . join(' ', map { 'SELECT m365sync.upsert_event(' . lit(ev("Whole batch $_", 5, 8 + $_)) . '::jsonb);' } 1 .. 3)
	  . " SELECT m365sync.upsert_event('{\"subject\": \"Bravo refused\"}'::jsonb, $b) \\g /dev/null\n COMMIT;");
is(scalar(@good), 3, 'three creates and an update in one transaction');
drain();
my @refused = grep { $_->{path} =~ m{/\$batch$} && ($_->{status} // 0) == 400 } @{ $t->sim_log };
is(scalar(@refused), 1, 'they went out in one $batch, which Graph refused as a whole');
my @singles = grep { !$_->{batched} } writes();
is(join(',', sort map { $_->{method} } @singles), 'PATCH,POST,POST,POST', '... then each change was sent alone');
is(join(',', map { my $s = "Whole batch $_"; scalar grep { $_->{subject} eq $s } @{ truth() } } 1 .. 3), '1,1,1',
	'every good change arrives in Outlook, once');
is($t->node->safe_psql('postgres', 'SELECT string_agg(state, \',\' ORDER BY event_id) FROM m365sync.outbox WHERE event_id IN ('
	  . join(',', @good) . ')'), 'done,done,done', '... and its outbox entry is done');
is(as_ada('SELECT string_agg(sync_state, \',\' ORDER BY event_id) FROM m365sync.events(now(), now() + interval \'10 days\')'
	  . ' WHERE event_id IN (' . join(',', @good) . ')'), 'synced,synced,synced', '... and the event synced');
is($t->node->safe_psql('postgres', "SELECT state || ':' || last_error FROM m365sync.outbox WHERE event_id = $b ORDER BY outbox_id DESC LIMIT 1"),
	'failed:ErrorInvalidParameter', 'only the change Graph refuses singly is failed');
is(as_ada("SELECT sync_state FROM m365sync.event($b)"), 'failed', '... and its event shows failed');
$t->sim('DELETE', '/_sim/faults');
upsert('{"subject": "Bravo"}', $b);
drain();
is(as_ada("SELECT sync_state FROM m365sync.event($b)"), 'synced', 'without the fault, the next edit of it syncs again');

# ------------------------------------------------------------------ recurrence
$t->sim_clear_log;
my $series = upsert($json->encode({ subject => 'Daily', start => { dateTime => "$d[4]T08:00:00", timeZone => 'UTC' },
	end => { dateTime => "$d[4]T08:15:00", timeZone => 'UTC' },
	recurrence => { pattern => { type => 'daily', interval => 1 },
		range => { type => 'numbered', startDate => $d[4], numberOfOccurrences => 3 } } }));
drain();
sync_now();
my ($master) = grep { $_->{subject} eq 'Daily' } @{ truth() };
ok($master && $master->{recurrence}, 'a series is created with its recurrence');
is(as_ada("SELECT event_type FROM m365sync.event($series)"), 'seriesMaster', 'locally the series master row');
my @occ = split /\n/, as_ada("SELECT event_id FROM m365sync.events(now(), now() + interval '10 days')"
	  . " WHERE series_master_id = $series AND event_type = 'occurrence' ORDER BY start_at");
is(scalar(@occ), 3, 'its three occurrences come back with series_master_id');
is(as_ada("SELECT count(*) FROM m365sync.events(now() - interval '1 day', now() + interval '10 days')"
	  . " WHERE event_id = $series"), 0, 'events() shows the series as its occurrences, not its master too');
upsert('{"subject": "Daily (moved room)"}', $occ[0]);
as_ada("SELECT m365sync.delete_event($occ[1])");
drain();
my $tr2 = $t->sim('GET', "/_sim/users/$ada->{id}/truth");
my ($exc) = grep { ($_->{type} // '') eq 'exception' } @{ $tr2->{events} };
is($exc && $exc->{subject}, 'Daily (moved room)', 'an edited occurrence becomes an exception');
($master) = grep { ($_->{type} // '') eq 'seriesMaster' } @{ $tr2->{events} };
is(scalar(@{ $master->{cancelledOccurrences} // [] }), 1, 'a deleted occurrence is cancelled in the series');
upsert('{"subject": "Daily stand-up"}', $series);
drain();
($master) = grep { ($_->{type} // '') eq 'seriesMaster' } @{ truth() };
is($master->{subject}, 'Daily stand-up', 'an edit of the series master renames the whole series');
sync_now();
is(as_ada("SELECT string_agg(subject, ',' ORDER BY start_at) FROM m365sync.events(now(), now() + interval '10 days')"
	  . " WHERE series_master_id = $series"), 'Daily (moved room),Daily stand-up',
	'locally: the exception keeps its subject, the other occurrence follows the series');
is(scalar(grep { $_->{method} eq 'POST' } writes()), 1, 'one POST for the series, PATCH/DELETE for the rest');
is(scalar(grep { $_->{method} ne 'POST' && !(header($_, 'If-Match') // '') } writes()), 0, '... all with If-Match');


# ------------------------------------------------------------------ a garbled answer to a push
# Step by step with m365sync.sync() and no worker, so nothing races the
# steps: the server restarted without the library preloaded, a new user.
# A success whose body came back garbled is not a failed push: the event is
# read again and linked, exactly once.
$t->sim('DELETE', '/_sim/faults');
$t->node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$t->node->restart;
my $bea = $t->add_sim_user('contoso.example', 'bea@contoso.example');
my $bea_account = $t->connect_user('flow-bea', 'bea@contoso.example');
my $bea_hour = 7;
sub as_bea { return $t->as_user('flow-bea', $_[0]); }
sub bea_create
{
	my ($subject) = @_;
	$bea_hour++;
	return as_bea('SELECT m365sync.upsert_event(' . lit(ev($subject, 6, $bea_hour)) . '::jsonb)');
}
sub bea_sync { return $t->as_admin("SELECT status || '/' || coalesce(error, '') FROM m365sync.sync($bea_account)"); }
sub bea_remote { my ($subject) = @_; return scalar grep { $_->{subject} eq $subject } @{ truth($bea->{id}) }; }
sub bea_row
{
	my ($id) = @_;
	my ($out, $st) = $t->sql("SELECT subject || '|' || sync_state || '|' || (graph_id IS NOT NULL) FROM m365sync.event($id)",
		role => 'flowagent', user => 'flow-bea');
	return $st eq '' ? $out : "($st)";
}
sub bea_outbox { my ($id) = @_; return $t->node->safe_psql('postgres',
	"SELECT string_agg(op || ':' || state, ',' ORDER BY outbox_id) FROM m365sync.outbox WHERE event_id = $id"); }
sub bea_listed { my ($id) = @_; return as_bea("SELECT count(*) FROM m365sync.conflicts() WHERE event_id = $id"); }

is(bea_sync(), 'ok/', 'without a worker, m365sync.sync() runs a first round');

my $garbled = bea_create('Garbled create');
$t->sim('POST', '/_sim/faults', { route => '/events$', method => 'POST', kind => 'malformed', count => 1 });
bea_sync();
is(bea_outbox($garbled), 'create:done', 'a create answered with a garbled body is done, not failed');
is(bea_row($garbled), 'Garbled create|synced|true', '... linked to the event Graph made');
is(bea_remote('Garbled create'), 1, '... which is in Outlook once');

as_bea("SELECT m365sync.upsert_event('{\"subject\": \"Garbled update\"}'::jsonb, $garbled)");
$t->sim('POST', '/_sim/faults', { route => '/events/', method => 'PATCH', kind => 'malformed', count => 1 });
bea_sync();
is(bea_outbox($garbled), 'create:done,update:done', 'an update answered with a garbled body is done, not failed');
is(bea_row($garbled) . '/' . bea_listed($garbled), 'Garbled update|synced|true/0', '... synced, and no conflict made of it');
is(bea_remote('Garbled update'), 1, '... and Outlook has it');
is($t->node->safe_psql('postgres', "SELECT count(*) FROM m365sync.outbox WHERE account_id = $bea_account AND state <> 'done'"),
	'0', 'after garbled answers nothing is failed or left pending');


# ------------------------------------------------------------------ which accounts are due
# m365sync.sync() without an account runs every due one (the worker's
# query, store_accounts_schedule.c): due by its schedule, by a change
# notification's mark once the gap after its last round has passed, or by a
# pending push whose time has come; never during a backoff, never in a state
# that cannot sync. Still no worker: nothing else takes a due account.
sub sa { return $t->node->safe_psql('postgres', $_[0]); }
sub due_rounds
{
	return $t->as_admin("SELECT coalesce(string_agg(CASE account_id WHEN $bea_account THEN 'bea' WHEN $account THEN 'ada'"
		  . " ELSE account_id::text END || ':' || status || ':' || pushed, ',' ORDER BY account_id), 'none') FROM m365sync.sync()");
}
sa("UPDATE m365sync.accounts SET next_sync_at = now() + interval '1 hour'; DELETE FROM m365sync.account_wakeups");
is(sa("SELECT count(*) FROM m365sync.outbox WHERE state = 'pending'"), '0', 'due: no push is pending to begin with');
is(due_rounds(), 'none', 'due: an account synced a moment ago is not due');

sa("UPDATE m365sync.accounts SET next_sync_at = now() - interval '1 minute' WHERE account_id = $bea_account");
is(due_rounds(), 'bea:ok:0', 'due: an account whose next_sync_at has passed is synced, the other is not');
is(due_rounds(), 'none', '... and after its round it is not due again');
sa("UPDATE m365sync.accounts SET next_sync_at = NULL WHERE account_id = $bea_account");
is(due_rounds(), 'bea:ok:0', 'due: an account never scheduled (next_sync_at null) is due');

sa("UPDATE m365sync.sync_run_log SET started_at = now() WHERE account_id = $bea_account"
	  . " AND run_id = (SELECT max(run_id) FROM m365sync.sync_run_log WHERE account_id = $bea_account)");
sa("INSERT INTO m365sync.account_wakeups (account_id) VALUES ($bea_account)");
is(due_rounds(), 'none', 'due: a notification\'s mark within the gap after the last round waits');
sa("UPDATE m365sync.sync_run_log SET started_at = started_at - interval '1 minute' WHERE account_id = $bea_account");
is(due_rounds(), 'bea:ok:0', 'due: a notification\'s mark after the gap makes the account due');
is(sa("SELECT count(*) FROM m365sync.account_wakeups"), '0', '... and its round takes the mark');

my $due_push = bea_create('Due push');
sa("UPDATE m365sync.outbox SET next_attempt_at = now() + interval '1 hour' WHERE event_id = $due_push");
is(due_rounds(), 'none', 'due: a pending push whose retry time has not come is not due');
sa("UPDATE m365sync.outbox SET next_attempt_at = NULL WHERE event_id = $due_push");
is(due_rounds(), 'bea:ok:1', 'due: a pending push makes its account due, and the round sends it');
is(bea_remote('Due push'), 1, '... Outlook has it');

sa("UPDATE m365sync.accounts SET next_sync_at = now() - interval '1 minute', backoff_until = now() + interval '1 hour'"
	  . " WHERE account_id = $bea_account");
sa("INSERT INTO m365sync.account_wakeups (account_id) VALUES ($bea_account)");
sa("UPDATE m365sync.sync_run_log SET started_at = started_at - interval '1 minute' WHERE account_id = $bea_account");
my $held_push = bea_create('Held push');
is(due_rounds(), 'none', 'due: in a backoff, neither the schedule, a mark nor a pending push makes an account due');
sa("UPDATE m365sync.accounts SET backoff_until = NULL, status = 'disabled' WHERE account_id = $bea_account");
is(due_rounds(), 'none', 'due: a disabled account is never due');
sa("UPDATE m365sync.accounts SET status = 'connected' WHERE account_id = $bea_account");
is(due_rounds(), 'bea:ok:1', 'due: connected again and out of its backoff, it is due, once');
is(sa("SELECT count(*) FROM m365sync.account_wakeups") . '/' . bea_remote('Held push'), '0/1',
	'... its mark taken and its push sent');

done_testing();
